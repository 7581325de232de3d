"""Shape, dtype and option checks shared by every rasteriser backend.

Both backends accept exactly the same arguments, so the checks live here once and a bad call fails
the same way (a ``ValueError`` naming the offending argument) whichever backend would have run.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

RENDER_MODES = ("RGB", "D", "ED", "RGB+D", "RGB+ED")
# gsplat evaluates spherical harmonics up to degree 4 (25 bases).
MAX_SH_DEGREE = 4
# gsplat's default eps2d: every footprint is widened by this variance in pixels squared (anti-aliasing)
DEFAULT_EPS2D = 0.3


@dataclass(frozen=True)
class RasterShapes:
    """Sizes of a validated call: ``num_gaussians`` N, ``num_cameras`` C, ``color_channels`` D
    (3 for spherical harmonics), and whether ``colors`` are given per camera (``[C, N, ...]``)."""

    num_gaussians: int
    num_cameras: int
    color_channels: int
    colors_per_camera: bool


def _shape(t: Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


def check_raster_inputs(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, colors: Tensor,
                        viewmats: Tensor, Ks: Tensor, width: int, height: int, near_plane: float,
                        far_plane: float, render_mode: str, sh_degree: int | None,
                        backgrounds: Tensor | None, eps2d: float) -> RasterShapes:
    """Validate a ``rasterize`` call; raise ``ValueError`` listing every problem found.

    Accepted layouts (gsplat's, without leading batch dimensions): ``means [N,3]``, ``quats [N,4]``
    (wxyz, need not be normalised), ``scales [N,3]``, ``opacities [N]``, ``colors [N,D]`` or
    ``[C,N,D]`` when ``sh_degree`` is None, else SH coefficients ``[N,K,3]`` or ``[C,N,K,3]`` with
    ``K >= (sh_degree+1)^2``; ``viewmats [C,4,4]`` (world→camera), ``Ks [C,3,3]``,
    ``backgrounds [C,D]`` (D = 3 with SH).
    """
    tensors = {"means": means, "quats": quats, "scales": scales, "opacities": opacities, "colors": colors,
               "viewmats": viewmats, "Ks": Ks}
    if backgrounds is not None:
        tensors["backgrounds"] = backgrounds
    not_tensors = [name for name, t in tensors.items() if not isinstance(t, Tensor)]
    if not_tensors:
        raise ValueError(f"rasterize: {', '.join(not_tensors)} must be torch.Tensor")
    problems: list[str] = []
    if render_mode not in RENDER_MODES:
        problems.append(f"render_mode must be one of {RENDER_MODES}, got {render_mode!r}")
    for name, value in (("width", width), ("height", height)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            problems.append(f"{name} must be a positive int, got {value!r}")
    if not (0.0 <= near_plane < far_plane):
        problems.append(f"need 0 <= near_plane < far_plane, got near_plane={near_plane}, far_plane={far_plane}")
    if eps2d < 0.0:
        problems.append(f"eps2d must be >= 0, got {eps2d}")
    dtypes = {t.dtype for t in tensors.values()}
    if len(dtypes) != 1 or not next(iter(dtypes)).is_floating_point:
        problems.append("all tensors must share one floating dtype, got "
                        + ", ".join(f"{name}={t.dtype}" for name, t in tensors.items()))
    devices = {t.device for t in tensors.values()}
    if len(devices) != 1:
        problems.append("all tensors must be on one device, got "
                        + ", ".join(f"{name}={t.device}" for name, t in tensors.items()))

    if means.ndim != 2 or means.shape[-1] != 3:
        problems.append(f"means must be [N, 3], got {_shape(means)}")
    n = means.shape[0] if means.ndim >= 1 else -1
    if viewmats.ndim != 3 or _shape(viewmats)[1:] != (4, 4):
        problems.append(f"viewmats must be [C, 4, 4] (world->camera), got {_shape(viewmats)}")
    c = viewmats.shape[0] if viewmats.ndim >= 1 else -1
    if _shape(Ks) != (c, 3, 3):
        problems.append(f"Ks must be [C, 3, 3] with C={c} as viewmats, got {_shape(Ks)}")
    if _shape(quats) != (n, 4):
        problems.append(f"quats must be [N, 4] (wxyz) with N={n}, got {_shape(quats)}")
    if _shape(scales) != (n, 3):
        problems.append(f"scales must be [N, 3] with N={n}, got {_shape(scales)}")
    if _shape(opacities) != (n,):
        problems.append(f"opacities must be [N] with N={n}, got {_shape(opacities)}")

    colors_per_camera = False
    channels = -1
    if sh_degree is None:
        if colors.ndim == 2 and colors.shape[0] == n:
            channels = colors.shape[1]
        elif colors.ndim == 3 and _shape(colors)[:2] == (c, n):
            channels, colors_per_camera = colors.shape[2], True
        else:
            problems.append(f"colors must be [N, D] or [C, N, D] (N={n}, C={c}) when sh_degree is None, "
                            f"got {_shape(colors)}")
        if channels == 0:
            problems.append("colors must have at least one channel")
    else:
        if isinstance(sh_degree, bool) or not isinstance(sh_degree, int) or not 0 <= sh_degree <= MAX_SH_DEGREE:
            problems.append(f"sh_degree must be None or an int in 0..{MAX_SH_DEGREE}, got {sh_degree!r}")
        else:
            bases = (sh_degree + 1) ** 2
            if colors.ndim == 3 and colors.shape[0] == n and colors.shape[2] == 3:
                num_coeffs = colors.shape[1]
            elif colors.ndim == 4 and _shape(colors)[:2] == (c, n) and colors.shape[3] == 3:
                num_coeffs, colors_per_camera = colors.shape[2], True
            else:
                num_coeffs = -1
                problems.append(f"SH colors must be [N, K, 3] or [C, N, K, 3] (N={n}, C={c}), got {_shape(colors)}")
            if num_coeffs >= 0 and num_coeffs < bases:
                problems.append(f"sh_degree={sh_degree} needs K >= {bases} SH coefficients, colors has K={num_coeffs}")
        channels = 3
    if backgrounds is not None and _shape(backgrounds) != (c, channels):
        problems.append(f"backgrounds must be [C, D] = [{c}, {channels}], got {_shape(backgrounds)}")
    if problems:
        raise ValueError("rasterize: " + "; ".join(problems))
    return RasterShapes(num_gaussians=n, num_cameras=c, color_channels=channels, colors_per_camera=colors_per_camera)


def is_cuda_call(*tensors: Tensor | None) -> bool:
    """True when every given tensor lives on a CUDA device."""
    present = [t for t in tensors if t is not None]
    return bool(present) and all(t.device.type == "cuda" for t in present) and torch.cuda.is_available()
