"""Pixel-centre convention bridge between this project and gsplat.

The project's intrinsics put pixel centres at integer coordinates (``u = fx * x / z + cx`` lands on
pixel ``round(u)``; docs/conventions.md). gsplat — and so both rasteriser backends, which must agree
with it — puts the centre of pixel ``j`` at ``j + 0.5``. Rendering with the project's ``K`` would
shift every image by half a pixel against the camera/depth images it is compared with; shifting the
principal point by +0.5 makes gsplat's pixel ``j`` the project's pixel ``j``.
"""
from __future__ import annotations

from torch import Tensor


def gsplat_intrinsics(Ks: Tensor) -> Tensor:
    """Project-convention intrinsics ``[..., 3, 3]`` → the equivalent for gsplat's pixel centres
    (``cx + 0.5``, ``cy + 0.5``); returns a new tensor, differentiable like any torch op."""
    if Ks.shape[-2:] != (3, 3):
        raise ValueError(f"Ks must be [..., 3, 3], got {tuple(Ks.shape)}")
    shifted = Ks.clone()
    shifted[..., 0, 2] = shifted[..., 0, 2] + 0.5
    shifted[..., 1, 2] = shifted[..., 1, 2] + 0.5
    return shifted
