"""gsplat's CUDA rasteriser behind the same call as the torch backend.

gsplat compiles its CUDA extension on first use and cannot run without CUDA; merely importing
``gsplat.cuda._backend`` on a machine without a CUDA toolkit attempts that build and fails. So the
probe below runs only when torch reports CUDA, and its verdict is cached for the process.
"""
from __future__ import annotations

import functools

import torch
from torch import Tensor

from .inputs import DEFAULT_EPS2D, check_raster_inputs


@functools.lru_cache(maxsize=1)
def gsplat_cuda_status() -> tuple[bool, str]:
    """``(usable, reason)``: whether gsplat's CUDA rasteriser can run in this process, and why not."""
    if not torch.cuda.is_available():
        return False, "torch.cuda.is_available() is False"
    try:
        from gsplat.cuda._backend import _C  # triggers gsplat's one-off JIT build if needed
    except Exception as exc:  # noqa: BLE001 - any import/build failure means the extension is unusable
        return False, f"gsplat CUDA extension failed to load: {type(exc).__name__}: {exc}"
    if _C is None:
        return False, "gsplat CUDA extension is not built (no CUDA toolkit found by gsplat)"
    return True, "gsplat CUDA extension loaded"


def gsplat_cuda_available() -> bool:
    """True when gsplat's CUDA rasteriser can run in this process (see :func:`gsplat_cuda_status`)."""
    return gsplat_cuda_status()[0]


def rasterize_gsplat(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, colors: Tensor,
                     viewmats: Tensor, Ks: Tensor, width: int, height: int, near_plane: float = 0.01,
                     far_plane: float = 1e10, render_mode: str = "RGB", sh_degree: int | None = None,
                     backgrounds: Tensor | None = None, eps2d: float = DEFAULT_EPS2D) -> tuple[Tensor, Tensor, dict]:
    """``gsplat.rasterization`` with ``packed=False`` (so ``meta`` has the torch backend's
    ``[C, N, ...]`` layout). Raises ``RuntimeError`` when the CUDA rasteriser is unusable."""
    check_raster_inputs(means, quats, scales, opacities, colors, viewmats, Ks, width, height, near_plane,
                        far_plane, render_mode, sh_degree, backgrounds, eps2d)
    usable, reason = gsplat_cuda_status()
    if not usable:
        raise RuntimeError(f"gsplat backend unavailable: {reason}")
    if means.device.type != "cuda":
        raise RuntimeError(f"gsplat backend needs CUDA tensors, got tensors on {means.device}")
    from gsplat import rasterization

    render_colors, render_alphas, meta = rasterization(
        means, quats, scales, opacities, colors, viewmats, Ks, width, height, near_plane=near_plane,
        far_plane=far_plane, eps2d=eps2d, sh_degree=sh_degree, packed=False, backgrounds=backgrounds,
        render_mode=render_mode)
    meta["backend"] = "gsplat"
    return render_colors, render_alphas, meta
