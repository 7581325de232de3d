"""Gaussian rasterisation with ``gsplat.rasterization``'s inputs and outputs.

``rasterize(..., backend="auto")`` uses gsplat's CUDA rasteriser for CUDA tensors when gsplat's
extension is usable, and the pure-PyTorch path (:mod:`.torch_backend`) otherwise; ``"gsplat"`` or
``"torch"`` force one. test/test_raster_*.py checks the torch path against a dense reference and
gsplat's own projection code, and against gsplat's CUDA rasteriser where CUDA exists.
"""
from __future__ import annotations

import logging

import torch

from .torch_backend import RENDER_MODES, rasterize_torch

__all__ = ["rasterize", "rasterize_torch", "gsplat_cuda_available", "RENDER_MODES"]

_log = logging.getLogger(__name__)
_announced: set[str] = set()


def gsplat_cuda_available() -> bool:
    """True when CUDA is present and gsplat's rasteriser can be imported (it compiles on first use)."""
    if not torch.cuda.is_available():
        return False
    try:
        from gsplat import rasterization  # noqa: F401
    except Exception:  # noqa: BLE001 - any import/compile failure means "not usable"
        return False
    return True


def rasterize(means, quats, scales, opacities, colors, viewmats, Ks, width: int, height: int,
              near_plane: float = 0.01, far_plane: float = 1e10, render_mode: str = "RGB",
              sh_degree: int | None = None, backgrounds=None, eps2d: float = 0.3, backend: str = "auto"):
    """Render ``C`` cameras: ``(render_colors [C,H,W,X], render_alphas [C,H,W,1], meta)``.

    Inputs as ``gsplat.rasterization``: activated ``scales`` and ``opacities``, ``quats`` wxyz,
    ``viewmats`` world→camera, raw feature ``colors [N,D]`` with ``sh_degree=None`` or SH
    ``[N,K,3]``; depth channels appended last for "D"/"ED" modes.
    """
    if backend not in ("auto", "gsplat", "torch"):
        raise ValueError(f"backend must be 'auto', 'gsplat' or 'torch', got {backend!r}")
    use_gsplat = backend == "gsplat" or (backend == "auto" and means.is_cuda and gsplat_cuda_available())
    if backend == "gsplat" and not (means.is_cuda and gsplat_cuda_available()):
        raise RuntimeError("backend='gsplat' needs CUDA tensors and a working gsplat CUDA extension")
    name = "gsplat" if use_gsplat else "torch"
    if name not in _announced:
        _announced.add(name)
        _log.info("Gaussian rasteriser backend: %s", name)
    if use_gsplat:
        from gsplat import rasterization

        return rasterization(means, quats, scales, opacities, colors, viewmats, Ks, width, height,
                             near_plane=near_plane, far_plane=far_plane, render_mode=render_mode,
                             sh_degree=sh_degree, backgrounds=backgrounds, eps2d=eps2d)
    return rasterize_torch(means, quats, scales, opacities, colors, viewmats, Ks, width, height,
                           near_plane=near_plane, far_plane=far_plane, render_mode=render_mode,
                           sh_degree=sh_degree, backgrounds=backgrounds, eps2d=eps2d)
