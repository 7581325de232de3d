"""Pure-PyTorch rasteriser with ``gsplat.rasterization``'s inputs, outputs and numerics (CPU or any
device), differentiable by autograd in means, quats, scales, opacities, colors and viewmats.

Stages:

1. Projection — gsplat's own pure-torch reference (``gsplat.cuda._torch_impl``):
   ``_quat_scale_to_covar_preci`` then ``_fully_fused_projection`` (EWA, ``eps2d`` blur, near/far
   and image-bounds culling, 3.33-sigma radii). Reused as is, so the geometry *is* gsplat's.
2. Colours — raw feature channels, or SH via gsplat's ``_spherical_harmonics`` with the view
   direction ``mean - camera centre`` and gsplat's ``max(rgb + 0.5, 0)``; depth appended as the last
   channel for the depth modes.
3. Pairs — :mod:`.footprints`: per-pixel footprint binning, sorted by pixel then depth.
4. Compositing — :mod:`.compositing`: gsplat's kernel rules, vectorised, chunked.

``meta`` has gsplat's non-packed layout (``radii [C,N,2]``, ``means2d [C,N,2]``, ``depths``,
``conics``, ``opacities [C,N]``, ``width``, ``height``, ``n_cameras``, ...), so gsplat's
``DefaultStrategy`` can read ``meta["means2d"].grad`` after ``retain_grad()``.
"""
from __future__ import annotations

import torch
from gsplat.cuda._torch_impl import _fully_fused_projection, _quat_scale_to_covar_preci, _spherical_harmonics
from torch import Tensor

from .compositing import DEFAULT_MAX_PAIRS_PER_CHUNK, composite_pairs
from .footprints import footprint_pairs
from .inputs import DEFAULT_EPS2D, check_raster_inputs

# gsplat: expected depth = accumulated depth / max(alpha, 1e-10)
_ED_ALPHA_FLOOR = 1e-10


def rasterize_torch(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, colors: Tensor,
                    viewmats: Tensor, Ks: Tensor, width: int, height: int, near_plane: float = 0.01,
                    far_plane: float = 1e10, render_mode: str = "RGB", sh_degree: int | None = None,
                    backgrounds: Tensor | None = None, eps2d: float = DEFAULT_EPS2D,
                    max_pairs_per_chunk: int = DEFAULT_MAX_PAIRS_PER_CHUNK,
                    fused: bool | None = None) -> tuple[Tensor, Tensor, dict]:
    """Render ``C`` cameras with gsplat's semantics; see :func:`ocgs_ros.gaussians.raster.rasterize`.

    ``max_pairs_per_chunk`` bounds how many pixel-Gaussian pairs the vectorised compositor handles
    (and, under autograd, holds as intermediates) at once; ``fused`` picks the compositor
    (:func:`.compositing.composite_pairs`: None = the fused C++ one when it loads).
    Returns ``(render_colors [C,H,W,X], render_alphas [C,H,W,1], meta)``.
    """
    shapes = check_raster_inputs(means, quats, scales, opacities, colors, viewmats, Ks, width, height, near_plane,
                                 far_plane, render_mode, sh_degree, backgrounds, eps2d)
    n, num_cams = shapes.num_gaussians, shapes.num_cameras

    covars, _ = _quat_scale_to_covar_preci(quats, scales, compute_covar=True, compute_preci=False)
    radii, means2d, depths, conics, _ = _fully_fused_projection(
        means, covars, viewmats, Ks, width, height, eps2d=eps2d, near_plane=near_plane, far_plane=far_plane)
    cam_opacities = opacities[None, :].expand(num_cams, n)

    features = _features(means, colors, viewmats, depths, sh_degree, render_mode, shapes.colors_per_camera)
    channels = features.shape[-1]
    flat = (means2d.reshape(-1, 2), conics.reshape(-1, 3), cam_opacities.reshape(-1))
    gaussian_ids, pixel_ids = footprint_pairs(*flat, depths.detach().reshape(-1), radii.reshape(-1, 2), n,
                                              width, height, counting_sort=fused is not False)
    image, alpha = composite_pairs(*flat, features.reshape(-1, channels), gaussian_ids, pixel_ids,
                                   num_cams * height * width, width, height, max_pairs_per_chunk, fused)
    image = image.reshape(num_cams, height, width, channels)
    alpha = alpha.reshape(num_cams, height, width, 1)

    if backgrounds is not None and render_mode in ("RGB", "RGB+D", "RGB+ED"):
        color_bg = backgrounds[:, None, None, :] * (1.0 - alpha)
        if render_mode == "RGB":
            image = image + color_bg
        else:  # gsplat gives the depth channel a zero background
            image = torch.cat([image[..., :-1] + color_bg, image[..., -1:]], dim=-1)
    if render_mode in ("ED", "RGB+ED"):
        image = torch.cat([image[..., :-1], image[..., -1:] / alpha.clamp(min=_ED_ALPHA_FLOOR)], dim=-1)

    meta = {
        "backend": "torch",
        "camera_ids": None,
        "gaussian_ids": None,
        "radii": radii,
        "means2d": means2d,
        "depths": depths,
        "conics": conics,
        "opacities": cam_opacities,
        "width": width,
        "height": height,
        "n_cameras": num_cams,
        "n_batches": 1,
        "n_pairs": int(gaussian_ids.numel()),
    }
    return image, alpha, meta


def _features(means: Tensor, colors: Tensor, viewmats: Tensor, depths: Tensor, sh_degree: int | None,
              render_mode: str, colors_per_camera: bool) -> Tensor:
    """Per-camera channels to composite, ``[C, N, X]``: colours (if the mode has them), then depth."""
    num_cams, n = depths.shape
    parts = []
    if render_mode in ("RGB", "RGB+D", "RGB+ED"):
        if sh_degree is None:
            parts.append(colors if colors_per_camera else colors[None].expand(num_cams, n, colors.shape[-1]))
        else:
            cam_centres = torch.linalg.inv(viewmats)[:, :3, 3]  # [C, 3]
            directions = means[None, :, :] - cam_centres[:, None, :]  # [C, N, 3]
            coeffs = colors if colors_per_camera else colors[None].expand(num_cams, *colors.shape)
            rgb = _spherical_harmonics(sh_degree, directions, coeffs)
            parts.append(torch.clamp_min(rgb + 0.5, 0.0))  # gsplat's (and Inria's) SH colour offset
    if render_mode != "RGB":
        parts.append(depths[..., None])
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)
