"""bev_train: train the camera+LiDAR BEV model with (or without) multi-level gradient calibration.

    python -m ocgs_ros.bev.train --data runs/bev/data_train --val-data runs/bev/data_val \\
        --out runs/bev/full --preset small --steps 300 --batch 2 --seed 0 \\
        --calibration mgc --modality-cal --tasks det,map [--resume] [--device auto|cpu|cuda]
    torchrun --nproc_per_node=2 -m ocgs_ros.bev.train ...     # DDP (gloo on CPU, nccl on CUDA)

Writes into ``--out``: ``checkpoint.pt`` (latest: model, optimiser, scheduler, step, RNG
states), ``metrics.jsonl`` (one JSON object per ``--log-every`` steps: losses, task-gradient
cosine, task gradient norms and weights, per-modality gradient norms before/after calibration,
learning rate, seconds per step), ``curves.png``, ``config.json`` and, with ``--val-data``,
``eval.json``. The loop itself (resume, seeding, logging, DDP) is :mod:`ocgs_ros.training`'s;
under DDP every rank calibrates its own batch's gradients before DDP averages the parameter
gradients.
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from ..atomic_io import atomic_save_figure, atomic_write_json
from ..checkpoint_io import CheckpointError
from ..settings import non_negative, positive, unit_interval
from ..training import CHECKPOINT_NAME, RunConfig, RunSetupError, StartPoint, TrainingTask, TrainResult, run_training
from ..training.cli import parse_config
from ..training.distributed import DistributedContext, data_parallel
from ..training.options import option, redefault, required, typed_overrides
from .checkpoint import load_checkpoint, save_checkpoint
from .config import TASKS, BevConfig
from .data import BevSampleDataset, driving_dataset
from .evaluate import evaluate_model, finite_or_none, parse_tasks
from .frames import collate_samples
from .gradcal import DEFAULT_PARTIAL_BETA, TASK_METHODS, GradientCalibrator
from .losses import task_losses
from .model import BevFusionModel

PRESETS = ("tiny", "small", "surround", "default")
PLOT_NAME = "curves.png"
EVAL_NAME = "eval.json"
# Run settings a resume must repeat: the schedule and the calibration are built from them.
RESUME_MUST_MATCH = ("calibration", "partial_beta", "modality_cal", "tasks", "seed", "batch", "steps", "lr")


def _tasks_check(text: str) -> str | None:
    try:
        parse_tasks(text)
    except ValueError:
        return f"must be a comma list of det and/or map, got {text!r}"
    return None


@dataclass(frozen=True, kw_only=True)
class BevTrainConfig(RunConfig):
    """One BEV training run (the command line's options)."""

    data: str = required("simulated driving dataset folder (docs/datasets.md) or nuScenes-format dataroot")
    val_data: str | None = option(None, "held-out folder evaluated at the end (eval.json)")
    preset: str = option("small", "model preset", choices=PRESETS)
    overrides: tuple[str, ...] = option((), "override a BevConfig field (repeatable)", flag="--set",
                                        metavar="KEY=VALUE")
    lr: float = option(2e-3, "peak learning rate (AdamW; linear warm-up, cosine decay)", positive)
    weight_decay: float = option(1e-2, "AdamW weight decay", non_negative)
    clip_norm: float = option(35.0, "parameter-gradient clip (0 = off)", non_negative)
    calibration: str = option("mgc", "task-level method", choices=TASK_METHODS)
    partial_beta: float = option(DEFAULT_PARTIAL_BETA, "with --calibration partial: raise every task's gradient at "
                                 "the shared feature to at least this fraction of the largest one's norm",
                                 unit_interval)
    modality_cal: bool | None = option(None, "modality-level calibration (default: on for mgc, off otherwise)")
    tasks: str = option("det,map", "det, map or det,map", _tasks_check)
    batch: int = redefault(RunConfig, "batch", 2)
    threads: int = redefault(RunConfig, "threads", 1)
    log_every: int = redefault(RunConfig, "log_every", 1)
    checkpoint_every: int = redefault(RunConfig, "checkpoint_every", 100)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.model_config()  # a bad --set fails here, before anything runs

    def model_config(self) -> BevConfig:
        """The preset with the ``--set key=value`` overrides (typed like the preset's fields)."""
        return BevConfig.preset(self.preset, **typed_overrides(BevConfig.preset(self.preset), self.overrides))

    def task_names(self) -> tuple[str, ...]:
        return parse_tasks(self.tasks)


# ----- model pieces -------------------------------------------------------------------------
def build_calibrator(method: str, modality_cal: bool | None, seed: int,
                     partial_beta: float = DEFAULT_PARTIAL_BETA) -> GradientCalibrator:
    return GradientCalibrator(task_method=method, modality_calibration=modality_cal, seed=seed, beta=partial_beta)


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


# ----- the run ------------------------------------------------------------------------------
class BevTask(TrainingTask):
    """The BEV model's part of a training run: model, AdamW + schedule, calibrator, evaluation."""

    name = "bev_train"
    command = "python -m ocgs_ros.bev.train"
    plot_name = PLOT_NAME

    def __init__(self, config: BevTrainConfig, train_set: BevSampleDataset | None = None,
                 val_set: BevSampleDataset | None = None):
        self.config = config
        self.cfg = config.model_config()
        self.tasks = config.task_names()
        self.train_set, self.val_set = train_set, val_set

    def build(self, ctx: DistributedContext, resume_from: Path | None) -> StartPoint:
        meta: dict[str, Any] | None = None
        if resume_from is not None:
            model, saved, meta = load_checkpoint(resume_from)
            if saved != self.cfg:
                differing = sorted(k for k, v in saved.to_dict().items() if self.cfg.to_dict()[k] != v)
                raise CheckpointError(f"checkpoint {resume_from}: its config differs from the requested one in "
                                      f"{differing}; resume with the same --preset/--set")
            old, new = meta["extra"].get("run", {}), self.run_info()
            for key in RESUME_MUST_MATCH:
                if key in old and old[key] != new[key]:
                    raise CheckpointError(f"checkpoint {resume_from}: was trained with {key}={old[key]!r}, "
                                          f"this run asks for {new[key]!r}")
            model.train()
        else:
            model = BevFusionModel(self.cfg)
        self.model = model.to(ctx.device)
        self.optimizer, self.scheduler = build_optimizer(self.model, self.config.lr, self.config.weight_decay,
                                                         self.config.steps)
        if meta is None:
            return StartPoint()
        if meta["optimizer"] is None:
            raise CheckpointError(f"checkpoint {resume_from}: holds no optimiser state, cannot resume")
        self.optimizer.load_state_dict(meta["optimizer"])
        if meta["scheduler"] is not None:
            self.scheduler.load_state_dict(meta["scheduler"])
        return StartPoint(step=meta["step"], rng_states=meta["extra"].get("rng_states", []))

    def prepare(self, ctx: DistributedContext, start: StartPoint) -> BevSampleDataset:
        self.calibrator = build_calibrator(self.config.calibration, self.config.modality_cal,
                                           self.config.seed + 7919 * start.step, self.config.partial_beta)
        if self.train_set is None:
            self.train_set = driving_dataset(self.config.data, self.cfg, self.config.max_scenes)
        if self.val_set is None and self.config.val_data:
            self.val_set = driving_dataset(self.config.val_data, self.cfg)
        # Default buffer broadcast: every rank normalises with rank 0's BatchNorm statistics.
        self.step_model = data_parallel(self.model, ctx)
        return self.train_set

    def run_info(self) -> dict[str, Any]:
        c = self.config
        return {"preset": c.preset, "data": str(c.data), "seed": c.seed, "batch": c.batch, "steps": c.steps,
                "lr": c.lr, "calibration": c.calibration, "partial_beta": c.partial_beta, "modality_cal": c.modality_cal,
                "tasks": list(self.tasks)}

    def model_config(self) -> dict[str, Any]:
        return self.cfg.to_dict()

    def step(self, indices: Sequence[int], step: int, ctx: DistributedContext) -> dict[str, float]:
        samples = [self.train_set[i] for i in indices]
        row = train_step(self.step_model, self.model, self.calibrator, self.optimizer, samples, self.tasks,
                         ctx.device, self.config.clip_norm)
        row["lr"] = self.optimizer.param_groups[0]["lr"]
        self.scheduler.step()
        return row

    def postfix(self, row: dict[str, Any]) -> dict[str, str]:
        return {"det": f"{row['loss_detection']:.3f}", "map": f"{row['loss_map']:.3f}",
                "cos": f"{row['task_cosine']:+.2f}"}

    def save(self, path: Path, step: int, run_info: dict[str, Any], rng_states: list[dict[str, Any]]) -> None:
        save_checkpoint(path, self.model, self.optimizer, step, extra={"run": run_info, "rng_states": rng_states},
                        scheduler=self.scheduler)

    def save_weights(self, path: Path, step: int, run_info: dict[str, Any]) -> None:
        save_checkpoint(path, self.model, step=step, extra={"run": run_info})

    def plot(self, rows: list[dict[str, Any]], path: Path) -> None:
        plot_curves(rows, path, title=Path(self.config.out).name)

    def finish(self, ctx: DistributedContext, run_info: dict[str, Any]) -> dict[str, Any] | None:
        if self.val_set is None or not ctx.is_main:
            return None
        out = Path(self.config.out)
        evaluation = evaluate_model(self.model, self.val_set, tasks=self.tasks, device=ctx.device)
        evaluation.update({"checkpoint": str(out / CHECKPOINT_NAME), "step": self.config.steps, "run": run_info})
        atomic_write_json(out / EVAL_NAME, finite_or_none(evaluation))
        return evaluation


def train(config: BevTrainConfig, train_set: BevSampleDataset | None = None, val_set: BevSampleDataset | None = None,
          argv: Sequence[str] | None = None) -> TrainResult:
    """Run (or resume) a BEV training run in this process (one rank under torchrun).

    ``train_set`` / ``val_set`` may be passed in (the ablation prepares them once for all runs);
    otherwise they are read from ``config.data`` / ``config.val_data``.
    """
    return run_training(config, BevTask(config, train_set, val_set), argv)


def main(argv: list[str] | None = None) -> int:
    """Console entry point (``python -m ocgs_ros.bev.train``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    config = parse_config(BevTrainConfig, argv, prog="bev_train", description=__doc__.split("\n\n")[0])
    try:
        result = train(config, argv=argv)
    except (RunSetupError, CheckpointError) as exc:
        print(f"bev_train: error: {exc}", file=sys.stderr)
        return 2
    if result.on_main_rank:
        ev = result.evaluation
        tail = f"  val mAP {ev['mAP']}  mIoU {ev['mIoU']}" if ev else ""
        speed = f"  {result.seconds_per_step:.3f} s/step" if result.seconds_per_step is not None else ""
        print(f"bev_train: checkpoint {result.checkpoint}{speed}{tail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
