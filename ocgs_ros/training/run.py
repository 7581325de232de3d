"""The training loop every offline trainer shares (GOCL, BEV): a run config in, a task for the model.

:func:`run_training` owns what is the same for every model: the run folder and its refusal to
overwrite, resume, per-rank seeding and RNG restore, the data order (``DistributedSampler``
permutation from (seed, epoch), also with one process), the tqdm bar, ``--stop-after``, the
JSON-lines log averaged over ranks, checkpoint / snapshot cadence with every rank's RNG state, the
plot, and the torchrun process group. A :class:`TrainingTask` supplies the model-specific parts:
building or restoring model and optimiser, one optimisation step, what to log, how to save.

Reproducibility: the data order is a function of (seed, epoch) only, and every RNG the step
consumes (torch CPU/CUDA, numpy, python) is restored on resume, so a resumed single-process run is
bit-identical to an uninterrupted one. ``batch`` is per process; under DDP only rank 0 writes files.
"""
from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler
from tqdm import tqdm

from ..atomic_io import atomic_write_json
from ..settings import non_negative, positive
from .cli import config_to_argv
from .distributed import DEVICE_CHOICES, DistributedContext
from .metrics_log import append_metrics, read_metrics, truncate_metrics
from .options import option, option_problems, options_to_dict, required
from .rng import capture_rng_state, restore_rng_state, seed_everything

CHECKPOINT_NAME = "checkpoint.pt"
METRICS_NAME = "metrics.jsonl"
CONFIG_NAME = "config.json"
SNAPSHOT_DIR = "snapshots"


class RunSetupError(ValueError):
    """The run cannot start as asked: its folder, checkpoint or data do not fit the request."""


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """What every training run has. Trainers subclass it with their model's options and state the
    defaults that differ between them (batch, threads, log and checkpoint cadence)."""

    data: str = required("training dataset folder")
    out: str = required("run folder (checkpoint, metrics, plot)")
    steps: int = required("total optimisation steps (resume continues to it)", positive)
    # batch, threads, log_every, checkpoint_every: required here because GOCL and BEV have always had
    # different defaults for them; each trainer states its own (options.redefault).
    batch: int = required("samples per step and process", positive)
    seed: int = option(0, "seed of the initial weights, the data order and the noise")
    resume: bool = option(False, "continue from <out>/checkpoint.pt")
    stop_after: int | None = option(None, "leave after N steps of this invocation (checkpoint written; "
                                          "continue with --resume)", positive, metavar="N")
    device: str = option("auto", "where to train", choices=DEVICE_CHOICES)
    threads: int = required("torch CPU threads per process (0 = leave torch's default)", non_negative)
    max_scenes: int | None = option(None, "use only the first N training scenes", positive, metavar="N")
    log_every: int = required("steps per line of metrics.jsonl (their mean)", positive)
    checkpoint_every: int = required("steps between checkpoints (also written at the last step)", positive)
    snapshot_every: int = option(0, "keep a weights-only snapshots/step_XXXXXXX.pt every N steps (0 = none)",
                                 non_negative, metavar="N")
    no_progress: bool = option(False, "no progress bar")

    def __post_init__(self) -> None:
        errors = option_problems(self)
        if errors:
            raise ValueError("; ".join(errors))

    def to_dict(self) -> dict[str, Any]:
        """Plain values (saved with the run; a cached run is reused only for an equal dict)."""
        return options_to_dict(self)


@dataclass(frozen=True)
class StartPoint:
    """Where a run starts: step 0 with fresh weights, or a checkpoint's step and RNG states."""

    step: int = 0
    rng_states: list[dict[str, Any]] | None = None  # one per rank; None = fresh start

    @property
    def from_checkpoint(self) -> bool:
        return self.rng_states is not None


@dataclass(frozen=True)
class TrainResult:
    checkpoint: Path
    metrics: Path
    step: int  # the step the run stopped at (< steps after --stop-after)
    seconds_per_step: float | None  # median over this invocation's steps
    on_main_rank: bool  # rank 0 (the one that wrote the files; the one to report)
    evaluation: dict[str, Any] | None = None  # the task's held-out evaluation, when it has one


class TrainingTask(ABC):
    """The model-specific half of a training run. The loop calls, in order: :meth:`build`, then
    (after seeding or restoring the RNGs) :meth:`prepare`, then per step :meth:`before_step` and
    :meth:`step`; rank 0 saves and plots; at the requested last step :meth:`finish`."""

    name: str  # program name in messages and on the progress bar, e.g. "gocl_train"
    command: str  # how the trainer is run, e.g. "python -m ocgs_ros.ocl.train" (provenance)
    plot_name: str  # file in the run folder that :meth:`plot` writes

    @abstractmethod
    def build(self, ctx: DistributedContext, resume_from: Path | None) -> StartPoint:
        """Model and optimiser on ``ctx.device``: fresh, or restored from ``resume_from``."""

    @abstractmethod
    def prepare(self, ctx: DistributedContext, start: StartPoint) -> Dataset:
        """Data and data-parallel wrapping, after the RNGs are set; returns the training set."""

    @abstractmethod
    def run_info(self) -> dict[str, Any]:
        """What describes the run besides its config (saved in checkpoints and config.json)."""

    @abstractmethod
    def model_config(self) -> dict[str, Any]:
        """The model config as plain values (config.json)."""

    def before_step(self, step: int, ctx: DistributedContext, say: Callable[[str], None]) -> None:
        """Schedule changes that happen between steps (``say`` prints on rank 0)."""

    @abstractmethod
    def step(self, indices: Sequence[int], step: int, ctx: DistributedContext) -> dict[str, float]:
        """One optimisation step on the training samples ``indices``; the values to log."""

    def summarise(self, window: list[dict[str, float]]) -> dict[str, float]:
        """The logged value of each key over the steps since the last log line (mean, NaN skipped)."""
        return {k: float(np.nanmean([row[k] for row in window])) for k in window[0]}

    def log_fields(self, mean: dict[str, float]) -> dict[str, Any]:
        """The log line's fields between ``step, epoch`` and ``seconds_per_step``."""
        return mean

    def postfix(self, row: dict[str, Any]) -> dict[str, str]:
        """Progress-bar figures."""
        return {}

    @abstractmethod
    def save(self, path: Path, step: int, run_info: dict[str, Any], rng_states: list[dict[str, Any]]) -> None:
        """Write the resumable checkpoint (rank 0)."""

    @abstractmethod
    def save_weights(self, path: Path, step: int, run_info: dict[str, Any]) -> None:
        """Write a weights-only snapshot (rank 0)."""

    @abstractmethod
    def plot(self, rows: list[dict[str, Any]], path: Path) -> None:
        """Training curves from the metrics log (rank 0)."""

    def finish(self, ctx: DistributedContext, run_info: dict[str, Any]) -> dict[str, Any] | None:
        """After the last requested step: an evaluation to return, if the task has one."""
        return None


def run_training(config: RunConfig, task: TrainingTask, argv: Sequence[str] | None = None) -> TrainResult:
    """Run (or resume) training as ``config`` says, in this process (one rank under torchrun).

    ``argv``: the command line the config came from, recorded as the run's command; runs started
    from code record an equivalent one built from the config.
    """
    command = " ".join([task.command, *(config_to_argv(config) if argv is None else argv)])
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    ctx = DistributedContext(config.device)
    try:
        result = _train(config, task, ctx, command)
        ctx.finish()
    finally:
        ctx.close()
    return result


def _train(config: RunConfig, task: TrainingTask, ctx: DistributedContext, command: str) -> TrainResult:
    out = Path(config.out)
    checkpoint_path, metrics_path = out / CHECKPOINT_NAME, out / METRICS_NAME
    if config.resume and not checkpoint_path.exists():
        raise RunSetupError(f"--resume: no checkpoint at {checkpoint_path}")
    if not config.resume and checkpoint_path.exists():
        raise RunSetupError(f"{checkpoint_path} exists: pass --resume or choose another --out")
    seed_everything(config.seed)  # identical initial weights on every rank
    start = task.build(ctx, checkpoint_path if config.resume else None)
    if not start.from_checkpoint:
        seed_everything(config.seed + ctx.rank)  # per-rank noise (Gumbel, reparameterisation, flips)
    elif len(start.rng_states) == ctx.world_size:
        restore_rng_state(start.rng_states[ctx.rank])
    else:  # another world size: the data order still follows (seed, epoch); noise re-seeded
        seed_everything(config.seed + 1000003 * start.step + ctx.rank)
    train_set = task.prepare(ctx, start)
    # One sampler for 1..N processes: permutation from (seed, epoch), this rank's share of it.
    sampler = DistributedSampler(train_set, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True,
                                 seed=config.seed, drop_last=True)
    batches_per_epoch = len(sampler) // config.batch
    if batches_per_epoch == 0:
        raise RunSetupError(f"{len(sampler)} training samples per process is fewer than --batch {config.batch}")

    run_info = {**task.run_info(), "world_size": ctx.world_size, "command": command,
                "train_config": config.to_dict()}
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
        if config.resume:
            truncate_metrics(metrics_path, start.step)
        elif metrics_path.exists():
            metrics_path.unlink()
        atomic_write_json(out / CONFIG_NAME, {"config": task.model_config(), "run": run_info}, indent=1)

    progress = tqdm(total=config.steps, initial=start.step, desc=f"{task.name} {out.name}",
                    disable=not ctx.is_main or config.no_progress, dynamic_ncols=True)
    say = progress.write if ctx.is_main else (lambda text: None)
    stop_at = config.steps if config.stop_after is None else min(config.steps, start.step + config.stop_after)
    step = start.step
    window: list[dict[str, float]] = []
    step_seconds: list[float] = []
    while step < stop_at:
        epoch, position = divmod(step, batches_per_epoch)
        sampler.set_epoch(epoch)
        order = list(sampler)
        for batch_index in range(position, batches_per_epoch):
            if step >= stop_at:
                break
            task.before_step(step, ctx, say)
            began = time.perf_counter()
            window.append(task.step(order[batch_index * config.batch:(batch_index + 1) * config.batch], step, ctx))
            step_seconds.append(time.perf_counter() - began)
            step += 1
            progress.update(1)
            if step % config.log_every == 0 or step == config.steps:
                mean = ctx.mean_over_ranks(task.summarise(window))
                if ctx.is_main:
                    row = {"step": step, "epoch": epoch, **task.log_fields(mean),
                           "seconds_per_step": float(np.mean(step_seconds[-len(window):]))}
                    append_metrics(metrics_path, row)
                    progress.set_postfix(task.postfix(row))
                window = []
            snapshot = config.snapshot_every > 0 and step % config.snapshot_every == 0
            if step % config.checkpoint_every == 0 or step == stop_at or snapshot:
                rng_states = ctx.all_gather(capture_rng_state())
                if ctx.is_main:
                    task.save(checkpoint_path, step, run_info, rng_states)
                    if snapshot:
                        task.save_weights(out / SNAPSHOT_DIR / f"step_{step:07d}.pt", step, run_info)
                    task.plot(read_metrics(metrics_path), out / task.plot_name)
    progress.close()
    evaluation = task.finish(ctx, run_info) if step == config.steps else None
    return TrainResult(checkpoint=checkpoint_path, metrics=metrics_path, step=step,
                       seconds_per_step=float(np.median(step_seconds)) if step_seconds else None,
                       on_main_rank=ctx.is_main, evaluation=evaluation)
