"""Differentiable 3D Gaussian rasterisation in pure PyTorch (CPU, or any device), with the inputs
and outputs of ``gsplat.rasterization``.

Projection, 3D covariances and spherical harmonics are gsplat's own pure-torch reference code
(``gsplat.cuda._torch_impl``), so the geometry is exactly gsplat's; the front-to-back alpha
compositing (gsplat's ``_rasterize_to_pixels`` needs CUDA) is ours and follows the CUDA kernel's
rules: alpha = min(0.99, opacity * exp(-sigma)), contributions below 1/255 skipped, a pixel stops
before the Gaussian that would bring its transmittance to 1e-4 or less.

Speed and memory: Gaussians are binned to 16x16 tiles by their projected 3-sigma extent, tiles with
similar Gaussian counts are batched together (little padding), and each batch is bounded to
``max_elements`` pixel-Gaussian pairs, so peak memory does not grow with the image or the map.
Autograd provides all gradients.
"""
from __future__ import annotations

import math

import torch
from gsplat.cuda._torch_impl import _fully_fused_projection, _quat_scale_to_covar_preci, _spherical_harmonics
from torch import Tensor

TILE = 16
ALPHA_MAX = 0.99
ALPHA_MIN = 1.0 / 255.0
TRANSMITTANCE_MIN = 1e-4
RENDER_MODES = ("RGB", "D", "ED", "RGB+D", "RGB+ED")


def _check_inputs(means, quats, scales, opacities, colors, viewmats, Ks, sh_degree):
    n = means.shape[0]
    problems = []
    if means.ndim != 2 or means.shape[1] != 3:
        problems.append(f"means must be [N, 3], got {tuple(means.shape)}")
    if quats.shape != (n, 4):
        problems.append(f"quats must be [N, 4] (wxyz), got {tuple(quats.shape)}")
    if scales.shape != (n, 3):
        problems.append(f"scales must be [N, 3], got {tuple(scales.shape)}")
    if opacities.shape != (n,):
        problems.append(f"opacities must be [N], got {tuple(opacities.shape)}")
    if sh_degree is None and (colors.ndim != 2 or colors.shape[0] != n):
        problems.append(f"colors must be [N, D] when sh_degree is None, got {tuple(colors.shape)}")
    if sh_degree is not None and (colors.ndim != 3 or colors.shape[0] != n or colors.shape[2] != 3
                                  or colors.shape[1] < (sh_degree + 1) ** 2):
        problems.append(f"SH colors must be [N, K>=(sh_degree+1)^2, 3], got {tuple(colors.shape)}")
    if viewmats.ndim != 3 or viewmats.shape[1:] != (4, 4):
        problems.append(f"viewmats must be [C, 4, 4], got {tuple(viewmats.shape)}")
    if Ks.shape != (viewmats.shape[0], 3, 3):
        problems.append(f"Ks must be [C, 3, 3] matching viewmats, got {tuple(Ks.shape)}")
    if problems:
        raise ValueError("rasterize: " + "; ".join(problems))


def _features(means, colors, viewmat, sh_degree, render_mode) -> Tensor:
    """Per-Gaussian channels to composite for one camera (colour from SH if asked, then depth)."""
    parts = []
    if render_mode in ("RGB", "RGB+D", "RGB+ED"):
        if sh_degree is None:
            parts.append(colors)
        else:
            cam_pos = torch.linalg.inv(viewmat)[:3, 3]
            rgb = _spherical_harmonics(sh_degree, means - cam_pos, colors)
            parts.append(torch.clamp_min(rgb + 0.5, 0.0))  # gsplat's SH colour convention
    return parts


def _tile_intersections(means2d: Tensor, radii: Tensor, visible: Tensor, depths: Tensor,
                        tiles_x: int, tiles_y: int):
    """(gaussian index, tile id) pairs, sorted by tile then depth (front to back)."""
    ids = torch.nonzero(visible, as_tuple=False).squeeze(1)
    ids = ids[torch.argsort(depths[ids], stable=True)]
    center, radius = means2d[ids].detach(), radii[ids].to(means2d.dtype)
    x0 = ((center[:, 0] - radius[:, 0]) / TILE).floor().clamp(0, tiles_x).long()
    x1 = ((center[:, 0] + radius[:, 0]) / TILE).floor().clamp(-1, tiles_x - 1).long() + 1
    y0 = ((center[:, 1] - radius[:, 1]) / TILE).floor().clamp(0, tiles_y).long()
    y1 = ((center[:, 1] + radius[:, 1]) / TILE).floor().clamp(-1, tiles_y - 1).long() + 1
    w, h = (x1 - x0).clamp_min(0), (y1 - y0).clamp_min(0)
    counts = w * h
    gauss = torch.repeat_interleave(ids, counts)
    if gauss.numel() == 0:
        return gauss, gauss
    # local index of each pair inside its Gaussian's tile rectangle
    starts = torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
    local = torch.arange(gauss.numel(), device=gauss.device) - starts
    w_rep = torch.repeat_interleave(w, counts)
    tx = torch.repeat_interleave(x0, counts) + local % w_rep
    ty = torch.repeat_interleave(y0, counts) + local // w_rep
    tile = ty * tiles_x + tx
    order = torch.argsort(tile, stable=True)  # stable: depth order kept within a tile
    return gauss[order], tile[order]


def rasterize_torch(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, colors: Tensor,
                    viewmats: Tensor, Ks: Tensor, width: int, height: int, near_plane: float = 0.01,
                    far_plane: float = 1e10, render_mode: str = "RGB", sh_degree: int | None = None,
                    backgrounds: Tensor | None = None, eps2d: float = 0.3, max_elements: int = 2_000_000):
    """``gsplat.rasterization`` semantics on any device: returns ``(render_colors [C,H,W,X],
    render_alphas [C,H,W,1], meta)``. ``scales`` and ``opacities`` are activated values, quats wxyz."""
    if render_mode not in RENDER_MODES:
        raise ValueError(f"render_mode must be one of {RENDER_MODES}, got {render_mode!r}")
    _check_inputs(means, quats, scales, opacities, colors, viewmats, Ks, sh_degree)
    num_cams = viewmats.shape[0]
    covars, _ = _quat_scale_to_covar_preci(quats, scales, compute_covar=True, compute_preci=False)
    radii, means2d, depths, conics, _ = _fully_fused_projection(
        means, covars, viewmats, Ks, width, height, eps2d=eps2d, near_plane=near_plane, far_plane=far_plane)
    renders, alphas = [], []
    tiles_x, tiles_y = math.ceil(width / TILE), math.ceil(height / TILE)
    for c in range(num_cams):
        feats = _features(means, colors, viewmats[c], sh_degree, render_mode)
        if render_mode != "RGB":
            feats.append(depths[c][:, None])
        feats = torch.cat(feats, dim=1)
        visible = (radii[c] > 0).all(dim=-1)
        color, alpha = _composite(means2d[c], conics[c], opacities, feats, radii[c], visible, depths[c],
                                  width, height, tiles_x, tiles_y, max_elements)
        if render_mode in ("ED", "RGB+ED"):
            color = torch.cat([color[..., :-1], color[..., -1:] / alpha.clamp_min(1e-10)], dim=-1)
        if backgrounds is not None:
            color = color + backgrounds[c] * (1.0 - alpha)
        renders.append(color)
        alphas.append(alpha)
    meta = {"radii": radii, "means2d": means2d, "depths": depths, "conics": conics, "width": width,
            "height": height, "tile_size": TILE, "n_cameras": num_cams, "backend": "torch"}
    return torch.stack(renders), torch.stack(alphas), meta


def _composite(means2d, conics, opacities, feats, radii, visible, depths, width, height, tiles_x, tiles_y,
               max_elements):
    device, dtype = means2d.device, means2d.dtype
    channels = feats.shape[1]
    num_tiles = tiles_x * tiles_y
    color_tiles = torch.zeros(num_tiles, TILE * TILE, channels, device=device, dtype=dtype)
    trans_tiles = torch.ones(num_tiles, TILE * TILE, device=device, dtype=dtype)
    gauss, tile = _tile_intersections(means2d, radii, visible, depths, tiles_x, tiles_y)
    if gauss.numel():
        counts = torch.bincount(tile, minlength=num_tiles)
        offsets = torch.cumsum(counts, 0) - counts
        active = torch.nonzero(counts, as_tuple=False).squeeze(1)
        active = active[torch.argsort(counts[active])]  # similar counts together: little padding
        pix = torch.arange(TILE * TILE, device=device)
        local_xy = torch.stack([pix % TILE, pix // TILE], dim=1).to(dtype)  # [P, 2]
        start = 0
        color_rows, trans_rows, done_tiles = [], [], []
        while start < active.numel():
            # grow the batch while its padded size stays within budget
            g_max = int(counts[active[start]])
            end = start + 1
            while end < active.numel():
                g_next = int(counts[active[end]])
                if (end - start + 1) * TILE * TILE * g_next > max_elements:
                    break
                end += 1
                g_max = g_next
            batch = active[start:end]
            start = end
            g_max = int(counts[batch].max())
            slot = torch.arange(g_max, device=device)
            valid = slot[None] < counts[batch][:, None]  # [B, G]
            index = (offsets[batch][:, None] + slot[None]).clamp_max(gauss.numel() - 1)
            g = gauss[index]  # [B, G]
            origin = torch.stack([(batch % tiles_x) * TILE, (batch // tiles_x) * TILE], dim=1).to(dtype)
            pixels = origin[:, None, :] + local_xy[None]  # [B, P, 2], pixel centres at integers
            delta = pixels[:, :, None, :] - means2d[g][:, None, :, :]  # [B, P, G, 2]
            a, b, cc = conics[g].unbind(-1)  # [B, G]
            sigma = 0.5 * (a[:, None] * delta[..., 0] ** 2 + cc[:, None] * delta[..., 1] ** 2) \
                + b[:, None] * delta[..., 0] * delta[..., 1]
            alpha = torch.clamp_max(opacities[g][:, None] * torch.exp(-sigma), ALPHA_MAX)
            keep = valid[:, None, :] & (sigma >= 0) & (alpha >= ALPHA_MIN)
            alpha = torch.where(keep, alpha, torch.zeros_like(alpha))
            one_minus = 1.0 - alpha
            trans_incl = torch.cumprod(one_minus, dim=-1)  # T after each Gaussian
            trans_excl = torch.cat([torch.ones_like(trans_incl[..., :1]), trans_incl[..., :-1]], dim=-1)
            # the kernel stops before the Gaussian that would push T to 1e-4 or below
            used = (trans_incl > TRANSMITTANCE_MIN).to(dtype)
            weights = alpha * trans_excl * used  # [B, P, G]
            color_rows.append(torch.bmm(weights, feats[g]))  # [B, P, D]
            last_used = torch.where(used.bool(), trans_incl, torch.ones_like(trans_incl))
            trans_rows.append(last_used.min(dim=-1).values)  # final T per pixel
            done_tiles.append(batch)
        done = torch.cat(done_tiles)
        color_tiles = color_tiles.index_put((done,), torch.cat(color_rows))
        trans_tiles = trans_tiles.index_put((done,), torch.cat(trans_rows))
    # tiles → image, cropped to the requested size
    image = color_tiles.view(tiles_y, tiles_x, TILE, TILE, channels).permute(0, 2, 1, 3, 4)
    image = image.reshape(tiles_y * TILE, tiles_x * TILE, channels)[:height, :width]
    trans = trans_tiles.view(tiles_y, tiles_x, TILE, TILE).permute(0, 2, 1, 3)
    trans = trans.reshape(tiles_y * TILE, tiles_x * TILE)[:height, :width]
    return image, (1.0 - trans)[..., None]
