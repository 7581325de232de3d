"""Replace the Gaussian rows of a parameter dict and keep each optimiser's moments with their rows.

gsplat's public ``gsplat.strategy.ops`` do this for duplicate / split / remove (densify.py uses
them); appending arbitrary new Gaussians (LiDAR growth) has no public gsplat op, and the helper the
ops share is private to gsplat, so the map uses this one.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn


@torch.no_grad()
def replace_rows(params: nn.ParameterDict, optimizers: dict[str, torch.optim.Optimizer],
                 param_fn: Callable[[str, Tensor], nn.Parameter],
                 moment_fn: Callable[[str, Tensor], Tensor]) -> None:
    """Set ``params[name] = param_fn(name, old)`` for every parameter, and in its optimiser (one
    param group per parameter, gsplat's convention) replace each per-row state tensor ``value``
    under ``key`` (Adam's ``exp_avg``, ``exp_avg_sq``) by ``moment_fn(key, value)``; the scalar
    ``step`` is kept. Non-trainable parameters may have no optimiser."""
    for name in list(params.keys()):
        old = params[name]
        new = param_fn(name, old)
        params[name] = new
        optimizer = optimizers.get(name)
        if optimizer is None:
            if old.requires_grad:
                raise KeyError(f"replace_rows: trainable parameter {name!r} has no optimiser")
            continue
        moments = optimizer.state.pop(old, {})
        optimizer.param_groups[0]["params"] = [new]
        optimizer.state[new] = {key: value if key == "step" else moment_fn(key, value)
                                for key, value in moments.items()}
