"""gocl_train: train a GOCL model on a simulated tabletop dataset or on the user's own unlabelled
recordings (``gocl_data --bag`` / ``--images``; docs/own_recordings.md) (offline, CPU or CUDA, DDP).

    python -m ocgs_ros.ocl.train --data data/gocl_train --out runs/gocl --preset cpu \\
        --steps 12000 --batch 8 --seed 0 [--resume] [--no-codebook] [--device auto|cpu|cuda]
    torchrun --nproc_per_node=2 -m ocgs_ros.ocl.train ...      # data-parallel (gloo on CPU)

Writes into ``--out``: ``checkpoint.pt`` (latest; model, optimiser, step, RNG states, codebook
revival buffer), ``snapshots/step_XXXXXXX.pt`` every ``--snapshot-every`` steps (for learning
curves), ``metrics.jsonl`` (one JSON object per ``--log-every`` steps), ``loss.png`` and
``config.json``. The loop itself (resume, seeding, logging, DDP) is :mod:`ocgs_ros.training`'s;
this module is GOCL's part of it: model, optimiser, codebook warm-up, what is logged and saved.
"""
from __future__ import annotations

import dataclasses
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ..checkpoint_io import CheckpointError
from ..training import RunConfig, RunSetupError, StartPoint, TrainingTask, TrainResult, run_training
from ..training.cli import parse_config
from ..training.distributed import DistributedContext, data_parallel
from ..training.options import option, redefault, required, typed_overrides
from .checkpoint import load_checkpoint, save_checkpoint
from .codebook_warmup import phase_config, phase_learning_rates, set_base_learning_rates, switch_on_codebook
from .colour import fit_colour_whitening
from .config import GoclConfig
from .data import GoclViewDataset
from .model import GoclModel
from .optim import build_optimizer, train_step
from .plots import plot_training_curves
from .vit import load_frozen_vit

PRESETS = ("tiny", "cpu", "default", "gold_reference")
PLOT_NAME = "loss.png"
WHITENING_IMAGES = 2000  # views whose pixels fit the colour whitening (first ones: deterministic)


@dataclass(frozen=True, kw_only=True)
class GoclTrainConfig(RunConfig):
    """One GOCL training run (the command line's options)."""

    data: str = required("dataset folder: simulated tabletop (ocgs_ros.ocl.data) or an unlabelled recording "
                         "(gocl_data --bag/--images, ocgs_ros.ocl.recordings)")
    preset: str = option("cpu", "model preset", choices=PRESETS)
    overrides: tuple[str, ...] = option((), "override a GoclConfig field (repeatable), e.g. --set lr_encoder=2e-4",
                                        flag="--set", metavar="KEY=VALUE")
    no_codebook: bool = option(False, "baseline: slot attention without codebook")
    init_from: str | None = option(
        None, "start a new run from another run's checkpoint (weights, optimiser, RNG, step), e.g. the "
              "--no-codebook run's, so its steps count as this run's codebook warm-up; the requested config "
              "may differ in anything but tensor shapes", metavar="CHECKPOINT")
    no_flip: bool = option(False, "disable horizontal-flip augmentation")
    batch: int = redefault(RunConfig, "batch", 8)
    threads: int = redefault(RunConfig, "threads", 0)
    log_every: int = redefault(RunConfig, "log_every", 25)
    checkpoint_every: int = redefault(RunConfig, "checkpoint_every", 500)

    def __post_init__(self) -> None:
        super().__post_init__()
        model_config = self.model_config()  # a bad --set fails here, before anything runs
        if model_config.uses_vit:
            load_frozen_vit(model_config.vit_weights)  # so does a bad ViT weight file (ViTWeightsError)

    def model_config(self) -> GoclConfig:
        """The preset with the ``--set`` overrides and the ``--no-codebook`` switch applied."""
        typed = typed_overrides(GoclConfig.preset(self.preset), self.overrides)
        if self.no_codebook:
            typed["use_codebook"] = False
        return GoclConfig.preset(self.preset, **typed)


def codebook_statistics(model: GoclModel) -> dict[str, float]:
    """Perplexity of the usage EMA (effective number of prototypes in use) and active count."""
    usage = model.codebook.usage_ema.detach().double().cpu()
    usage = usage / usage.sum().clamp_min(1e-12)
    entropy = float(-(torch.special.xlogy(usage, usage)).sum())
    threshold = model.config.dead_usage_fraction / model.config.codebook_size
    return {"codebook_perplexity": math.exp(entropy),
            "codebook_active": int((model.codebook.usage_ema > threshold).sum())}


def transferable_weights(source: GoclModel, target: GoclModel) -> dict[str, torch.Tensor]:
    """``source``'s state dict for ``target`` (``--init-from``).

    A source that never used its codebook (a warm-up or a baseline) has untrained codebook tensors,
    and the switch redraws the prototypes by k-means anyway: where their shapes differ (another
    codebook size) or the source has none (the choice refiner) the target keeps its own.
    Everything else must fit as it is.
    """
    state = source.state_dict()
    if source.config.use_codebook:
        return state
    own = target.state_dict()
    return {**state, **{name: value for name, value in own.items() if name.startswith("codebook.")
                        and (name not in state or state[name].shape != value.shape)}}


def optimizer_order(model: GoclModel) -> list[str]:
    """Parameter names in the order ``build_optimizer`` hands them to the optimiser."""
    names = {id(parameter): name for name, parameter in model.named_parameters()}
    return [names[id(parameter)] for parameter in model.encoder_parameters() + model.decoder_parameters()]


def transferable_optimizer_state(saved: dict[str, Any], source: GoclModel, target: GoclModel) -> dict[str, Any]:
    """The optimiser state of ``source``'s run, re-indexed for ``target`` (``--init-from``).

    Only a source without codebook may lack parameters that ``target`` has (the codebook choice
    refiner, unused before the switch); they start without Adam moments, as any parameter does
    before its first gradient. Otherwise the state is returned as saved.
    """
    source_names, target_names = optimizer_order(source), optimizer_order(target)
    if source.config.use_codebook or source_names == target_names:
        return saved
    target_index = {name: index for index, name in enumerate(target_names)}
    state = {target_index[source_names[index]]: value for index, value in saved["state"].items()
             if source_names[index] in target_index}
    groups, first = [], 0
    for group, size in zip(saved["param_groups"], (len(target.encoder_parameters()), len(target.decoder_parameters()))):
        groups.append({**group, "params": list(range(first, first + size))})
        first += size
    return {"state": state, "param_groups": groups}


def training_pixels(dataset: GoclViewDataset, count: int = WHITENING_IMAGES) -> np.ndarray:
    """RGB in [0, 1] ``[N, 3]`` of the first ``count`` views (no flips: deterministic)."""
    return dataset.rgb[:count].reshape(-1, 3).numpy().astype(np.float32) / 255.0


class GoclTask(TrainingTask):
    """GOCL's part of a training run: model and optimiser, the codebook warm-up, logging, saving."""

    name = "gocl_train"
    command = "python -m ocgs_ros.ocl.train"
    plot_name = PLOT_NAME

    def __init__(self, config: GoclTrainConfig):
        self.config = config
        # During the codebook warm-up the model's own config has use_codebook=False; this is the
        # config the run is heading for (what a resume compares with).
        self.target = config.model_config()

    # ----- start ------------------------------------------------------------------------------
    def build(self, ctx: DistributedContext, resume_from: Path | None) -> StartPoint:
        meta: dict[str, Any] | None = None
        source: GoclModel | None = None  # the --init-from run's model
        start_step = 0
        if resume_from is not None:
            model, saved_config, meta = load_checkpoint(resume_from, map_location="cpu")
            target = meta["extra"].get("target_config")
            saved_target = GoclConfig.from_dict(target) if target is not None else saved_config
            if saved_target != self.target:
                differing = sorted(k for k, v in saved_target.to_dict().items() if self.target.to_dict()[k] != v)
                raise CheckpointError(f"checkpoint {resume_from}: its config differs from the requested one in "
                                      f"{differing}; resume with the same --preset/--set/--no-codebook")
            start_step = meta["step"]
        elif self.config.init_from:
            source, _, meta = load_checkpoint(self.config.init_from, map_location="cpu")
            start_step = meta["step"]
            model = GoclModel(phase_config(self.target, start_step) if start_step < self.target.codebook_warmup_steps
                              else dataclasses.replace(self.target, use_codebook=source.config.use_codebook))
            try:
                model.load_state_dict(transferable_weights(source, model))
            except RuntimeError as exc:
                raise CheckpointError(f"--init-from {self.config.init_from}: weights do not fit the requested "
                                      f"config ({exc})") from exc
        else:
            model = GoclModel(phase_config(self.target, 0))
        self.model = model.to(ctx.device)
        self.optimizer = build_optimizer(self.model)
        if meta is None:
            return StartPoint()
        if meta["optimizer"] is None:
            raise CheckpointError(f"checkpoint {resume_from or self.config.init_from}: holds no optimiser state, "
                                  "cannot resume")
        self.optimizer.load_state_dict(meta["optimizer"] if source is None
                                       else transferable_optimizer_state(meta["optimizer"], source, self.model))
        # load_state_dict restores the saved groups' rates; the rates are this run's config's
        # (they differ only with --init-from).
        set_base_learning_rates(self.optimizer, phase_learning_rates(self.model.config, start_step)
                                if self.model.config.use_codebook else phase_learning_rates(self.target, 0))
        extra = meta["extra"]
        self.model.codebook.recent_features = extra["codebook_recent_features"].to(ctx.device)
        return StartPoint(step=start_step, rng_states=extra["rng_states"])

    def prepare(self, ctx: DistributedContext, start: StartPoint) -> GoclViewDataset:
        self.dataset = GoclViewDataset(self.config.data, size=(self.target.image_height, self.target.image_width),
                                       hflip=not self.config.no_flip, max_scenes=self.config.max_scenes,
                                       progress=ctx.is_main and not self.config.no_progress)
        if not start.from_checkpoint and self.model.colour_whitening is not None:
            # A fresh run fits the colour space on its own training images; resumed and --init-from
            # runs carry it in the state dict. Same pixels on every rank, so no broadcast is needed.
            self.model.colour_whitening.set(*fit_colour_whitening(training_pixels(self.dataset)))
        self.step_model = self._data_parallel(ctx)
        return self.dataset

    def _data_parallel(self, ctx: DistributedContext) -> Any:
        # Buffers (codebook usage) stay per rank; revival results are broadcast explicitly (step).
        return data_parallel(self.model, ctx, broadcast_buffers=False,
                             find_unused_parameters=not self.model.config.use_codebook)

    def run_info(self) -> dict[str, Any]:
        return {"preset": self.config.preset, "data": str(self.config.data), "seed": self.config.seed,
                "batch": self.config.batch}

    def model_config(self) -> dict[str, Any]:
        return self.target.to_dict()

    # ----- steps ------------------------------------------------------------------------------
    def before_step(self, step: int, ctx: DistributedContext, say: Callable[[str], None]) -> None:
        if self.model.config != phase_config(self.target, step):  # end of the codebook warm-up
            self.model, self.optimizer, info = switch_on_codebook(self.model, self.optimizer, self.target,
                                                                  self.dataset, ctx.device)
            self.step_model = self._data_parallel(ctx)
            say(f"gocl_train: step {step}: codebook on, prototypes from k-means of "
                f"{int(info['kmeans_features'])} slot features")

    def step(self, indices: Sequence[int], step: int, ctx: DistributedContext) -> dict[str, float]:
        images = torch.stack([self.dataset[i]["image"] for i in indices]).to(ctx.device, non_blocking=True)
        values = train_step(self.step_model, self.optimizer, images, step)
        if self.target.revive_every > 0 and step > 0 and step % self.target.revive_every == 0:
            # Revival draws from each rank's own recent features: make rank 0's result global.
            ctx.broadcast_from_main(self.model.codebook.prototypes.data)
            ctx.broadcast_from_main(self.model.codebook.usage_ema)
        return values

    def summarise(self, window: list[dict[str, float]]) -> dict[str, float]:
        mean = {k: float(np.mean([w[k] for w in window])) for k in window[0] if k != "revived"}
        mean["revived"] = float(sum(w["revived"] for w in window))  # a count, not a rate
        return mean

    def log_fields(self, mean: dict[str, float]) -> dict[str, Any]:
        return {"codebook_on": self.model.config.use_codebook, **mean,
                "lr_encoder": self.optimizer.param_groups[0]["lr"], "lr_decoder": self.optimizer.param_groups[1]["lr"],
                **codebook_statistics(self.model)}

    def postfix(self, row: dict[str, Any]) -> dict[str, str]:
        return {"loss": f"{row['total']:.4f}", "tau": f"{row['tau']:.2f}", "ppl": f"{row['codebook_perplexity']:.1f}"}

    # ----- files ------------------------------------------------------------------------------
    def save(self, path: Path, step: int, run_info: dict[str, Any], rng_states: list[dict[str, Any]]) -> None:
        extra = {
            **run_info,
            "target_config": self.target.to_dict(),
            "rng_states": rng_states,
            # Non-persistent buffer (not in the state dict) that dead-prototype revival draws from;
            # saved so that a resumed run revives exactly as the uninterrupted one would.
            "codebook_recent_features": self.model.codebook.recent_features.detach().cpu(),
        }
        save_checkpoint(path, self.model, optimizer=self.optimizer, step=step, extra=extra)

    def save_weights(self, path: Path, step: int, run_info: dict[str, Any]) -> None:
        save_checkpoint(path, self.model, step=step, extra=dict(run_info))

    def plot(self, rows: list[dict[str, Any]], path: Path) -> None:
        plot_training_curves(rows, path)


def train(config: GoclTrainConfig, argv: Sequence[str] | None = None) -> TrainResult:
    """Run (or resume) a GOCL training run in this process (one rank under torchrun)."""
    return run_training(config, GoclTask(config), argv)


def main(argv: list[str] | None = None) -> int:
    """Console entry point (``python -m ocgs_ros.ocl.train``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    config = parse_config(GoclTrainConfig, argv, prog="gocl_train", description=__doc__.split("\n\n")[0])
    try:
        result = train(config, argv)
    except (RunSetupError, CheckpointError) as exc:
        print(f"gocl_train: error: {exc}", file=sys.stderr)
        return 2
    if result.on_main_rank:
        print(f"gocl_train: checkpoint {result.checkpoint}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
