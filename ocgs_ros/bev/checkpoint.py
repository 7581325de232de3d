"""BEV checkpoints: written atomically, read with ``torch.load(weights_only=True)``.

Same file layout and failure reporting as the GOCL checkpoints (``ocgs_ros/ocl/checkpoint.py``;
both built on ``ocgs_ros/checkpoint_io.py``):

    {"format": "ocgs_ros.bev", "format_version": 1, "model_kind": "BevFusionModel",
     "config": BevConfig.to_dict(), "state_dict": {...}, "optimizer": state dict or None,
     "step": int, "extra": dict of plain values}

Every way a file can be unusable raises :class:`CheckpointError` naming the file and the problem.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ..checkpoint_io import (CheckpointError, build_model, checkpoint_meta, read_checkpoint_payload,
                             write_checkpoint)
from .config import BevConfig
from .model import BevFusionModel

CHECKPOINT_FORMAT = "ocgs_ros.bev"
CHECKPOINT_FORMAT_VERSION = 1
MODEL_KIND = "BevFusionModel"

__all__ = ["CheckpointError", "save_checkpoint", "save_shipped", "load_checkpoint", "read_checkpoint"]


def save_checkpoint(path: str | os.PathLike, model: BevFusionModel, optimizer: torch.optim.Optimizer | None = None,
                    step: int = 0, extra: dict[str, Any] | None = None,
                    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None) -> Path:
    """Write ``model`` (+ optimiser / scheduler state) to ``path`` atomically; returns the path.

    ``extra`` must hold only plain values (numbers, strings, lists, dicts, tensors) so that the file
    loads with ``weights_only=True``.
    """
    if not isinstance(model, BevFusionModel):
        raise TypeError(f"save_checkpoint needs a BevFusionModel, got {type(model).__name__}")
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    payload = {
        "format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_FORMAT_VERSION, "model_kind": MODEL_KIND,
        "config": model.cfg.to_dict(),
        "state_dict": {name: t.detach().cpu() for name, t in model.state_dict().items()},
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "step": int(step), "extra": dict(extra or {}),
    }
    return write_checkpoint(path, payload)


def save_shipped(path: str | os.PathLike, model: BevFusionModel, meta: dict[str, Any], **record: Any) -> Path:
    """The weights as the package ships them: no optimiser or scheduler state, the training run's
    record from ``meta`` (as :func:`load_checkpoint` returns it) and ``record`` (``produced_by``: the
    command that made the model, and whatever else names where its figures come from)."""
    return save_checkpoint(path, model, step=meta["step"], extra={"run": meta["extra"].get("run", {}), **record})


def read_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """The checked payload dict of a BEV checkpoint (no model built)."""
    return read_checkpoint_payload(path, map_location, CHECKPOINT_FORMAT, MODEL_KIND, CHECKPOINT_FORMAT_VERSION, "BEV")


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu"
                    ) -> tuple[BevFusionModel, BevConfig, dict[str, Any]]:
    """``(model in eval mode, config, meta)``; ``meta`` has ``step``, ``extra``, ``optimizer``,
    ``scheduler`` (state dicts or None, for resuming) and ``format_version``."""
    path = Path(path)
    payload = read_checkpoint(path, map_location)
    model, config = build_model(path, payload, BevConfig.from_dict, BevFusionModel, map_location)
    meta = checkpoint_meta(payload, "optimizer", "scheduler")
    return model, config, meta
