"""BEV checkpoints: written atomically, read with ``torch.load(weights_only=True)``.

Same file layout and failure reporting as the GOCL checkpoints (``ocgs_ros/ocl/checkpoint.py``,
whose error type and model-agnostic checks are reused here):

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

from ..atomic_io import atomic_path
from ..ocl.checkpoint import CheckpointError, _check_state_fits, _short_reason
from .config import BevConfig
from .model import BevFusionModel

CHECKPOINT_FORMAT = "ocgs_ros.bev"
CHECKPOINT_FORMAT_VERSION = 1
MODEL_KIND = "BevFusionModel"
REQUIRED_KEYS = ("format", "format_version", "model_kind", "config", "state_dict")

__all__ = ["CheckpointError", "save_checkpoint", "load_checkpoint", "read_checkpoint"]


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
    target = Path(path)
    with atomic_path(target) as tmp:
        torch.save(payload, tmp)
    return target


def read_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """The checked payload dict of a BEV checkpoint (no model built)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path}: file not found")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: not a regular file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path}: file is empty")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # RuntimeError / UnpicklingError / EOFError ... on bad bytes
        raise CheckpointError(f"checkpoint {path}: cannot be read — truncated, corrupt or not a torch file "
                              f"with only plain data ({type(exc).__name__}: {_short_reason(exc)})") from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(f"checkpoint {path}: not an ocgs_ros BEV checkpoint (format {found!r}, "
                              f"expected {CHECKPOINT_FORMAT!r})")
    missing = [key for key in REQUIRED_KEYS if key not in payload]
    if missing:
        raise CheckpointError(f"checkpoint {path}: incomplete, missing entries {missing}")
    if payload["model_kind"] != MODEL_KIND:
        raise CheckpointError(f"checkpoint {path}: holds model kind {payload['model_kind']!r}, expected {MODEL_KIND!r}")
    version = payload["format_version"]
    if not isinstance(version, int) or not 1 <= version <= CHECKPOINT_FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path}: format version {version!r} is not supported "
                              f"(this code reads up to {CHECKPOINT_FORMAT_VERSION})")
    return payload


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu"
                    ) -> tuple[BevFusionModel, BevConfig, dict[str, Any]]:
    """``(model in eval mode, config, meta)``; ``meta`` has ``step``, ``extra``, ``optimizer``,
    ``scheduler`` (state dicts or None, for resuming) and ``format_version``."""
    path = Path(path)
    payload = read_checkpoint(path, map_location)
    try:
        config = BevConfig.from_dict(payload["config"])
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {path}: invalid config ({exc})") from exc
    model = BevFusionModel(config)
    _check_state_fits(path, model, payload["state_dict"])
    model.load_state_dict(payload["state_dict"], strict=True)
    if isinstance(map_location, (str, torch.device)):
        model.to(map_location)
    model.eval()
    meta = {"step": int(payload.get("step", 0)), "extra": payload.get("extra") or {},
            "optimizer": payload.get("optimizer"), "scheduler": payload.get("scheduler"),
            "format_version": payload["format_version"]}
    return model, config, meta
