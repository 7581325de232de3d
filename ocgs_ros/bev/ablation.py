"""bev_ablation: the gradient-calibration ablation, one command, same data / seeds / steps per arm.

    python -m ocgs_ros.bev.ablation --work runs/bev --steps 560 --seeds 0 1 2 \\
        --out docs/results/bev_ablation.json --ship ocgs_ros/models/bev_driving.pt

Arms (all ``--preset small``, AdamW, identical schedule; only the calibration differs):

    single_det    detection only (map loss x 0)             task sum, no modality calibration
    single_seg    map segmentation only (detection loss x 0) task sum, no modality calibration
    sum           both tasks, naive joint training           task sum, no modality calibration
    task_cal      both tasks                                 task mgc, no modality calibration
    modality_cal  both tasks                                 task sum, modality calibration
    full_cal      both tasks                                 task mgc, modality calibration

The simulated train/validation sets are written under ``--work`` on first use (resumable), each run
lives in ``--work/ablation/<arm>_s<seed>`` (a run is reused only when it finished with an equal
training config and its checkpoint loads cleanly, so an interrupted ablation resumes), then the
command measures the training-step time of ``full_cal`` vs ``sum`` on the same batches interleaved
in this process and the per-frame inference latency of the ``full_cal`` seed-``seeds[0]`` model
through ``BevPredictor``, and writes JSON + Markdown + PNG.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..atomic_io import atomic_save_figure, atomic_write_json, atomic_write_text
from ..checkpoint_io import CheckpointError
from ..training import CHECKPOINT_NAME, METRICS_NAME, read_metrics, seed_everything
from ..sim.dataset import write_driving_dataset
from ..sim.types import CameraConfig, DrivingConfig
from .checkpoint import load_checkpoint, save_checkpoint
from .config import BevConfig
from .data import BevSampleDataset, SimDrivingRecords, sim_dataset
from .evaluate import finite_or_none
from .inference import BevPredictor
from .model import BevFusionModel
from .train import EVAL_NAME, BevTrainConfig, build_calibrator, build_optimizer, train, train_step

ARMS: dict[str, dict[str, Any]] = {
    "single_det": {"tasks": "det", "calibration": "sum", "modality_cal": False},
    "single_seg": {"tasks": "map", "calibration": "sum", "modality_cal": False},
    "sum": {"tasks": "det,map", "calibration": "sum", "modality_cal": False},
    "task_cal": {"tasks": "det,map", "calibration": "mgc", "modality_cal": False},
    "modality_cal": {"tasks": "det,map", "calibration": "sum", "modality_cal": True},
    "full_cal": {"tasks": "det,map", "calibration": "mgc", "modality_cal": True},
}
PRESET = "small"
# Simulated data: a 176 x 64 forward camera (the small preset's image size, no resizing) and the
# default 32-beam LiDAR and 0.5 m BEV map grid.
SIM_CONFIG = DrivingConfig(cameras=[CameraConfig(width=176, height=64, hfov_deg=70.0)])
# Frames 20 simulator steps apart: the drives reach their first intersection after ~3 s, so at the
# writer's default spacing (5) ped_crossing and stop_line never appeared in training; at 20 about
# two thirds of the frames show them (measured over 4 scenes x 8 frames).
TRAIN_SCENES, TRAIN_FRAMES, TRAIN_SEED, TRAIN_STRIDE = 32, 8, 0, 20
VAL_SCENES, VAL_FRAMES, VAL_SEED, VAL_STRIDE = 16, 6, 1, 20


def make_data(work: Path) -> tuple[Path, Path]:
    """Write (or complete) the simulated train / validation sets; returns their folders."""
    train_dir, val_dir = work / "data_train", work / "data_val"
    write_driving_dataset(train_dir, TRAIN_SCENES, TRAIN_FRAMES, seed=TRAIN_SEED, config=SIM_CONFIG,
                          frame_stride=TRAIN_STRIDE)
    write_driving_dataset(val_dir, VAL_SCENES, VAL_FRAMES, seed=VAL_SEED, config=SIM_CONFIG, frame_stride=VAL_STRIDE)
    return train_dir, val_dir


def arm_config(arm: str, seed: int, args: argparse.Namespace, train_dir: Path, val_dir: Path) -> BevTrainConfig:
    """The training run of one arm and seed (all arms: same data, preset, steps, batch and schedule)."""
    spec = ARMS[arm]
    return BevTrainConfig(data=str(train_dir), val_data=str(val_dir),
                          out=str(Path(args.work) / "ablation" / f"{arm}_s{seed}"), preset=PRESET, steps=args.steps,
                          batch=args.batch, seed=seed, tasks=spec["tasks"], calibration=spec["calibration"],
                          modality_cal=spec["modality_cal"], checkpoint_every=args.steps, device="cpu",
                          threads=max(1, args.threads), no_progress=True)


def finished_run(config: BevTrainConfig) -> dict[str, Any] | None:
    """The eval.json content of a finished run of exactly ``config`` in its folder, else None.

    Finished means: the checkpoint loads cleanly, holds ``config.steps`` steps and was trained
    with a config equal to this one, and the evaluation was written by that same run.
    """
    out, requested = Path(config.out), config.to_dict()
    try:
        _, _, meta = load_checkpoint(out / CHECKPOINT_NAME)
    except CheckpointError:
        return None
    if meta["step"] != config.steps or meta["extra"].get("run", {}).get("train_config") != requested:
        return None
    try:
        done = json.loads((out / EVAL_NAME).read_text())
    except (OSError, ValueError):
        return None
    if done.get("step") != config.steps or done.get("run", {}).get("train_config") != requested:
        return None
    return done


def run_arm(label: str, config: BevTrainConfig, train_set: BevSampleDataset,
            val_set: BevSampleDataset) -> dict[str, Any]:
    """Train one run, or reuse it when it already finished with this config; returns its eval.json content."""
    done = finished_run(config)
    if done is not None:
        print(f"bev_ablation: {label}: reusing {Path(config.out) / EVAL_NAME}", flush=True)
        return done
    # A stale run of other settings, a partial or an unreadable one: start again.
    (Path(config.out) / CHECKPOINT_NAME).unlink(missing_ok=True)
    start = time.perf_counter()
    result = train(config, train_set, val_set)
    ev = finite_or_none(result.evaluation)
    print(f"bev_ablation: {label}: mAP {ev['mAP']}  mIoU {ev['mIoU']}  "
          f"{result.seconds_per_step:.3f} s/step  {time.perf_counter() - start:.0f} s", flush=True)
    return json.loads((Path(config.out) / EVAL_NAME).read_text())


def time_steps(train_set: BevSampleDataset, cfg: BevConfig, batch: int, repeats: int, seed: int = 0) -> dict[str, float]:
    """Median training-step time of ``sum`` and ``full_cal`` on the same batches, interleaved."""
    seed_everything(seed)
    runs = {}
    for name in ("sum", "full_cal"):
        torch.manual_seed(seed)
        model = BevFusionModel(cfg)
        optimizer, _ = build_optimizer(model, 1e-3, 1e-2, repeats)
        spec = ARMS[name]
        runs[name] = (model, optimizer, build_calibrator(spec["calibration"], spec["modality_cal"], seed))
    times: dict[str, list[float]] = {name: [] for name in runs}
    rng = np.random.default_rng(seed)
    for i in range(repeats + 3):
        samples = [train_set[int(j)] for j in rng.choice(len(train_set), batch, replace=False)]
        for name in (("sum", "full_cal") if i % 2 == 0 else ("full_cal", "sum")):
            model, optimizer, calibrator = runs[name]
            t0 = time.perf_counter()
            train_step(model, model, calibrator, optimizer, samples, ("detection", "map"), torch.device("cpu"), 35.0)
            if i >= 3:  # warm-up (allocator, frustum cache)
                times[name].append(time.perf_counter() - t0)
    sum_ms, full_ms = (float(np.median(times[n])) * 1000 for n in ("sum", "full_cal"))
    return {"sum_step_ms": sum_ms, "full_cal_step_ms": full_ms, "ratio": full_ms / sum_ms, "repeats": repeats}


def time_inference(checkpoint: Path, val_dir: Path, frames: int = 30) -> float:
    """Median per-frame latency (ms) of ``BevPredictor.predict`` on validation frames."""
    predictor = BevPredictor.from_checkpoint(checkpoint)
    records = SimDrivingRecords(val_dir)
    latencies = []
    for i in range(min(frames + 3, len(records))):
        r = records[i]
        pred = predictor.predict(r.images, r.intrinsics, r.T_ego_cam, r.points)
        if i >= 3:
            latencies.append(pred.latency_ms)
    return float(np.median(latencies))


def cosine_summary(metrics_path: Path) -> dict[str, float]:
    rows = read_metrics(metrics_path)
    cos = np.array([r["task_cosine"] for r in rows if r.get("task_cosine") is not None])
    ratio = np.array([r["modality_grad_norm_before_lidar"] / r["modality_grad_norm_before_camera"] for r in rows
                      if r.get("modality_grad_norm_before_camera")])
    norm_ratio = np.array([r["task_grad_norm_detection"] / r["task_grad_norm_map"] for r in rows
                           if r.get("task_grad_norm_map")])
    weight_ratio = np.array([r["task_weights_map"] / r["task_weights_detection"] for r in rows
                             if r.get("task_weights_detection")])
    late = cos[len(cos) // 2:]
    return {"cos_mean": float(cos.mean()), "cos_negative_fraction": float((cos < 0).mean()),
            "cos_mean_second_half": float(late.mean()),
            "map_over_det_task_weight_median": float(np.median(weight_ratio)) if weight_ratio.size else float("nan"),
            "cos_p10": float(np.percentile(cos, 10)), "cos_p90": float(np.percentile(cos, 90)),
            "lidar_over_camera_grad_norm_median": float(np.median(ratio)) if ratio.size else float("nan"),
            "det_over_map_grad_norm_median": float(np.median(norm_ratio)) if norm_ratio.size else float("nan")}


def _stats(values: list[float | None]) -> tuple[float | None, float | None]:
    arr = np.array([v for v in values if v is not None], dtype=np.float64)
    if arr.size == 0:
        return None, None
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0


def plot_ablation(summary: dict[str, Any], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = list(ARMS)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for ax, key, title in ((axes[0], "map", "detection mAP"), (axes[1], "miou", "map mIoU")):
        means = [summary["arms"][a][f"{key}_mean"] for a in arms]
        stds = [summary["arms"][a][f"{key}_std"] for a in arms]
        xs = [i for i, m in enumerate(means) if m is not None]
        ax.bar([arms[i] for i in xs], [means[i] for i in xs], yerr=[stds[i] for i in xs], capsize=4,
               color=["0.6" if arms[i].startswith("single") else "tab:blue" for i in xs])
        for a_i in xs:
            seeds = summary["arms"][arms[a_i]]["per_seed"][key]
            ax.plot([arms[a_i]] * len(seeds), seeds, "k.", ms=5)
        ax.set_title(f"{title} (mean ± std over seeds {summary['seeds']}, dots = seeds)")
        ax.tick_params(axis="x", rotation=20)
    fig.tight_layout()
    atomic_save_figure(fig, path, dpi=80)


def _num(value: float, fmt: str) -> str:
    return "—" if value is None or not np.isfinite(value) else format(value, fmt)


def _fmt(mean: float | None, std: float | None, scale: float = 100.0) -> str:
    return "—" if mean is None else f"{mean * scale:.2f} ± {std * scale:.2f}"


def write_markdown(summary: dict[str, Any], path: Path) -> None:
    arms = summary["arms"]
    lines = ["# BEV gradient-calibration ablation (simulated driving)", "",
             f"Produced by `{summary['command']}` (numbers in %, mean ± sample std over seeds "
             f"{summary['seeds']}; every arm: same data, seeds, {summary['steps']} steps, batch {summary['batch']}, "
             f"preset `{PRESET}`). Validation: {summary['val_frames']} frames of held-out scenes.", "",
             "| arm | task level | modality level | mAP | mIoU | cos(g_det, g_map) mean | share of steps with cos < 0 | "
             "‖g_det‖/‖g_map‖ at F (median) | w_map/w_det (median) | ‖g_lidar‖/‖g_camera‖ before (median) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, spec in ARMS.items():
        a = arms[name]
        c = a["gradient_stats"]
        lines.append(f"| `{name}` | {spec['calibration']} | {'on' if spec['modality_cal'] else 'off'} | "
                     f"{_fmt(a['map_mean'], a['map_std'])} | {_fmt(a['miou_mean'], a['miou_std'])} | "
                     f"{_num(c['cos_mean'], '+.3f')} | {_num(c['cos_negative_fraction'], '.2f')} | "
                     f"{_num(c['det_over_map_grad_norm_median'], '.0f')} | {_num(c['map_over_det_task_weight_median'], '.0f')} | "
                     f"{_num(c['lidar_over_camera_grad_norm_median'], '.2f')} |")
    t = summary["step_time"]
    lines += ["", f"Training step (batch {summary['batch']}, 1 thread, interleaved on the same batches): `sum` "
              f"{t['sum_step_ms']:.0f} ms, `full_cal` {t['full_cal_step_ms']:.0f} ms → ratio "
              f"**{summary['step_time_ratio_full_vs_sum']:.3f}** (target ≤ 1.3). Inference through `BevPredictor` "
              f"(preset `{PRESET}`, 1 thread): **{summary['inference_ms']:.1f} ms** per frame.", "",
              "## Verdict", "", summary["verdict"], ""]
    atomic_write_text(path, "\n".join(lines))


def verdict(arms: dict[str, Any]) -> str:
    """A factual sentence comparing full_cal with sum (the analysis itself is in docs/bev.md)."""
    f, s = arms["full_cal"], arms["sum"]
    parts = []
    for key, name in (("map", "mAP"), ("miou", "mIoU")):
        diff = f[f"{key}_mean"] - s[f"{key}_mean"]
        spread = max(f[f"{key}_std"], s[f"{key}_std"])
        parts.append(f"{name}: `full_cal` − `sum` = {diff * 100:+.2f} points "
                     f"(larger seed std of the two: {spread * 100:.2f})")
    both = all(f[f"{k}_mean"] > s[f"{k}_mean"] for k in ("map", "miou"))
    head = ("Full calibration beats naive joint training on both metrics on average."
            if both else "Full calibration does **not** beat naive joint training on both metrics.")
    return head + " " + "; ".join(parts) + ". See docs/bev.md for the analysis."


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bev_ablation", description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", default="runs/bev", help="data and run folders")
    parser.add_argument("--steps", type=int, default=560)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    parser.add_argument("--timing-repeats", type=int, default=20)
    parser.add_argument("--out", default="docs/results/bev_ablation.json")
    parser.add_argument("--ship", default=None, help="also save the full_cal seeds[0] model (no optimiser) here")
    parser.add_argument("--threads", type=int, default=1)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if len(args.seeds) < 3:
        print("bev_ablation: warning: fewer than 3 seeds", file=sys.stderr)
    torch.set_num_threads(max(1, args.threads))
    command = " ".join(["python -m ocgs_ros.bev.ablation", *argv])
    work = Path(args.work)
    train_dir, val_dir = make_data(work)
    cfg = BevConfig.preset(PRESET)
    train_set, val_set = sim_dataset(train_dir, cfg), sim_dataset(val_dir, cfg)
    print(f"bev_ablation: {len(train_set)} training / {len(val_set)} validation frames", flush=True)
    results: dict[str, dict[int, dict[str, Any]]] = {arm: {} for arm in ARMS}
    order = sorted(ARMS, key=lambda a: a != "full_cal")  # full_cal first: early sanity check
    for seed in args.seeds:
        for arm in order:
            if arm in args.arms:
                results[arm][seed] = run_arm(f"{arm} seed {seed}", arm_config(arm, seed, args, train_dir, val_dir),
                                              train_set, val_set)
    arms_summary: dict[str, Any] = {}
    for arm in ARMS:
        if not results[arm]:
            continue
        seeds = sorted(results[arm])
        maps = [results[arm][s]["mAP"] for s in seeds]
        mious = [results[arm][s]["mIoU"] for s in seeds]
        map_mean, map_std = _stats(maps)
        miou_mean, miou_std = _stats(mious)
        per_class = {}
        for key, sub in (("detection", "class_ap"), ("map", "best_iou")):
            if results[arm][seeds[0]].get(key):
                names = results[arm][seeds[0]][key][sub]
                per_class[key] = {n: _stats([results[arm][s][key][sub][n] for s in seeds])[0] for n in names}
        gstats = [cosine_summary(Path(arm_config(arm, s, args, train_dir, val_dir).out) / METRICS_NAME) for s in seeds]
        arms_summary[arm] = {
            "map_mean": map_mean, "map_std": map_std, "miou_mean": miou_mean, "miou_std": miou_std, "seeds": seeds,
            "per_seed": {"map": maps, "miou": mious},
            "tp_errors_mean": {e: _stats([results[arm][s]["detection"][e] for s in seeds])[0]
                               for e in ("mATE", "mASE", "mAOE", "mAVE")} if results[arm][seeds[0]].get("detection") else None,
            "per_class_mean": per_class,
            "gradient_stats": {k: float(np.mean([g[k] for g in gstats])) for k in gstats[0]},
            **{k: v for k, v in ARMS[arm].items()},
        }
    timing = time_steps(train_set, cfg, args.batch, args.timing_repeats)
    full_ckpt = Path(arm_config("full_cal", args.seeds[0], args, train_dir, val_dir).out) / CHECKPOINT_NAME
    inference_ms = time_inference(full_ckpt, val_dir)
    summary = {"arms": arms_summary, "step_time_ratio_full_vs_sum": timing["ratio"], "step_time": timing,
               "inference_ms": inference_ms, "inference_checkpoint": str(full_ckpt), "command": command,
               "seeds": list(args.seeds), "steps": args.steps, "batch": args.batch, "preset": PRESET,
               "config": cfg.to_dict(), "train_frames": len(train_set), "val_frames": len(val_set),
               "data": {"train": [TRAIN_SCENES, TRAIN_FRAMES, TRAIN_SEED, TRAIN_STRIDE], "val": [VAL_SCENES, VAL_FRAMES, VAL_SEED, VAL_STRIDE]}}
    if {"full_cal", "sum"} <= set(arms_summary):
        summary["verdict"] = verdict(arms_summary)
    else:
        summary["verdict"] = "full_cal or sum missing"
    out = Path(args.out)
    atomic_write_json(out, finite_or_none(summary))
    write_markdown(summary, out.with_suffix(".md"))
    plot_ablation(summary, out.with_suffix(".png"))
    if args.ship:
        model, _, meta = load_checkpoint(full_ckpt)
        save_checkpoint(args.ship, model, step=meta["step"],
                        extra={"run": meta["extra"].get("run", {}), "produced_by": command,
                               "ablation_arm": f"full_cal seed {args.seeds[0]}"})
    print(f"bev_ablation: wrote {out}; full_cal vs sum step time {timing['ratio']:.3f}x, "
          f"inference {inference_ms:.1f} ms/frame", flush=True)
    print(summary["verdict"], flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
