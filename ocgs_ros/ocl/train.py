"""gocl_train: train a GOCL model on a simulated tabletop dataset (offline, CPU or CUDA, DDP).

    python -m ocgs_ros.ocl.train --data data/gocl_train --out runs/gocl --preset cpu \\
        --steps 12000 --batch 8 --seed 0 [--resume] [--no-codebook] [--device auto|cpu|cuda]
    torchrun --nproc_per_node=2 -m ocgs_ros.ocl.train ...      # data-parallel (gloo on CPU)

Writes into ``--out``: ``checkpoint.pt`` (latest; model, optimiser, step, RNG states, codebook
revival buffer), ``snapshots/step_XXXXXXX.pt`` every ``--snapshot-every`` steps (for learning
curves), ``metrics.jsonl`` (one JSON object per ``--log-every`` steps) and ``loss.png``.

Reproducibility: the data order is a function of (seed, epoch) only (``DistributedSampler``
permutation, also with one process), and every RNG the step consumes (torch CPU/CUDA, numpy,
python) is restored on ``--resume``, so a resumed single-process run is bit-identical to an
uninterrupted one. ``--batch`` is per process; under DDP only rank 0 writes files.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler
from tqdm import tqdm

from ..atomic_io import atomic_save_figure
from ..training import (DistributedContext, capture_rng_state, parse_overrides, read_metrics,
                        restore_rng_state, seed_everything, truncate_metrics)
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .colour import fit_colour_whitening
from .config import GoclConfig
from .data import GoclViewDataset
from .model import BACKGROUND_SLOT, GoclModel
from .optim import build_optimizer, train_step

CHECKPOINT_NAME = "checkpoint.pt"
METRICS_NAME = "metrics.jsonl"
PLOT_NAME = "loss.png"
SNAPSHOT_DIR = "snapshots"


class _DistributedModel:
    """Routes ``train_step``'s forward through DDP (gradient all-reduce) while every other
    attribute (config, codebook, tau_at, parameters) comes from the wrapped :class:`GoclModel`."""

    def __init__(self, ddp: torch.nn.parallel.DistributedDataParallel):
        self._ddp = ddp
        self._module = ddp.module

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._ddp(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)


# ----- config -------------------------------------------------------------------------------
def _typed(value: Any, default: Any) -> Any:
    if isinstance(default, tuple):
        return tuple(int(v) for v in (value if isinstance(value, (list, tuple)) else [value]))
    if isinstance(default, bool):
        return value if isinstance(value, bool) else str(value).lower() == "true"
    return type(default)(float(value)) if isinstance(default, int) else type(default)(value)


def build_config(preset: str, overrides: dict[str, Any], use_codebook: bool) -> GoclConfig:
    """The preset with ``--set`` overrides and the ``--no-codebook`` switch applied."""
    base = GoclConfig.preset(preset)
    fields = base.to_dict()
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise ValueError(f"--set: unknown GoclConfig keys {unknown}")
    defaults = {name: getattr(base, name) for name in overrides}
    typed = {name: _typed(value, defaults[name]) for name, value in overrides.items()}
    if not use_codebook:
        typed["use_codebook"] = False
    return GoclConfig.preset(preset, **typed)


# ----- logging and plots --------------------------------------------------------------------
def codebook_statistics(model: GoclModel) -> dict[str, float]:
    """Perplexity of the usage EMA (effective number of prototypes in use) and active count."""
    usage = model.codebook.usage_ema.detach().double().cpu()
    usage = usage / usage.sum().clamp_min(1e-12)
    entropy = float(-(torch.special.xlogy(usage, usage)).sum())
    threshold = model.config.dead_usage_fraction / model.config.codebook_size
    return {"codebook_perplexity": math.exp(entropy),
            "codebook_active": int((model.codebook.usage_ema > threshold).sum())}


def plot_training_curves(rows: list[dict[str, Any]], path: Path) -> None:
    """Loss terms, tau and codebook perplexity vs step (PNG)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not rows:
        return
    steps = [row["step"] for row in rows]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for name in ("total", "reconstruction"):
        axes[0].plot(steps, [row[name] for row in rows], label=name)
    axes[0].set_yscale("log")
    axes[0].set_title("loss (per-value MSE scale)")
    for name in ("kl_ext", "kl_bck", "kl_codebook_usage", "background_smoothness"):
        axes[1].plot(steps, [row[name] for row in rows], label=name)
    axes[1].set_yscale("symlog", linthresh=1e-3)
    axes[1].set_title("regularisers (unweighted)")
    axes[2].plot(steps, [row["codebook_perplexity"] for row in rows], label="codebook perplexity")
    axes[2].plot(steps, [row["codebook_active"] for row in rows], label="active prototypes")
    twin = axes[2].twinx()
    twin.plot(steps, [row["tau"] for row in rows], "k--", label="tau")
    twin.set_ylabel("Gumbel tau")
    axes[2].set_title("codebook")
    for ax in axes:
        ax.set_xlabel("step")
        ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    atomic_save_figure(fig, path, dpi=80)


# ----- codebook warm-up ---------------------------------------------------------------------
WHITENING_IMAGES = 2000  # views whose pixels fit the colour whitening (first ones: deterministic)
KMEANS_IMAGES = 512  # views whose slot features seed the prototypes (deterministic: the first ones)
KMEANS_SEED = 0


def phase_config(config: GoclConfig, step: int) -> GoclConfig:
    """The config the model runs with at ``step``: without quantisation during the codebook
    warm-up (``codebook_warmup_steps``), the target config afterwards."""
    if config.use_codebook and step < config.codebook_warmup_steps:
        return dataclasses.replace(config, use_codebook=False)
    return config


def phase_learning_rates(config: GoclConfig, step: int) -> dict[str, float]:
    """Base learning rates of the optimiser groups at ``step`` (scaled after a codebook warm-up)."""
    scale = 1.0
    if config.use_codebook and config.codebook_warmup_steps > 0 and step >= config.codebook_warmup_steps:
        scale = config.codebook_lr_scale
    return {"encoder": config.lr_encoder * scale, "decoder": config.lr_decoder * scale}


def set_base_learning_rates(optimizer: torch.optim.Optimizer, rates: dict[str, float]) -> None:
    for group in optimizer.param_groups:
        if group.get("name") in rates:
            group["base_lr"] = rates[group["name"]]


@torch.no_grad()
def collect_slot_features(model: GoclModel, dataset: GoclViewDataset, count: int, device: torch.device,
                          batch_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Intrinsic features ``[N, Di]`` and mask mass ``[N]`` of every object slot over the first
    ``count`` views (eval mode, no flips: identical on every rank and on resume)."""
    was_training = model.training
    model.eval()
    features, masses = [], []
    try:
        for first in range(0, min(count, len(dataset)), batch_size):
            rows = range(first, min(first + batch_size, count, len(dataset)))
            images = dataset.rgb[list(rows)].permute(0, 3, 1, 2).float().div(255.0).to(device)
            output = model(images)
            features.append(output.intrinsic_features.reshape(-1, model.config.intrinsic_dim).cpu())
            masses.append(output.masks[:, BACKGROUND_SLOT + 1:].mean(dim=(-2, -1)).reshape(-1).cpu())
    finally:
        model.train(was_training)
    return torch.cat(features), torch.cat(masses)


def kmeans_prototypes(features: torch.Tensor, num_prototypes: int, seed: int = KMEANS_SEED) -> torch.Tensor:
    """``num_prototypes`` k-means++ centres of ``features`` (scipy), float32 ``[M, Di]``."""
    from scipy.cluster.vq import kmeans2

    data = features.double().numpy()
    if data.shape[0] < num_prototypes:
        raise ValueError(f"k-means needs >= {num_prototypes} slot features, got {data.shape[0]}")
    centres, _ = kmeans2(data, num_prototypes, minit="++", seed=seed, iter=25)
    return torch.from_numpy(centres).float()


def training_pixels(dataset: GoclViewDataset, count: int = WHITENING_IMAGES) -> np.ndarray:
    """RGB in [0, 1] ``[N, 3]`` of the first ``count`` views (no flips: deterministic)."""
    return dataset.rgb[:count].reshape(-1, 3).numpy().astype(np.float32) / 255.0


def switch_on_codebook(model: GoclModel, optimizer: torch.optim.Optimizer, config: GoclConfig,
                       dataset: GoclViewDataset, device: torch.device
                       ) -> tuple[GoclModel, torch.optim.Optimizer, dict[str, float]]:
    """End of the warm-up: same weights under the codebook config, prototypes = k-means centres
    of the slots' intrinsic features; the optimiser state carries over (same parameter order)."""
    features, masses = collect_slot_features(model, dataset, KMEANS_IMAGES, device)
    target = GoclModel(config).to(device)
    target.load_state_dict(model.state_dict())
    target.codebook.prototypes.data.copy_(kmeans_prototypes(features, config.codebook_size).to(device))
    target.train()
    new_optimizer = build_optimizer(target)
    new_optimizer.load_state_dict(optimizer.state_dict())
    set_base_learning_rates(new_optimizer, phase_learning_rates(config, config.codebook_warmup_steps))
    info = {"kmeans_features": float(features.shape[0]),
            "kmeans_present_slots": float((masses > 1e-3).sum())}
    return target, new_optimizer, info


# ----- training -----------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gocl_train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="tabletop dataset folder (see ocgs_ros.ocl.data)")
    parser.add_argument("--out", required=True, help="run folder (checkpoints, metrics, plot)")
    parser.add_argument("--preset", default="cpu", choices=["tiny", "cpu", "default", "gold_reference"])
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a GoclConfig field (repeatable), e.g. --set lr_encoder=2e-4")
    parser.add_argument("--steps", type=int, required=True, help="total optimisation steps (resume continues to it)")
    parser.add_argument("--batch", type=int, default=8, help="images per step and process")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true", help="continue from <out>/checkpoint.pt")
    parser.add_argument("--no-codebook", action="store_true", help="baseline: slot attention without codebook")
    parser.add_argument("--init-from", default=None, metavar="CHECKPOINT",
                        help="start a new run from another run's checkpoint (weights, optimiser, RNG, step), "
                             "e.g. the --no-codebook run's, so its steps count as this run's codebook "
                             "warm-up; the requested config may differ in anything but tensor shapes")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--no-flip", action="store_true", help="disable horizontal-flip augmentation")
    parser.add_argument("--max-scenes", type=int, default=None, help="use only the first N scenes")
    parser.add_argument("--log-every", type=int, default=25)
    parser.add_argument("--checkpoint-every", type=int, default=500)
    parser.add_argument("--snapshot-every", type=int, default=0, help="0 = no snapshots")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = leave torch's default)")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def _check_args(args: argparse.Namespace) -> None:
    for name in ("steps", "batch", "log_every", "checkpoint_every"):
        if getattr(args, name) <= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be > 0 (got {getattr(args, name)})")
    if args.snapshot_every < 0:
        raise ValueError("--snapshot-every must be >= 0")


def _save(path: Path, model: GoclModel, optimizer: torch.optim.Optimizer, step: int,
          run_info: dict[str, Any], rng_states: list[dict[str, Any]], target: GoclConfig) -> None:
    extra = {
        **run_info,
        # During the codebook warm-up the model's own config has use_codebook=False; this is the
        # config the run is heading for (what --resume compares with).
        "target_config": target.to_dict(),
        "rng_states": rng_states,
        # Non-persistent buffer (not in the state dict) that dead-prototype revival draws from;
        # saved so that a resumed run revives exactly as the uninterrupted one would.
        "codebook_recent_features": model.codebook.recent_features.detach().cpu(),
    }
    save_checkpoint(path, model, optimizer=optimizer, step=step, extra=extra)


def _gather_rng_states(ctx: DistributedContext) -> list[dict[str, Any]]:
    state = capture_rng_state()
    if not ctx.distributed:
        return [state]
    gathered: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(gathered, state)
    return gathered


def _average_across_ranks(values: dict[str, float], ctx: DistributedContext) -> dict[str, float]:
    if not ctx.distributed:
        return values
    names = sorted(values)
    tensor = torch.tensor([values[n] for n in names], dtype=torch.float64, device=ctx.device)
    dist.all_reduce(tensor)
    tensor /= ctx.world_size
    return dict(zip(names, tensor.tolist()))


def train(args: argparse.Namespace, ctx: DistributedContext, argv: list[str]) -> Path:
    """Run (or resume) training; returns the path of the latest checkpoint."""
    _check_args(args)
    out = Path(args.out)
    checkpoint_path = out / CHECKPOINT_NAME
    metrics_path = out / METRICS_NAME
    seed_everything(args.seed)  # identical model init on every rank

    requested = build_config(args.preset, parse_overrides(args.overrides), not args.no_codebook)
    start_step = 0
    resume_meta: dict[str, Any] | None = None
    if args.resume and checkpoint_path.exists():
        model, saved_config, resume_meta = load_checkpoint(checkpoint_path, map_location="cpu")
        target = resume_meta["extra"].get("target_config")
        config = GoclConfig.from_dict(target) if target is not None else saved_config
        if config != requested:
            differing = sorted(k for k, v in config.to_dict().items() if requested.to_dict()[k] != v)
            raise CheckpointError(f"checkpoint {checkpoint_path}: its config differs from the requested "
                                  f"one in {differing}; resume with the same --preset/--set/--no-codebook")
        start_step = resume_meta["step"]
    elif args.resume:
        raise FileNotFoundError(f"--resume: no checkpoint at {checkpoint_path}")
    elif args.init_from:
        if checkpoint_path.exists():
            raise FileExistsError(f"{checkpoint_path} exists: --init-from starts a new run; choose another --out")
        source, _, resume_meta = load_checkpoint(args.init_from, map_location="cpu")
        config = requested
        start_step = resume_meta["step"]
        model = GoclModel(phase_config(config, start_step) if start_step < config.codebook_warmup_steps
                          else dataclasses.replace(config, use_codebook=source.config.use_codebook))
        try:
            model.load_state_dict(source.state_dict())
        except RuntimeError as exc:
            raise CheckpointError(f"--init-from {args.init_from}: weights do not fit the requested config "
                                  f"({exc})") from exc
    else:
        if checkpoint_path.exists():
            raise FileExistsError(f"{checkpoint_path} exists: pass --resume or choose another --out")
        config = requested
        model = GoclModel(phase_config(config, 0))
    model.to(ctx.device)
    optimizer = build_optimizer(model)
    if resume_meta is not None:
        if resume_meta["optimizer"] is None:
            raise CheckpointError(f"checkpoint {checkpoint_path}: holds no optimiser state, cannot resume")
        optimizer.load_state_dict(resume_meta["optimizer"])
        # load_state_dict restores the saved groups' rates; the rates are this run's config's
        # (they differ only with --init-from).
        set_base_learning_rates(optimizer, phase_learning_rates(model.config, start_step)
                                if model.config.use_codebook else phase_learning_rates(config, 0))
        extra = resume_meta["extra"]
        model.codebook.recent_features = extra["codebook_recent_features"].to(ctx.device)
        rng_states = extra["rng_states"]
        if len(rng_states) == ctx.world_size:
            restore_rng_state(rng_states[ctx.rank])
        else:  # another world size: the data order still follows (seed, epoch); noise re-seeded
            seed_everything(args.seed + 1000003 * start_step + ctx.rank)
    else:
        seed_everything(args.seed + ctx.rank)  # per-rank noise (Gumbel, reparameterisation, flips)

    dataset = GoclViewDataset(args.data, size=(config.image_height, config.image_width),
                              hflip=not args.no_flip, max_scenes=args.max_scenes,
                              progress=ctx.is_main and not args.no_progress)
    if resume_meta is None and model.colour_whitening is not None:
        # A fresh run fits the colour space on its own training images; resumed and --init-from
        # runs carry it in the state dict. Same pixels on every rank, so no broadcast is needed.
        model.colour_whitening.set(*fit_colour_whitening(training_pixels(dataset)))
    # One sampler for 1..N processes: permutation from (seed, epoch), rank's share of it.
    sampler = DistributedSampler(dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True,
                                 seed=args.seed, drop_last=True)
    batches_per_epoch = len(sampler) // args.batch
    if batches_per_epoch == 0:
        raise ValueError(f"dataset share of {len(sampler)} images per process is smaller than --batch {args.batch}")

    def wrap(module: GoclModel) -> Any:
        if not ctx.distributed:
            return module
        ddp = torch.nn.parallel.DistributedDataParallel(
            module, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None,
            broadcast_buffers=False, find_unused_parameters=not module.config.use_codebook)
        return _DistributedModel(ddp)

    step_model = wrap(model)

    run_info = {"preset": args.preset, "data": str(args.data), "seed": args.seed, "batch": args.batch,
                "world_size": ctx.world_size, "command": " ".join(argv)}
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
        if resume_meta is not None:
            truncate_metrics(metrics_path, start_step)
        elif metrics_path.exists():
            metrics_path.unlink()
        (out / "config.json").write_text(json.dumps({"config": config.to_dict(), "run": run_info}, indent=1))

    progress = tqdm(total=args.steps, initial=start_step, desc="gocl_train",
                    disable=not ctx.is_main or args.no_progress, dynamic_ncols=True)
    window: list[dict[str, float]] = []
    step = start_step
    window_start = time.perf_counter()
    while step < args.steps:
        epoch, position = divmod(step, batches_per_epoch)
        sampler.set_epoch(epoch)
        order = list(sampler)
        for batch_index in range(position, batches_per_epoch):
            if step >= args.steps:
                break
            if model.config != phase_config(config, step):  # end of the codebook warm-up
                model, optimizer, info = switch_on_codebook(model, optimizer, config, dataset, ctx.device)
                step_model = wrap(model)
                if ctx.is_main:
                    progress.write(f"gocl_train: step {step}: codebook on, prototypes from k-means of "
                                   f"{int(info['kmeans_features'])} slot features")
            indices = order[batch_index * args.batch:(batch_index + 1) * args.batch]
            images = torch.stack([dataset[i]["image"] for i in indices]).to(ctx.device, non_blocking=True)
            values = train_step(step_model, optimizer, images, step)
            if ctx.distributed and config.revive_every > 0 and step > 0 and step % config.revive_every == 0:
                # Revival draws from each rank's own recent features: make rank 0's result global.
                dist.broadcast(model.codebook.prototypes.data, src=0)
                dist.broadcast(model.codebook.usage_ema, src=0)
            window.append(values)
            step += 1
            progress.update(1)
            if step % args.log_every == 0 or step == args.steps:
                mean = {k: float(np.mean([w[k] for w in window])) for k in window[0] if k != "revived"}
                mean["revived"] = float(sum(w["revived"] for w in window))
                mean = _average_across_ranks(mean, ctx)
                elapsed = time.perf_counter() - window_start
                if ctx.is_main:
                    row = {"step": step, "epoch": epoch, "codebook_on": model.config.use_codebook, **mean,
                           "lr_encoder": optimizer.param_groups[0]["lr"], "lr_decoder": optimizer.param_groups[1]["lr"],
                           **codebook_statistics(model), "seconds_per_step": elapsed / len(window)}
                    with metrics_path.open("a") as f:
                        f.write(json.dumps(row) + "\n")
                    progress.set_postfix(loss=f"{mean['total']:.4f}", tau=f"{mean['tau']:.2f}",
                                         ppl=f"{row['codebook_perplexity']:.1f}")
                window = []
                window_start = time.perf_counter()
            snapshot = args.snapshot_every > 0 and step % args.snapshot_every == 0
            if step % args.checkpoint_every == 0 or step == args.steps or snapshot:
                rng_states = _gather_rng_states(ctx)
                if ctx.is_main:
                    _save(checkpoint_path, model, optimizer, step, run_info, rng_states, config)
                    if snapshot:
                        save_checkpoint(out / SNAPSHOT_DIR / f"step_{step:07d}.pt", model, step=step,
                                        extra={**run_info})
                    plot_training_curves(read_metrics(metrics_path), out / PLOT_NAME)
    progress.close()
    return checkpoint_path


def main(argv: list[str] | None = None) -> int:
    """Console entry point (``python -m ocgs_ros.ocl.train``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    ctx = DistributedContext(args.device)
    try:
        path = train(args, ctx, ["python -m ocgs_ros.ocl.train", *argv])
        if ctx.is_main:
            print(f"gocl_train: checkpoint {path}")
        ctx.finish()
    finally:
        ctx.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
