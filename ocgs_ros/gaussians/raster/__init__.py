"""Gaussian-splatting rasterisers with ``gsplat.rasterization``'s inputs and outputs.

``rasterize(..., backend="auto")`` runs gsplat's CUDA rasteriser for CUDA tensors when its extension
loads, and otherwise a pure-PyTorch path (:mod:`.torch_backend`) that reuses gsplat's projection and
SH code and composites with gsplat's kernel rules — fast and memory-bounded on a CPU, differentiable
by autograd. On the CPU its compositing (and the sort of pairs by pixel) runs in a small C++
extension built on first use (:mod:`.fused`, ~3x faster), with the vectorised torch compositor
(:mod:`.compositing`) as the fallback and the reference it is tested against.
test/test_raster_cpu.py and test/test_raster_gradients.py hold the evidence.

Pixel centres follow gsplat (``j + 0.5``); pass ``gsplat_intrinsics(K)`` for the project's
integer-centre intrinsics (docs/conventions.md).
"""
from .compositing import ALPHA_MAX, ALPHA_MIN, TRANSMITTANCE_MIN
from .fused import fused_status
from .gsplat_backend import gsplat_cuda_available, gsplat_cuda_status, rasterize_gsplat
from .inputs import DEFAULT_EPS2D, RENDER_MODES
from .intrinsics import gsplat_intrinsics
from .select import BACKENDS, rasterize, resolve_backend
from .torch_backend import rasterize_torch

__all__ = [
    "ALPHA_MAX",
    "ALPHA_MIN",
    "BACKENDS",
    "DEFAULT_EPS2D",
    "RENDER_MODES",
    "TRANSMITTANCE_MIN",
    "fused_status",
    "gsplat_cuda_available",
    "gsplat_cuda_status",
    "gsplat_intrinsics",
    "rasterize",
    "rasterize_gsplat",
    "rasterize_torch",
    "resolve_backend",
]
