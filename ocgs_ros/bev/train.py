"""bev_train: train the camera+LiDAR BEV model with (or without) multi-level gradient calibration.

    python -m ocgs_ros.bev.train --data runs/bev/data_train --val-data runs/bev/data_val \\
        --out runs/bev/full --preset small --steps 300 --batch 2 --seed 0 \\
        --calibration mgc --modality-cal --tasks det,map [--resume] [--device auto|cpu|cuda]
    torchrun --nproc_per_node=2 -m ocgs_ros.bev.train ...     # DDP (gloo on CPU, nccl on CUDA)

Writes into ``--out``: ``checkpoint.pt`` (latest: model, optimiser, scheduler, step, RNG
states), ``metrics.jsonl`` (one JSON object per ``--log-every`` steps: losses, task-gradient
cosine, task gradient norms and weights, per-modality gradient norms before/after calibration,
learning rate, seconds per step), ``curves.png`` and, with ``--val-data``, ``eval.json``.

The data order is a function of (seed, epoch) (``DistributedSampler``, also with one process)
and every RNG is restored on ``--resume``, so a resumed single-process run is identical to an
uninterrupted one. ``--batch`` is per process; under DDP only rank 0 writes files, and every
rank calibrates its own batch's gradients before DDP averages the parameter gradients.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler
from tqdm import tqdm

from ..atomic_io import atomic_save_figure, atomic_write_json
from ..training import (DistributedContext, capture_rng_state, parse_overrides, read_metrics, restore_rng_state,
                        seed_everything, truncate_metrics)
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .config import TASKS, BevConfig
from .data import BevSampleDataset, sim_dataset
from .evaluate import evaluate_model, finite_or_none, parse_tasks
from .frames import collate_samples
from .gradcal import TASK_METHODS, GradientCalibrator
from .losses import task_losses
from .model import BevFusionModel

CHECKPOINT_NAME = "checkpoint.pt"
METRICS_NAME = "metrics.jsonl"
PLOT_NAME = "curves.png"
EVAL_NAME = "eval.json"


# ----- config -------------------------------------------------------------------------------
def _typed(value: Any, default: Any) -> Any:
    if isinstance(default, tuple):
        items = value if isinstance(value, (list, tuple)) else [value]
        kind = type(default[0]) if default else float
        return tuple(kind(v) for v in items)
    if isinstance(default, bool):
        return value if isinstance(value, bool) else str(value).lower() == "true"
    return type(default)(value)


def build_config(preset: str, overrides: dict[str, Any]) -> BevConfig:
    """The preset with ``--set key=value`` overrides (typed like the preset's field)."""
    base = BevConfig.preset(preset)
    fields = base.to_dict()
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise ValueError(f"--set: unknown BevConfig keys {unknown}")
    grids = {k for k in overrides if k in ("det_grid", "map_grid")}
    typed = {k: _typed(v, getattr(base, k)) for k, v in overrides.items() if k not in grids}
    typed.update({k: [float(x) for x in overrides[k]] for k in grids})
    return BevConfig.from_dict({**fields, **typed})


def build_calibrator(method: str, modality_cal: bool | None, seed: int) -> GradientCalibrator:
    return GradientCalibrator(task_method=method, modality_calibration=modality_cal, seed=seed)


def build_optimizer(model: BevFusionModel, lr: float, weight_decay: float, steps: int
                    ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW with a linear warm-up over 5 % of the steps and a cosine decay to 5 % of ``lr``."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    warmup = max(1, int(0.05 * steps))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, steps - warmup))
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


# ----- one step -----------------------------------------------------------------------------
def train_step(model: Any, core: BevFusionModel, calibrator: GradientCalibrator, optimizer: torch.optim.Optimizer,
               samples: Sequence[dict[str, Any]], tasks: Sequence[str], device: torch.device,
               clip_norm: float) -> dict[str, Any]:
    """Forward, calibrated backward, clip, optimiser step; returns the values to log.

    A task left out of ``tasks`` keeps its head in the graph with its loss multiplied by zero, so
    single-task runs go through the same junctions (their statistics stay comparable).
    """
    inputs, targets, _ = collate_samples(samples)
    inputs = inputs.to(device)
    optimizer.zero_grad(set_to_none=True)
    out = model(inputs, calibrator=calibrator)
    if "map" not in targets:
        if "map" in tasks:
            raise ValueError("the training set has no map layers but --tasks includes map")
        targets["map"] = torch.zeros_like(out.map_logits)
    losses, parts = task_losses(out, targets, core.cfg)
    weighted = {t: (loss if t in tasks else loss * 0.0) for t, loss in losses.items()}
    stats = calibrator.step_backward(weighted, out.shared, out.modality_features())
    grad_norm = torch.nn.utils.clip_grad_norm_(core.parameters(), clip_norm) if clip_norm > 0 else torch.tensor(0.0)
    optimizer.step()
    row: dict[str, Any] = {f"loss_{t}": float(losses[t].detach()) for t in TASKS}
    row.update({f"part_{k}": v for k, v in parts.items()})
    row["param_grad_norm"] = float(grad_norm)
    s = stats.as_dict()
    row["task_cosine"] = s["task_cosine"].get("detection|map", float("nan"))
    for key in ("task_grad_norm", "task_weights", "modality_grad_norm_before", "modality_grad_norm_after"):
        for name, value in s[key].items():
            row[f"{key}_{name}"] = value
    row["combined_grad_norm"] = s["combined_grad_norm"]
    return row


# ----- plots --------------------------------------------------------------------------------
def plot_curves(rows: list[dict[str, Any]], path: Path, title: str = "") -> None:
    """Losses, task-gradient cosine and modality gradient norms (before/after) vs step."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not rows:
        return
    steps = [r["step"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for t in TASKS:
        axes[0].plot(steps, [r[f"loss_{t}"] for r in rows], label=t)
    axes[0].set_yscale("log")
    axes[0].set_title("task losses")
    axes[1].plot(steps, [r["task_cosine"] for r in rows], ".", ms=2)
    axes[1].axhline(0, color="k", lw=0.5)
    axes[1].set_title("cos(g_det, g_map) at the shared feature")
    for m, style in (("camera", "tab:blue"), ("lidar", "tab:orange")):
        for when, ls in (("before", ":"), ("after", "-")):
            key = f"modality_grad_norm_{when}_{m}"
            if key in rows[0]:
                axes[2].plot(steps, [r[key] for r in rows], ls, color=style, label=f"{m} {when}")
    axes[2].set_yscale("log")
    axes[2].set_title("gradient norm entering each branch")
    for ax in axes:
        ax.set_xlabel("step")
        ax.legend(fontsize=8) if ax.get_legend_handles_labels()[0] else None
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    atomic_save_figure(fig, path, dpi=70)


# ----- training -----------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bev_train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="simulated driving dataset folder (docs/datasets.md)")
    parser.add_argument("--val-data", default=None, help="held-out folder evaluated at the end (eval.json)")
    parser.add_argument("--out", required=True, help="run folder")
    parser.add_argument("--preset", default="small", choices=["tiny", "small", "default"])
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a BevConfig field (repeatable)")
    parser.add_argument("--steps", type=int, required=True, help="total optimisation steps (resume continues to it)")
    parser.add_argument("--batch", type=int, default=2, help="frames per step and process")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--weight-decay", type=float, default=1e-2)
    parser.add_argument("--clip-norm", type=float, default=35.0, help="parameter-gradient clip (0 = off)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--calibration", default="mgc", choices=list(TASK_METHODS), help="task-level method")
    parser.add_argument("--modality-cal", dest="modality_cal", action=argparse.BooleanOptionalAction, default=None,
                        help="modality-level calibration (default: on for mgc, off otherwise)")
    parser.add_argument("--tasks", default="det,map", help="det, map or det,map")
    parser.add_argument("--resume", action="store_true", help="continue from <out>/checkpoint.pt")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads per process")
    parser.add_argument("--log-every", type=int, default=1)
    parser.add_argument("--checkpoint-every", type=int, default=100)
    parser.add_argument("--max-scenes", type=int, default=None, help="use only the first N training scenes")
    parser.add_argument("--stop-after", type=int, default=None, metavar="N",
                        help="leave after N steps of this invocation (checkpoint written; continue with --resume)")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def _average_across_ranks(row: dict[str, Any], ctx: DistributedContext) -> dict[str, Any]:
    if not ctx.distributed:
        return row
    names = sorted(k for k, v in row.items() if isinstance(v, float))
    tensor = torch.tensor([row[n] for n in names], dtype=torch.float64, device=ctx.device)
    dist.all_reduce(tensor)
    tensor /= ctx.world_size
    return {**row, **dict(zip(names, tensor.tolist()))}


def _gather_rng_states(ctx: DistributedContext) -> list[dict[str, Any]]:
    state = capture_rng_state()
    if not ctx.distributed:
        return [state]
    gathered: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(gathered, state)
    return gathered


def _wrap(model: BevFusionModel, ctx: DistributedContext) -> Any:
    if not ctx.distributed:
        return model
    # Default buffer broadcast: every rank normalises with rank 0's BatchNorm statistics.
    return torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)


def train(args: argparse.Namespace, ctx: DistributedContext, argv: list[str],
          train_set: BevSampleDataset | None = None, val_set: BevSampleDataset | None = None) -> dict[str, Any]:
    """Run (or resume) training; returns ``{"checkpoint", "metrics", "eval", "seconds_per_step"}``.

    ``train_set`` / ``val_set`` may be passed in (the ablation prepares them once for all runs);
    otherwise they are read from ``args.data`` / ``args.val_data``.
    """
    if args.steps < 1 or args.batch < 1:
        raise ValueError("--steps and --batch must be >= 1")
    tasks = parse_tasks(args.tasks)
    out = Path(args.out)
    checkpoint_path, metrics_path = out / CHECKPOINT_NAME, out / METRICS_NAME
    seed_everything(args.seed)  # identical initial weights on every rank
    config = build_config(args.preset, parse_overrides(args.overrides))
    run_info = {"preset": args.preset, "data": str(args.data), "seed": args.seed, "batch": args.batch,
                "steps": args.steps, "lr": args.lr, "calibration": args.calibration,
                "modality_cal": args.modality_cal, "tasks": list(tasks), "world_size": ctx.world_size,
                "command": " ".join(argv)}
    resume_meta = None
    start_step = 0
    if args.resume and checkpoint_path.exists():
        model, saved, resume_meta = load_checkpoint(checkpoint_path)
        if saved != config:
            differing = sorted(k for k, v in saved.to_dict().items() if config.to_dict()[k] != v)
            raise CheckpointError(f"checkpoint {checkpoint_path}: its config differs from the requested one in "
                                  f"{differing}; resume with the same --preset/--set")
        old = resume_meta["extra"].get("run", {})
        for key in ("calibration", "modality_cal", "tasks", "seed", "batch", "steps", "lr"):
            if key in old and old[key] != run_info[key]:
                raise CheckpointError(f"checkpoint {checkpoint_path}: was trained with {key}={old[key]!r}, "
                                      f"this run asks for {run_info[key]!r}")
        start_step = resume_meta["step"]
        model.train()
    elif args.resume:
        raise FileNotFoundError(f"--resume: no checkpoint at {checkpoint_path}")
    else:
        if checkpoint_path.exists():
            raise FileExistsError(f"{checkpoint_path} exists: pass --resume or choose another --out")
        model = BevFusionModel(config)
    model.to(ctx.device)
    optimizer, scheduler = build_optimizer(model, args.lr, args.weight_decay, args.steps)
    if resume_meta is not None:
        if resume_meta["optimizer"] is None:
            raise CheckpointError(f"checkpoint {checkpoint_path}: holds no optimiser state, cannot resume")
        optimizer.load_state_dict(resume_meta["optimizer"])
        if resume_meta["scheduler"] is not None:
            scheduler.load_state_dict(resume_meta["scheduler"])
        rng_states = resume_meta["extra"].get("rng_states", [])
        if len(rng_states) == ctx.world_size:
            restore_rng_state(rng_states[ctx.rank])
        else:
            seed_everything(args.seed + 1000003 * start_step + ctx.rank)
    else:
        seed_everything(args.seed + ctx.rank)
    calibrator = build_calibrator(args.calibration, args.modality_cal, args.seed + 7919 * start_step)

    if train_set is None:
        train_set = sim_dataset(args.data, config, args.max_scenes)
    if val_set is None and args.val_data:
        val_set = sim_dataset(args.val_data, config)
    sampler = DistributedSampler(train_set, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True,
                                 seed=args.seed, drop_last=True)
    batches_per_epoch = len(sampler) // args.batch
    if batches_per_epoch == 0:
        raise ValueError(f"{len(sampler)} training frames per process is fewer than --batch {args.batch}")
    step_model = _wrap(model, ctx)

    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
        if resume_meta is not None:
            truncate_metrics(metrics_path, start_step)
        elif metrics_path.exists():
            metrics_path.unlink()
        atomic_write_json(out / "config.json", {"config": config.to_dict(), "run": run_info})
    progress = tqdm(total=args.steps, initial=start_step, desc=f"bev_train {out.name}",
                    disable=not ctx.is_main or args.no_progress, dynamic_ncols=True)
    step = start_step
    stop_at = args.steps if args.stop_after is None else min(args.steps, start_step + args.stop_after)
    step_times: list[float] = []
    window: list[dict[str, Any]] = []
    while step < stop_at:
        epoch, position = divmod(step, batches_per_epoch)
        sampler.set_epoch(epoch)
        order = list(sampler)
        for batch_index in range(position, batches_per_epoch):
            if step >= stop_at:
                break
            samples = [train_set[i] for i in order[batch_index * args.batch:(batch_index + 1) * args.batch]]
            t0 = time.perf_counter()
            row = train_step(step_model, model, calibrator, optimizer, samples, tasks, ctx.device, args.clip_norm)
            step_times.append(time.perf_counter() - t0)
            row["lr"] = optimizer.param_groups[0]["lr"]
            scheduler.step()
            step += 1
            progress.update(1)
            window.append(row)
            if step % args.log_every == 0 or step == args.steps:
                mean = {k: float(np.nanmean([w[k] for w in window])) for k in window[0]}
                mean = _average_across_ranks(mean, ctx)
                if ctx.is_main:
                    record = {"step": step, "epoch": epoch, **mean, "seconds_per_step": step_times[-1]}
                    with metrics_path.open("a") as f:
                        f.write(json.dumps(finite_or_none(record)) + "\n")
                    progress.set_postfix(det=f"{mean['loss_detection']:.3f}", map=f"{mean['loss_map']:.3f}",
                                         cos=f"{mean['task_cosine']:+.2f}")
                window = []
            if step % args.checkpoint_every == 0 or step == stop_at:
                rng_states = _gather_rng_states(ctx)
                if ctx.is_main:
                    save_checkpoint(checkpoint_path, model, optimizer, step,
                                    extra={"run": run_info, "rng_states": rng_states}, scheduler=scheduler)
                    plot_curves([r for r in read_metrics(metrics_path)], out / PLOT_NAME, title=out.name)
    progress.close()
    result: dict[str, Any] = {"checkpoint": str(checkpoint_path), "metrics": str(metrics_path),
                              "seconds_per_step": float(np.median(step_times)) if step_times else None, "eval": None}
    if val_set is not None and ctx.is_main and step == args.steps:
        evaluation = evaluate_model(model, val_set, tasks=tasks, device=ctx.device)
        evaluation.update({"checkpoint": str(checkpoint_path), "step": step, "run": run_info})
        atomic_write_json(out / EVAL_NAME, finite_or_none(evaluation))
        result["eval"] = evaluation
    return result


def main(argv: list[str] | None = None) -> int:
    """Console entry point (``python -m ocgs_ros.bev.train``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    torch.set_num_threads(max(1, args.threads))
    ctx = DistributedContext(args.device)
    try:
        result = train(args, ctx, ["python -m ocgs_ros.bev.train", *argv])
        if ctx.is_main:
            ev = result["eval"]
            tail = f"  val mAP {ev['mAP']}  mIoU {ev['mIoU']}" if ev else ""
            print(f"bev_train: checkpoint {result['checkpoint']}  {result['seconds_per_step']:.3f} s/step{tail}")
        ctx.finish()
    finally:
        ctx.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
