"""bev_ablation: the gradient-calibration ablation, one command, same data / seeds / steps per arm.

    python -m ocgs_ros.bev.ablation --work runs/bev2k --steps 2000 --seeds 0 1 2 --beta 1.0 \\
        --out docs/results/bev_ablation.json --ship ocgs_ros/models/bev_driving.pt

Arms (all ``--preset small``, AdamW, identical schedule; only the calibration differs):

    single_det    detection only (map loss x 0)             task sum, no modality calibration
    single_seg    map segmentation only (detection loss x 0) task sum, no modality calibration
    sum           both tasks, naive joint training           task sum, no modality calibration
    task_cal      both tasks                                 task mgc, no modality calibration
    modality_cal  both tasks                                 task sum, modality calibration
    mgc_full      both tasks (the first full_cal recipe)     task mgc, modality calibration
    partial       both tasks (dev screen; not run by default) task partial(beta), no modality calibration
    full_cal      both tasks (the shipped recipe)            task partial(beta), modality calibration

Three simulated splits are written under ``--work`` on first use (resumable): training, validation
(held-out scenes, seed 1) and test (other held-out scenes, seed 2). Validation is what choices are
made on (``--beta`` by the dev screen, ``--split val --arms sum full_cal --seeds 0`` per candidate,
which never evaluates the test split; docs/bev.md); the test split is evaluated once per finished run and is
what the table reports. Each run lives in ``--work/ablation/<arm>_s<seed>`` (partial
arms: ``<arm>_b<beta>_s<seed>``); a run is reused only when it finished with an equal training
config and its checkpoint loads cleanly, so an interrupted ablation resumes. Then the command
measures the training-step time of ``full_cal`` vs ``sum`` on the same batches interleaved in this
process, the per-frame inference latency of the ``full_cal`` seed-``seeds[0]`` model through
``BevPredictor`` and the modality diagnostics (:mod:`.modality_diagnostics`), and writes JSON +
Markdown + PNG.
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
from ..training.options import typed_overrides
from .checkpoint import load_checkpoint, save_shipped
from .config import BevConfig
from .data import BevSampleDataset, SimDrivingRecords, sim_dataset
from .evaluate import evaluate_model, finite_or_none
from .gradcal import DEFAULT_PARTIAL_BETA
from .inference import BevPredictor
from .modality_diagnostics import branch_contribution, branch_gradient_norms
from .model import BevFusionModel
from .train import EVAL_NAME, BevTrainConfig, build_calibrator, build_optimizer, train, train_step

ARMS: dict[str, dict[str, Any]] = {
    "single_det": {"tasks": "det", "calibration": "sum", "modality_cal": False},
    "single_seg": {"tasks": "map", "calibration": "sum", "modality_cal": False},
    "sum": {"tasks": "det,map", "calibration": "sum", "modality_cal": False},
    "task_cal": {"tasks": "det,map", "calibration": "mgc", "modality_cal": False},
    "modality_cal": {"tasks": "det,map", "calibration": "sum", "modality_cal": True},
    "mgc_full": {"tasks": "det,map", "calibration": "mgc", "modality_cal": True},
    "partial": {"tasks": "det,map", "calibration": "partial", "modality_cal": False},
    "full_cal": {"tasks": "det,map", "calibration": "partial", "modality_cal": True},
}
# The arms the ablation runs by default; ``partial`` (the task level alone at the chosen beta) is the
# dev screen's arm: ``--arms partial --seeds 0 --split val --beta B`` for each candidate B.
DEFAULT_ARMS = tuple(a for a in ARMS if a != "partial")
PRESET = "small"
# Simulated data: a 176 x 64 forward camera (the small preset's image size, no resizing) and the
# default 32-beam LiDAR and 0.5 m BEV map grid.
SIM_CONFIG = DrivingConfig(cameras=[CameraConfig(width=176, height=64, hfov_deg=70.0)])
# Frames 20 simulator steps apart: the drives reach their first intersection after ~3 s, so at the
# writer's default spacing (5) ped_crossing and stop_line never appeared in training; at 20 about
# two thirds of the frames show them (measured over 4 scenes x 8 frames).
TRAIN_SCENES, TRAIN_FRAMES, TRAIN_SEED, TRAIN_STRIDE = 32, 8, 0, 20
VAL_SCENES, VAL_FRAMES, VAL_SEED, VAL_STRIDE = 16, 6, 1, 20
# The held-out test split: scenes of a seed no choice was made on (issue 18's protocol).
TEST_SCENES, TEST_FRAMES, TEST_SEED, TEST_STRIDE = 16, 6, 2, 20
TEST_EVAL_NAME = "test_eval.json"


def make_data(work: Path) -> tuple[Path, Path, Path]:
    """Write (or complete) the simulated train / validation / test sets; returns their folders."""
    train_dir, val_dir, test_dir = work / "data_train", work / "data_val", work / "data_test"
    write_driving_dataset(train_dir, TRAIN_SCENES, TRAIN_FRAMES, seed=TRAIN_SEED, config=SIM_CONFIG,
                          frame_stride=TRAIN_STRIDE)
    write_driving_dataset(val_dir, VAL_SCENES, VAL_FRAMES, seed=VAL_SEED, config=SIM_CONFIG, frame_stride=VAL_STRIDE)
    write_driving_dataset(test_dir, TEST_SCENES, TEST_FRAMES, seed=TEST_SEED, config=SIM_CONFIG,
                          frame_stride=TEST_STRIDE)
    return train_dir, val_dir, test_dir


def arm_config(arm: str, seed: int, args: argparse.Namespace, train_dir: Path, val_dir: Path) -> BevTrainConfig:
    """The training run of one arm and seed (all arms: same data, preset, steps, batch and schedule)."""
    spec = ARMS[arm]
    partial = spec["calibration"] == "partial"
    folder = f"{arm}_b{args.beta:g}_s{seed}" if partial else f"{arm}_s{seed}"
    return BevTrainConfig(data=str(train_dir), val_data=str(val_dir),
                          out=str(Path(args.work) / "ablation" / folder), preset=PRESET, steps=args.steps,
                          batch=args.batch, seed=seed, tasks=spec["tasks"], calibration=spec["calibration"],
                          # beta 0 is the sum: arms without partial equalisation keep one config
                          # (and their finished runs) whatever --beta is
                          partial_beta=args.beta if partial else 0.0, overrides=tuple(args.overrides),
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


def test_evaluation(config: BevTrainConfig, test_set: BevSampleDataset) -> dict[str, Any]:
    """The finished run's metrics on the test split (``test_eval.json`` in its folder, reused when it
    was written for this same checkpoint config)."""
    path = Path(config.out) / TEST_EVAL_NAME
    requested = config.to_dict()
    try:
        done = json.loads(path.read_text())
        if done.get("step") == config.steps and done.get("train_config") == requested:
            return done
    except (OSError, ValueError):
        pass
    model, _, _ = load_checkpoint(Path(config.out) / CHECKPOINT_NAME)
    evaluation = evaluate_model(model, test_set, tasks=config.task_names())
    evaluation.update({"step": config.steps, "train_config": requested})
    atomic_write_json(path, finite_or_none(evaluation))
    return json.loads(path.read_text())


def time_steps(train_set: BevSampleDataset, cfg: BevConfig, batch: int, repeats: int, beta: float,
               seed: int = 0) -> dict[str, float]:
    """Median training-step time of ``sum`` and ``full_cal`` on the same batches, interleaved."""
    seed_everything(seed)
    runs = {}
    for name in ("sum", "full_cal"):
        torch.manual_seed(seed)
        model = BevFusionModel(cfg)
        optimizer, _ = build_optimizer(model, 1e-3, 1e-2, repeats)
        spec = ARMS[name]
        runs[name] = (model, optimizer, build_calibrator(spec["calibration"], spec["modality_cal"], seed, beta))
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
    # The modality level's factor on the camera gradient. Adam is invariant to a constant factor on
    # a parameter's gradient, so only its step-to-step spread (std of its log) can change training.
    camera_scale = np.array([r["modality_grad_norm_after_camera"] / r["modality_grad_norm_before_camera"]
                             for r in rows if r.get("modality_grad_norm_before_camera")])
    late = cos[len(cos) // 2:]
    return {"camera_scale_median": float(np.median(camera_scale)) if camera_scale.size else float("nan"),
            "camera_scale_log_std": float(np.log(camera_scale).std()) if camera_scale.size else float("nan"),
            "cos_mean": float(cos.mean()), "cos_negative_fraction": float((cos < 0).mean()),
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

    arms = [a for a in ARMS if a in summary["arms"]]
    fig, axes = plt.subplots(1, 2, figsize=(14, 4))
    for ax, key, title in ((axes[0], "map", "detection mAP"), (axes[1], "miou", "map mIoU")):
        means = [summary["arms"][a][f"{key}_mean"] for a in arms]
        stds = [summary["arms"][a][f"{key}_std"] for a in arms]
        xs = [i for i, m in enumerate(means) if m is not None]
        ax.bar([arms[i] for i in xs], [means[i] for i in xs], yerr=[stds[i] for i in xs], capsize=4,
               color=["0.6" if arms[i].startswith("single") else "tab:blue" for i in xs])
        for a_i in xs:
            seeds = summary["arms"][arms[a_i]]["per_seed"][key]
            ax.plot([arms[a_i]] * len(seeds), seeds, "k.", ms=5)
        ax.set_title(f"{title}, test split (mean ± std over seeds {summary['seeds']}, dots = seeds)", fontsize=9)
        ax.tick_params(axis="x", rotation=25)
    fig.tight_layout()
    atomic_save_figure(fig, path, dpi=80)


def _num(value: float | None, fmt: str) -> str:
    return "—" if value is None or not np.isfinite(value) else format(value, fmt)


def _fmt(mean: float | None, std: float | None, scale: float = 100.0) -> str:
    return "—" if mean is None else f"{mean * scale:.2f} ± {std * scale:.2f}"


def _task_level(spec: dict[str, Any], beta: float) -> str:
    return f"partial β={beta:g}" if spec["calibration"] == "partial" else spec["calibration"]


def write_markdown(summary: dict[str, Any], path: Path) -> None:
    arms = summary["arms"]
    beta = summary["beta"]
    split = summary["reported_split"]
    overridden = f" with `--set {' '.join(summary['overrides'])}`" if summary.get("overrides") else ""
    lines = ["# BEV gradient-calibration ablation (simulated driving)", "",
             f"Produced by `{summary['command']}` (numbers in %, mean ± sample std over seeds "
             f"{summary['seeds']}; every arm: same data, seeds, {summary['steps']} steps, batch {summary['batch']}, "
             f"preset `{PRESET}`{overridden}). **Test**: {summary['test_frames']} frames of held-out scenes (seed {TEST_SEED}) "
             f"never used for a choice; validation: {summary['val_frames']} frames (seed {VAL_SEED}), the split "
             f"β was chosen on. Reported split: **{split}**.", "",
             f"| arm | task level | modality level | {split} mAP | {split} mIoU | val mAP | val mIoU | cos(g_det, g_map) mean | "
             "‖g_det‖/‖g_map‖ at F (median) | w_map/w_det (median) | ‖g_lidar‖/‖g_camera‖ before (median) | "
             "camera factor of the modality level: median (std of log) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, spec in ARMS.items():
        if name not in arms:
            continue
        a = arms[name]
        c = a["gradient_stats"]
        lines.append(f"| `{name}` | {_task_level(spec, beta)} | {'on' if spec['modality_cal'] else 'off'} | "
                     f"{_fmt(a['map_mean'], a['map_std'])} | {_fmt(a['miou_mean'], a['miou_std'])} | "
                     f"{_fmt(a['val_map_mean'], a['val_map_std'])} | {_fmt(a['val_miou_mean'], a['val_miou_std'])} | "
                     f"{_num(c['cos_mean'], '+.3f')} | {_num(c['det_over_map_grad_norm_median'], '.0f')} | "
                     f"{_num(c['map_over_det_task_weight_median'], '.1f')} | "
                     f"{_num(c['lidar_over_camera_grad_norm_median'], '.2f')} | "
                     f"{_num(c['camera_scale_median'], '.2f')} ({_num(c['camera_scale_log_std'], '.2f')}) |")
    t = summary.get("step_time")
    lines += [""] if t is None else ["", f"Training step (batch {summary['batch']}, 1 thread, interleaved on the same batches): `sum` "
              f"{t['sum_step_ms']:.0f} ms, `full_cal` {t['full_cal_step_ms']:.0f} ms → ratio "
              f"**{summary['step_time_ratio_full_vs_sum']:.3f}** (target ≤ 1.3). Inference through `BevPredictor` "
              f"(preset `{PRESET}`, 1 thread): **{summary['inference_ms']:.1f} ms** per frame.", ""]
    diag = summary.get("modality_diagnostics")
    if diag:
        lines += [f"## Modality level: where the imbalance is (seed-{summary['seeds'][0]} models, {split} split)", "",
                  "| model | ‖∂L_det/∂cam‖ | ‖∂L_det/∂lidar‖ | ‖∂L_map/∂cam‖ | ‖∂L_map/∂lidar‖ | mAP / mIoU both | "
                  "without camera | without LiDAR |", "|---|---|---|---|---|---|---|---|"]
        for name, d in diag.items():
            g, c = d["gradient_norms"], d["contribution"]
            pair = {k: f"{_num(v['mAP'] * 100 if v['mAP'] is not None else None, '.1f')} / "
                       f"{_num(v['mIoU'] * 100 if v['mIoU'] is not None else None, '.1f')}" for k, v in c.items()}
            lines.append(f"| `{name}` | {g['detection']['camera']:.2e} | {g['detection']['lidar']:.2e} | "
                         f"{g['map']['camera']:.2e} | {g['map']['lidar']:.2e} | {pair['both']} | "
                         f"{pair['without_camera']} | {pair['without_lidar']} |")
        lines.append("")
    lines += ["## Verdict", "", summary["verdict"], ""]
    atomic_write_text(path, "\n".join(lines))


def verdict(arms: dict[str, Any]) -> str:
    """Factual sentences: full_cal against issue 18's targets on the test split (analysis: docs/bev.md)."""
    f, s = arms["full_cal"], arms["sum"]
    seg = arms.get("single_seg")
    checks = [("mAP ≥ `sum`'s", f["map_mean"] >= s["map_mean"]),
              ("mIoU ≥ `sum`'s + 10 points", f["miou_mean"] >= s["miou_mean"] + 0.10)]
    if seg is not None:
        checks.append(("mIoU ≥ `single_seg`'s", f["miou_mean"] >= seg["miou_mean"]))
    parts = []
    for key, name in (("map", "mAP"), ("miou", "mIoU")):
        diff = f[f"{key}_mean"] - s[f"{key}_mean"]
        spread = max(f[f"{key}_std"], s[f"{key}_std"])
        parts.append(f"{name}: `full_cal` − `sum` = {diff * 100:+.2f} points "
                     f"(larger seed std of the two: {spread * 100:.2f})")
    met = [name for name, ok in checks if ok]
    missed = [name for name, ok in checks if not ok]
    head = ("`full_cal` meets every target on the test split (" + "; ".join(met) + ")." if not missed else
            "`full_cal` misses: " + "; ".join(missed) + (f" (met: {'; '.join(met)})" if met else "") + ".")
    return head + " " + "; ".join(parts) + ". See docs/bev.md for the analysis."


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bev_ablation", description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", default="runs/bev2k", help="data and run folders")
    # the shipped recipe's length: the default --beta (DEFAULT_PARTIAL_BETA) was chosen for it, and
    # shorter runs want a smaller beta (docs/bev.md)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--arms", nargs="+", default=list(DEFAULT_ARMS), choices=list(ARMS))
    parser.add_argument("--split", choices=("test", "val"), default="test",
                        help="split the table reports: test (final) or val (dev screen; test is then not evaluated)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a BevConfig field of the preset for every arm alike (repeatable), "
                             "e.g. shared_channels=64")
    parser.add_argument("--beta", type=float, default=DEFAULT_PARTIAL_BETA,
                        help="partial-equalisation beta of the partial / full_cal arms (chosen on validation)")
    parser.add_argument("--timing-repeats", type=int, default=20)
    parser.add_argument("--out", default="docs/results/bev_ablation.json")
    parser.add_argument("--ship", default=None, help="also save the full_cal seeds[0] model (no optimiser) here")
    parser.add_argument("--threads", type=int, default=1)
    return parser


def _finite_mean(values: list[float]) -> float:
    """Mean of the finite values (a statistic undefined for an arm, e.g. a single-task ratio, is NaN)."""
    arr = np.array(values, dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    return float(arr.mean()) if arr.size else float("nan")


def _arm_summary(arm: str, runs: dict[int, dict[str, Any]], tests: dict[int, dict[str, Any]],
                 metrics_paths: list[Path]) -> dict[str, Any]:
    seeds = sorted(runs)
    maps, mious = [tests[s]["mAP"] for s in seeds], [tests[s]["mIoU"] for s in seeds]
    map_mean, map_std = _stats(maps)
    miou_mean, miou_std = _stats(mious)
    val_map_mean, val_map_std = _stats([runs[s]["mAP"] for s in seeds])
    val_miou_mean, val_miou_std = _stats([runs[s]["mIoU"] for s in seeds])
    per_class = {}
    for key, sub in (("detection", "class_ap"), ("map", "best_iou")):
        if tests[seeds[0]].get(key):
            names = tests[seeds[0]][key][sub]
            per_class[key] = {n: _stats([tests[s][key][sub][n] for s in seeds])[0] for n in names}
    gstats = [cosine_summary(p) for p in metrics_paths]
    return {
        "map_mean": map_mean, "map_std": map_std, "miou_mean": miou_mean, "miou_std": miou_std, "seeds": seeds,
        "per_seed": {"map": maps, "miou": mious},
        "val_map_mean": val_map_mean, "val_map_std": val_map_std,
        "val_miou_mean": val_miou_mean, "val_miou_std": val_miou_std,
        "val_per_seed": {"map": [runs[s]["mAP"] for s in seeds], "miou": [runs[s]["mIoU"] for s in seeds]},
        "tp_errors_mean": {e: _stats([tests[s]["detection"][e] for s in seeds])[0]
                           for e in ("mATE", "mASE", "mAOE", "mAVE")} if tests[seeds[0]].get("detection") else None,
        "per_class_mean": per_class,
        "gradient_stats": {k: _finite_mean([g[k] for g in gstats]) for k in gstats[0]},
        **{k: v for k, v in ARMS[arm].items()},
    }


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if not 0.0 <= args.beta <= 1.0:
        print(f"bev_ablation: error: --beta must be in [0, 1], got {args.beta}", file=sys.stderr)
        return 2
    if args.ship and (args.split != "test" or "full_cal" not in args.arms):
        print("bev_ablation: error: --ship needs the full_cal arm and --split test", file=sys.stderr)
        return 2
    if len(args.seeds) < 3:
        print("bev_ablation: warning: fewer than 3 seeds", file=sys.stderr)
    try:
        cfg = BevConfig.preset(PRESET, **typed_overrides(BevConfig.preset(PRESET), args.overrides))
    except ValueError as exc:
        print(f"bev_ablation: error: {exc}", file=sys.stderr)
        return 2
    torch.set_num_threads(max(1, args.threads))
    command = " ".join(["python -m ocgs_ros.bev.ablation", *argv])
    work = Path(args.work)
    train_dir, val_dir, test_dir = make_data(work)
    train_set, val_set, test_set = (sim_dataset(d, cfg) for d in (train_dir, val_dir, test_dir))
    print(f"bev_ablation: {len(train_set)} training / {len(val_set)} validation / {len(test_set)} test frames",
          flush=True)
    results: dict[str, dict[int, dict[str, Any]]] = {arm: {} for arm in ARMS}
    tests: dict[str, dict[int, dict[str, Any]]] = {arm: {} for arm in ARMS}
    order = sorted(ARMS, key=lambda a: a != "full_cal")  # full_cal first: early sanity check
    for seed in args.seeds:
        for arm in order:
            if arm in args.arms:
                config = arm_config(arm, seed, args, train_dir, val_dir)
                results[arm][seed] = run_arm(f"{arm} seed {seed}", config, train_set, val_set)
                tests[arm][seed] = (test_evaluation(config, test_set) if args.split == "test"
                                    else results[arm][seed])
    arms_summary = {arm: _arm_summary(arm, results[arm], tests[arm],
                                      [Path(arm_config(arm, s, args, train_dir, val_dir).out) / METRICS_NAME
                                       for s in sorted(results[arm])])
                    for arm in ARMS if results[arm]}
    summary: dict[str, Any] = {"arms": arms_summary, "beta": args.beta, "command": command, "reported_split": args.split,
                               "overrides": list(args.overrides)}
    full_ckpt = Path(arm_config("full_cal", args.seeds[0], args, train_dir, val_dir).out) / CHECKPOINT_NAME
    if {"full_cal", "sum"} <= set(arms_summary):
        timing = time_steps(train_set, cfg, args.batch, args.timing_repeats, args.beta)
        summary.update({"step_time_ratio_full_vs_sum": timing["ratio"], "step_time": timing,
                        "inference_ms": time_inference(full_ckpt, val_dir), "inference_checkpoint": str(full_ckpt)})
        diagnostics = {}
        for arm in ("sum", "full_cal"):
            model, _, _ = load_checkpoint(Path(arm_config(arm, args.seeds[0], args, train_dir, val_dir).out)
                                          / CHECKPOINT_NAME)
            diagnostics[arm] = {"gradient_norms": branch_gradient_norms(model, train_set),
                                "contribution": branch_contribution(model, test_set if args.split == "test" else val_set)}
        summary["modality_diagnostics"] = diagnostics
    summary.update({"seeds": list(args.seeds), "steps": args.steps, "batch": args.batch, "preset": PRESET,
                    "config": cfg.to_dict(), "train_frames": len(train_set), "val_frames": len(val_set),
                    "test_frames": len(test_set),
                    "data": {"train": [TRAIN_SCENES, TRAIN_FRAMES, TRAIN_SEED, TRAIN_STRIDE],
                             "val": [VAL_SCENES, VAL_FRAMES, VAL_SEED, VAL_STRIDE],
                             "test": [TEST_SCENES, TEST_FRAMES, TEST_SEED, TEST_STRIDE]}})
    summary["verdict"] = verdict(arms_summary) if {"full_cal", "sum"} <= set(arms_summary) else "full_cal or sum missing"
    out = Path(args.out)
    atomic_write_json(out, finite_or_none(summary))
    write_markdown(summary, out.with_suffix(".md"))
    plot_ablation(summary, out.with_suffix(".png"))
    if args.ship:
        model, _, meta = load_checkpoint(full_ckpt)
        save_shipped(args.ship, model, meta, produced_by=command, ablation_arm=f"full_cal seed {args.seeds[0]}")
    if "step_time" in summary:
        print(f"bev_ablation: wrote {out}; full_cal vs sum step time {summary['step_time_ratio_full_vs_sum']:.3f}x, "
              f"inference {summary['inference_ms']:.1f} ms/frame", flush=True)
    else:
        print(f"bev_ablation: wrote {out}", flush=True)
    print(summary["verdict"], flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
