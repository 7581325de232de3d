"""``rasterize``: one call, two backends (gsplat CUDA or pure PyTorch), chosen per call."""
from __future__ import annotations

import logging

from torch import Tensor

from .compositing import DEFAULT_MAX_PAIRS_PER_CHUNK
from .gsplat_backend import gsplat_cuda_status, rasterize_gsplat
from .inputs import DEFAULT_EPS2D, is_cuda_call
from .torch_backend import rasterize_torch

BACKENDS = ("auto", "gsplat", "torch")
_log = logging.getLogger(__name__)
_announced: set[str] = set()


def resolve_backend(backend: str, *tensors: Tensor | None) -> tuple[str, str]:
    """``(name, reason)`` of the backend a call with these tensors would use.

    ``"auto"`` → ``"gsplat"`` when the tensors are on CUDA and gsplat's extension loads, else
    ``"torch"``. ``"gsplat"`` raises ``RuntimeError`` if that is impossible; ``"torch"`` always works.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "torch":
        return "torch", "requested"
    on_cuda = is_cuda_call(*tensors)
    if not on_cuda:
        if backend == "gsplat":
            raise RuntimeError("backend='gsplat' needs CUDA tensors and torch.cuda.is_available()")
        return "torch", "tensors are not on CUDA"
    usable, reason = gsplat_cuda_status()
    if usable:
        return "gsplat", reason if backend == "auto" else "requested"
    if backend == "gsplat":
        raise RuntimeError(f"backend='gsplat' unavailable: {reason}")
    return "torch", reason


def rasterize(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, colors: Tensor,
              viewmats: Tensor, Ks: Tensor, width: int, height: int, near_plane: float = 0.01,
              far_plane: float = 1e10, render_mode: str = "RGB", sh_degree: int | None = None,
              backgrounds: Tensor | None = None, eps2d: float = DEFAULT_EPS2D, backend: str = "auto",
              max_pairs_per_chunk: int = DEFAULT_MAX_PAIRS_PER_CHUNK,
              fused: bool | None = None) -> tuple[Tensor, Tensor, dict]:
    """Rasterise N 3D Gaussians into C cameras with ``gsplat.rasterization``'s semantics.

    Args:
        means ``[N,3]`` world; quats ``[N,4]`` wxyz (normalised internally); scales ``[N,3]`` and
        opacities ``[N]`` already activated; colors ``[N,D]`` / ``[C,N,D]`` feature channels when
        ``sh_degree`` is None, else SH ``[N,K,3]`` / ``[C,N,K,3]``; viewmats ``[C,4,4]`` world→camera
        (``inv(T_world_cam)``); Ks ``[C,3,3]``. gsplat puts pixel centres at ``(x + 0.5, y + 0.5)``:
        for this project's integer-centre intrinsics add 0.5 to ``cx`` and ``cy``.
        render_mode: "RGB", "D" (accumulated z-depth ``sum w_i z_i``), "ED" (``D / alpha``),
        "RGB+D", "RGB+ED" (depth appended as the last channel).
        backgrounds ``[C,D]``: blended as ``colour + (1 - alpha) * background`` (not for depth).
        backend: "auto" | "gsplat" | "torch" (see :func:`resolve_backend`); the choice is logged
        once per backend at INFO.
        max_pairs_per_chunk: torch backend only — memory bound of its vectorised compositing chunks.
        fused: torch backend only — None: the fused C++ CPU compositor when it loads (else the
        vectorised one), True: require it, False: the vectorised one (``compositing.composite_pairs``).

    Returns:
        ``render_colors [C,H,W,X]`` (X = D, 1 or D+1), ``render_alphas [C,H,W,1]``, ``meta`` (gsplat's
        non-packed projection results plus ``"backend"``).

    Raises:
        ValueError: malformed inputs (the message names each offending argument).
        RuntimeError: ``backend="gsplat"`` when gsplat's CUDA rasteriser cannot run.
    """
    name, reason = resolve_backend(backend, means, quats, scales, opacities, colors, viewmats, Ks, backgrounds)
    if name not in _announced:
        _announced.add(name)
        _log.info("Gaussian rasteriser backend: %s (%s)", name, reason)
    args = (means, quats, scales, opacities, colors, viewmats, Ks, width, height)
    options = {"near_plane": near_plane, "far_plane": far_plane, "render_mode": render_mode,
               "sh_degree": sh_degree, "backgrounds": backgrounds, "eps2d": eps2d}
    if name == "gsplat":
        return rasterize_gsplat(*args, **options)
    return rasterize_torch(*args, **options, max_pairs_per_chunk=max_pairs_per_chunk, fused=fused)
