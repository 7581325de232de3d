"""Checked reading and atomic writing of the project's checkpoint files (no ROS, no model code).

Every model family (GOCL, BEV) stores a plain dict — ``format``, ``format_version``,
``model_kind``, ``config``, ``state_dict``, ``optimizer``, ``step``, ``extra`` — so the file
loads with ``torch.load(weights_only=True)``, which never runs code from the file. This module
holds what is the same for all of them: the safe read with one :class:`CheckpointError` per way a
file can be unusable, the weights-vs-config check, and the atomic write.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .atomic_io import atomic_path

REQUIRED_KEYS = ("format", "format_version", "model_kind", "config", "state_dict")


class CheckpointError(RuntimeError):
    """A checkpoint file cannot be used; the message says which file and why."""


def short_reason(exc: Exception) -> str:
    """The informative part of a torch.load error. Its weights-only message suggests retrying with
    ``weights_only=False``, which we never do (arbitrary code execution), so only the unpickler's
    own reason is kept."""
    text = str(exc)
    marker = "WeightsUnpickler error:"
    if marker in text:
        text = text.split(marker, 1)[1]
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else "no detail"


def write_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """``torch.save`` ``payload`` to ``path`` atomically (temp file + rename); returns the path."""
    target = Path(path)
    with atomic_path(target) as tmp:
        torch.save(payload, tmp)
    return target


def read_checkpoint_payload(path: str | os.PathLike, map_location: Any, file_format: str, model_kind: str,
                            max_version: int, family: str) -> dict[str, Any]:
    """The checked payload of a ``file_format`` checkpoint holding a ``model_kind`` model.

    ``family`` names the kind of checkpoint in messages (e.g. "GOCL"). Raises
    :class:`CheckpointError` for a missing, empty, truncated or corrupt file, a file with anything
    but plain data, another format or model kind, a newer format version or missing entries.
    """
    path = Path(path)
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
                              f"{short_reason(exc)})") from exc
    if not isinstance(payload, dict) or payload.get("format") != file_format:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(f"checkpoint {path}: not an ocgs_ros {family} checkpoint "
                              f"(format {found!r}, expected {file_format!r})")
    missing = [key for key in REQUIRED_KEYS if key not in payload]
    if missing:
        raise CheckpointError(f"checkpoint {path}: incomplete, missing entries {missing}")
    if payload["model_kind"] != model_kind:
        raise CheckpointError(f"checkpoint {path}: holds model kind {payload['model_kind']!r}, "
                              f"expected {model_kind!r}")
    version = payload["format_version"]
    if not isinstance(version, int) or not 1 <= version <= max_version:
        raise CheckpointError(f"checkpoint {path}: format version {version!r} is not supported "
                              f"(this code reads up to {max_version})")
    return payload


def check_state_fits(path: str | os.PathLike, model: nn.Module, state: Any) -> None:
    """Raise :class:`CheckpointError` unless ``state`` has exactly ``model``'s tensors and shapes."""
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


def build_model(path: str | os.PathLike, payload: dict[str, Any], config_from_dict, model_class,
                map_location: Any) -> tuple[nn.Module, Any]:
    """``(model in eval mode on map_location, config)`` from a checked payload.

    ``config_from_dict`` rebuilds (and validates) the config; ``model_class(config)`` builds the
    model whose weights must fit exactly (missing/unexpected keys or shapes -> CheckpointError).
    """
    try:
        config = config_from_dict(payload["config"])
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {path}: invalid config ({exc})") from exc
    model = model_class(config)
    check_state_fits(path, model, payload["state_dict"])
    model.load_state_dict(payload["state_dict"], strict=True)
    if isinstance(map_location, (str, torch.device)):
        model.to(map_location)
    model.eval()
    return model, config


def checkpoint_meta(payload: dict[str, Any], *resume_keys: str) -> dict[str, Any]:
    """``step``, ``extra``, ``format_version`` and the named resume states (None when absent)."""
    meta = {"step": int(payload.get("step", 0)), "extra": payload.get("extra") or {},
            "format_version": payload["format_version"]}
    meta.update({key: payload.get(key) for key in resume_keys})
    return meta
