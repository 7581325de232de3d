"""GOCL checkpoints: written atomically, read with ``torch.load(weights_only=True)``.

File content (a plain dict, so the safe unpickler accepts it):

    {"format": "ocgs_ros.gocl", "format_version": 1, "model_kind": "GoclModel",
     "config": GoclConfig.to_dict(), "state_dict": {...}, "optimizer": state dict or None,
     "step": int, "extra": dict of plain values}

Every way a checkpoint can be unusable raises :class:`CheckpointError` naming the file and the
problem: missing, truncated/corrupt, not a GOCL checkpoint (or another model kind / newer
format), invalid config, or weights that do not fit the config (missing/unexpected keys, shapes).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ..checkpoint_io import (CheckpointError, build_model, checkpoint_meta, read_checkpoint_payload,
                             write_checkpoint)
from .config import GoclConfig
from .model import GoclModel

CHECKPOINT_FORMAT = "ocgs_ros.gocl"
CHECKPOINT_FORMAT_VERSION = 1
MODEL_KIND = "GoclModel"

__all__ = ["CheckpointError", "load_checkpoint", "save_checkpoint"]


def save_checkpoint(path: str | os.PathLike, model: GoclModel, config: GoclConfig | None = None,
                    optimizer: torch.optim.Optimizer | None = None, step: int = 0,
                    extra: dict[str, Any] | None = None) -> Path:
    """Write ``model`` (+ optional optimiser state) to ``path`` atomically; returns the path.

    ``config`` defaults to ``model.config`` and must equal it (a mismatch would produce a file that
    cannot be loaded). ``extra`` must hold only plain values (numbers, strings, lists, dicts,
    tensors) so that the file loads with ``weights_only=True``.
    """
    if not isinstance(model, GoclModel):
        raise TypeError(f"save_checkpoint needs a GoclModel, got {type(model).__name__}")
    config = model.config if config is None else config
    if config != model.config:
        raise ValueError("config differs from model.config; the checkpoint would not load")
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    payload = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_FORMAT_VERSION,
        "model_kind": MODEL_KIND,
        "config": config.to_dict(),
        "state_dict": {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()},
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "step": int(step),
        "extra": dict(extra or {}),
    }
    return write_checkpoint(path, payload)


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu"
                    ) -> tuple[GoclModel, GoclConfig, dict[str, Any]]:
    """Load ``(model, config, meta)``; the model is in eval mode on ``map_location``.

    ``meta`` holds ``step``, ``extra``, ``optimizer`` (state dict or None, for resuming with
    ``optimizer.load_state_dict``) and ``format_version``.
    """
    path = Path(path)
    payload = read_checkpoint_payload(path, map_location, CHECKPOINT_FORMAT, MODEL_KIND,
                                      CHECKPOINT_FORMAT_VERSION, "GOCL")
    model, config = build_model(path, payload, GoclConfig.from_dict, GoclModel, map_location)
    meta = checkpoint_meta(payload, "optimizer")
    return model, config, meta
