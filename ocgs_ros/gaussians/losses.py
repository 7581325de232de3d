"""Losses of the online Gaussian map: photometric (L1 + D-SSIM, as 3DGS), LiDAR/depth, identity.

The identity loss is where the GOCL codebook supervises the map: each pixel's target class is the
codebook entry GOCL assigns to it (or background), weighted by GOCL's confidence — no mask
association across views is needed because the entry is already the same in every view.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_C1 = 0.01**2
SSIM_C2 = 0.03**2


def _gaussian_window(channels: int, device, dtype) -> Tensor:
    coords = torch.arange(SSIM_WINDOW, device=device, dtype=dtype) - SSIM_WINDOW // 2
    g = torch.exp(-(coords**2) / (2 * SSIM_SIGMA**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, SSIM_WINDOW, SSIM_WINDOW).contiguous()


def ssim(image: Tensor, target: Tensor) -> Tensor:
    """Mean SSIM of ``[H, W, C]`` (or ``[B, H, W, C]``) images in [0, 1] (11x11 Gaussian window, σ 1.5)."""
    if image.shape != target.shape:
        raise ValueError(f"ssim: shapes differ {tuple(image.shape)} vs {tuple(target.shape)}")
    x = image if image.ndim == 4 else image[None]
    y = target if target.ndim == 4 else target[None]
    x, y = x.permute(0, 3, 1, 2), y.permute(0, 3, 1, 2)
    channels = x.shape[1]
    w = _gaussian_window(channels, x.device, x.dtype)
    pad = SSIM_WINDOW // 2
    # reflection needs more rows and columns than the pad: a live iteration's pixel lattice of a
    # small view (process size / live_pixel_stride) can have fewer, where the edge is repeated instead
    mode = "reflect" if min(x.shape[-2:]) > pad else "replicate"

    def blur(t):
        return F.conv2d(F.pad(t, (pad,) * 4, mode=mode), w, groups=channels)

    mu_x, mu_y = blur(x), blur(y)
    sxx = blur(x * x) - mu_x**2
    syy = blur(y * y) - mu_y**2
    sxy = blur(x * y) - mu_x * mu_y
    num = (2 * mu_x * mu_y + SSIM_C1) * (2 * sxy + SSIM_C2)
    den = (mu_x**2 + mu_y**2 + SSIM_C1) * (sxx + syy + SSIM_C2)
    return (num / den).mean()


def photometric_loss(image: Tensor, target: Tensor, ssim_weight: float = 0.2) -> Tensor:
    """3DGS's photometric loss: (1 - λ) L1 + λ (1 - SSIM)."""
    return (1 - ssim_weight) * (image - target).abs().mean() + ssim_weight * (1 - ssim(image, target))


def depth_loss(rendered_depth: Tensor, measured_depth: Tensor) -> Tensor:
    """L1 between rendered (expected) depth and sparse measured depth (LiDAR projected into the view,
    0 = no measurement), over measured pixels only; 0 when nothing was measured."""
    valid = measured_depth > 0
    if not valid.any():
        return rendered_depth.sum() * 0.0
    return (rendered_depth[valid] - measured_depth[valid]).abs().mean()


def identity_targets(pixel_codebook_logits: Tensor) -> tuple[Tensor, Tensor]:
    """GOCL's per-pixel distribution ``[M+1, H, W]`` (channel 0 = background) → hard class per pixel
    ``[H, W]`` and its confidence (the class probability) ``[H, W]``."""
    return hard_targets(pixel_codebook_logits.float().softmax(dim=0))


def hard_targets(pixel_probs: Tensor) -> tuple[Tensor, Tensor]:
    """:func:`identity_targets` of the distribution ``[M+1, H, W]`` itself (a caller that also needs
    the probabilities takes the softmax once)."""
    confidence, target = pixel_probs.max(dim=0)
    return target, confidence


def identity_loss(rendered_logits: Tensor, target: Tensor, confidence: Tensor, min_confidence: float = 0.3) -> Tensor:
    """Confidence-weighted cross entropy of rendered identity logits ``[H, W, M+1]`` against GOCL's
    per-pixel class ``[H, W]``; pixels GOCL is unsure of (< ``min_confidence``) do not supervise."""
    if rendered_logits.shape[:2] != target.shape:
        raise ValueError(f"identity_loss: logits {tuple(rendered_logits.shape)} vs target {tuple(target.shape)}")
    weight = torch.where(confidence >= min_confidence, confidence, torch.zeros_like(confidence))
    if weight.sum() <= 0:
        return rendered_logits.sum() * 0.0
    ce = F.cross_entropy(rendered_logits.reshape(-1, rendered_logits.shape[-1]), target.reshape(-1), reduction="none")
    return (ce * weight.reshape(-1)).sum() / weight.sum()


def identity_loss_soft(rendered_logits: Tensor, target_probs: Tensor) -> Tensor:
    """Cross entropy of rendered identity logits ``[H, W, M+1]`` against GOCL's full per-pixel
    distribution ``[H, W, M+1]`` (soft targets: each view's uncertainty is kept, and the map's
    per-Gaussian identity converges to the multi-view average of GOCL's distributions instead of
    the majority of per-view hard labels, which a confidence threshold would mostly discard when
    GOCL's codebook assignment is soft)."""
    if rendered_logits.shape != target_probs.shape:
        raise ValueError(f"identity_loss_soft: logits {tuple(rendered_logits.shape)} vs targets "
                         f"{tuple(target_probs.shape)}")
    return -(target_probs * F.log_softmax(rendered_logits, dim=-1)).sum(dim=-1).mean()
