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

from ..atomic_io import atomic_path
from .config import GoclConfig
from .model import GoclModel

CHECKPOINT_FORMAT = "ocgs_ros.gocl"
CHECKPOINT_FORMAT_VERSION = 1
MODEL_KIND = "GoclModel"
REQUIRED_KEYS = ("format", "format_version", "model_kind", "config", "state_dict")


class CheckpointError(RuntimeError):
    """A checkpoint file cannot be used; the message says which file and why."""


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
    target = Path(path)
    with atomic_path(target) as tmp:
        torch.save(payload, tmp)
    return target


def _short_reason(exc: Exception) -> str:
    """The informative part of a torch.load error. Its weights-only message suggests retrying with
    ``weights_only=False``, which we never do (arbitrary code execution), so only the unpickler's
    own reason is kept."""
    text = str(exc)
    marker = "WeightsUnpickler error:"
    if marker in text:
        text = text.split(marker, 1)[1]
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else "no detail"


def _read_payload(path: Path, map_location: Any) -> dict[str, Any]:
    if not path.exists():
        raise CheckpointError(f"checkpoint {path}: file not found")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: not a regular file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path}: file is empty")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises RuntimeError/UnpicklingError/EOFError/... on bad bytes
        raise CheckpointError(f"checkpoint {path}: cannot be read — truncated, corrupt or not a "
                              f"torch file with only plain data ({type(exc).__name__}: "
                              f"{_short_reason(exc)})") from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(f"checkpoint {path}: not an ocgs_ros GOCL checkpoint "
                              f"(format {found!r}, expected {CHECKPOINT_FORMAT!r})")
    missing = [key for key in REQUIRED_KEYS if key not in payload]
    if missing:
        raise CheckpointError(f"checkpoint {path}: incomplete, missing entries {missing}")
    if payload["model_kind"] != MODEL_KIND:
        raise CheckpointError(f"checkpoint {path}: holds model kind {payload['model_kind']!r}, "
                              f"expected {MODEL_KIND!r}")
    version = payload["format_version"]
    if not isinstance(version, int) or version > CHECKPOINT_FORMAT_VERSION or version < 1:
        raise CheckpointError(f"checkpoint {path}: format version {version!r} is not supported "
                              f"(this code reads up to {CHECKPOINT_FORMAT_VERSION})")
    return payload


def _check_state_fits(path: Path, model: GoclModel, state: Any) -> None:
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"checkpoint {path}: state_dict is not a mapping of names to tensors")
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [f"{name}: file {list(state[name].shape)} vs config {list(tensor.shape)}"
                  for name, tensor in expected.items()
                  if name in state and state[name].shape != tensor.shape]
    problems = []
    if missing:
        problems.append(f"missing keys {missing}")
    if unexpected:
        problems.append(f"unexpected keys {unexpected}")
    if mismatched:
        problems.append("shape mismatch " + "; ".join(mismatched))
    if problems:
        raise CheckpointError(f"checkpoint {path}: weights do not match its config — " + "; ".join(problems))


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu"
                    ) -> tuple[GoclModel, GoclConfig, dict[str, Any]]:
    """Load ``(model, config, meta)``; the model is in eval mode on ``map_location``.

    ``meta`` holds ``step``, ``extra``, ``optimizer`` (state dict or None, for resuming with
    ``optimizer.load_state_dict``) and ``format_version``.
    """
    path = Path(path)
    payload = _read_payload(path, map_location)
    try:
        config = GoclConfig.from_dict(payload["config"])
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {path}: invalid config ({exc})") from exc
    model = GoclModel(config)
    _check_state_fits(path, model, payload["state_dict"])
    model.load_state_dict(payload["state_dict"], strict=True)
    if isinstance(map_location, (str, torch.device)):
        model.to(map_location)
    model.eval()
    meta = {"step": int(payload.get("step", 0)), "extra": payload.get("extra") or {},
            "optimizer": payload.get("optimizer"), "format_version": payload["format_version"]}
    return model, config, meta
