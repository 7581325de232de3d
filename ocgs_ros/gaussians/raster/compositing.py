"""Differentiable front-to-back alpha compositing of projected Gaussians, with gsplat's kernel rules.

Input: the (pixel, Gaussian) pairs that can contribute, sorted by pixel and, within a pixel, front to
back (:mod:`.footprints` builds them). Per pair, as gsplat's CUDA kernel does
(``RasterizeToPixels3DGSFwd.cu``): pixel centre at ``(x + 0.5, y + 0.5)``,
``sigma = 0.5 (a dx^2 + c dy^2) + b dx dy`` with the conic ``(a, b, c)``,
``alpha = min(0.999, opacity * exp(-sigma))``, pairs with ``sigma < 0`` or ``alpha < 1/255`` are
skipped, and a pixel stops *before* the Gaussian that would bring its transmittance to ``<= 1e-4``.
A pixel's output is ``sum_i w_i f_i`` with ``w_i = alpha_i T_i`` and ``T_i = prod_{j<i} (1 - alpha_j)``;
its alpha is ``sum_i w_i = 1 - T_final``.

Vectorised over all pairs at once: the per-pixel products are a segmented exclusive cumulative sum of
``log(1 - alpha)`` (float64, so subtracting a long running sum loses nothing; its backward is the same
sum run from the other end), and the weighted feature sum is one sparse-matrix product
(:mod:`.sparse_weighted_sum`) whose extra column of ones yields the alpha. The only Python loop is
over chunks. Gradients follow gsplat's backward: none through a clamped alpha, none for skipped or
cut-off pairs.

Memory: pairs are processed in chunks of whole pixels holding at most ``max_pairs_per_chunk`` pairs.
When autograd is recording and there is more than one chunk, each chunk runs under activation
checkpointing, so only one chunk's intermediates exist at a time (forward and backward); what is kept
between forward and backward is the pair index arrays plus each chunk's output rows.
"""
from __future__ import annotations

import itertools
import math

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from .fused import fused_composite, fused_status
from .sparse_weighted_sum import sparse_weighted_sum

ALPHA_MAX = 0.999  # gsplat: min(0.999f, opac * exp(-sigma))
ALPHA_MIN = 1.0 / 255.0  # gsplat: ALPHA_THRESHOLD
TRANSMITTANCE_MIN = 1e-4  # gsplat: the pixel is done when next_T <= 1e-4 (that Gaussian excluded)
DEFAULT_MAX_PAIRS_PER_CHUNK = 1 << 18


def sigma_alpha(mean_x: Tensor, mean_y: Tensor, conic_a: Tensor, conic_b: Tensor, conic_c: Tensor,
                opacity: Tensor, pixel_x: Tensor, pixel_y: Tensor) -> tuple[Tensor, Tensor]:
    """Per pair ``(sigma, alpha)`` of a Gaussian (2D mean, conic ``(a, b, c)``, opacity; all ``[M]``)
    at integer pixel ``(pixel_x, pixel_y)``, whose centre is at ``+0.5``; alpha clamped to 0.999."""
    dx = mean_x - (pixel_x.to(mean_x.dtype) + 0.5)
    dy = mean_y - (pixel_y.to(mean_y.dtype) + 0.5)
    sigma = 0.5 * (conic_a * dx * dx + conic_c * dy * dy) + conic_b * dx * dy
    alpha = torch.clamp_max(opacity * torch.exp(-sigma), ALPHA_MAX)
    return sigma, alpha


class _SegmentedExclusiveCumsum(torch.autograd.Function):
    """``out[k] = sum of values[j]`` for the earlier pairs ``j`` of the same pixel (``segment_start[k]``
    is the index of its pixel's first pair). Backward is the same sum taken from the other end:
    ``grad_values[j] = sum of grad_out[k]`` over the later pairs ``k`` of the pixel."""

    @staticmethod
    def forward(ctx, values: Tensor, segment_start: Tensor, segment_end: Tensor) -> Tensor:
        ctx.save_for_backward(segment_end)
        return _exclusive_from_start(values, segment_start)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        (segment_end,) = ctx.saved_tensors
        # reversed, pair k's segment starts at (last index - segment_end[k])
        last = grad_out.numel() - 1
        flipped = _exclusive_from_start(grad_out.flip(0), (last - segment_end).flip(0))
        return flipped.flip(0), None, None


def _exclusive_from_start(values: Tensor, segment_start: Tensor) -> Tensor:
    running = torch.cumsum(values, dim=0)
    before = running - values
    return before - before.index_select(0, segment_start)


def _composite_chunk(gaussian_table: Tensor, features: Tensor, gaussian_ids: Tensor, pixel_ids: Tensor,
                     row_starts: Tensor, first_pixel: int, width: int, height: int) -> Tensor:
    """Composite one chunk: pairs ``(gaussian_ids, pixel_ids)`` sorted by pixel then depth, covering
    pixels ``first_pixel ... first_pixel + R - 1`` whose pairs start at ``row_starts [R+1]`` (local).
    ``gaussian_table [6, G]`` = (mean x, mean y, conic a, b, c, opacity); ``features [G, X+1]`` ends
    with a column of ones, so the last output column is the pixel's alpha. Returns ``[R, X+1]``."""
    rows = pixel_ids - first_pixel
    pixel_in_image = pixel_ids % (width * height)
    # one 1-D gather per quantity: their backward (1-D index_add) is several times faster than a 2-D one
    per_pair = [column.index_select(0, gaussian_ids) for column in gaussian_table]
    sigma, alpha = sigma_alpha(*per_pair, pixel_in_image % width,
                               torch.div(pixel_in_image, width, rounding_mode="floor"))
    with torch.no_grad():
        contributes = ((sigma >= 0) & (alpha >= ALPHA_MIN)).to(alpha.dtype)
    alpha = alpha * contributes  # skipped pairs: alpha 0, so they change neither T nor the output
    # float64: the running sum spans all pixels of the chunk, its differences must stay exact
    log_pass = torch.log1p(-alpha).double()  # log(1 - alpha_i)
    segment_start = row_starts.index_select(0, rows).long()
    segment_end = row_starts.index_select(0, rows + 1).long() - 1
    log_trans_before = _SegmentedExclusiveCumsum.apply(log_pass, segment_start, segment_end)  # log T_i
    with torch.no_grad():
        # the pixel stops before the pair that would take T to <= 1e-4; T only decreases along a
        # pixel's pairs, so the used ones are a prefix
        used = ((log_trans_before + log_pass) > math.log(TRANSMITTANCE_MIN)).to(alpha.dtype)
    weights = alpha * torch.exp(log_trans_before).to(alpha.dtype) * used
    return sparse_weighted_sum(row_starts, gaussian_ids, weights, features)


def composite_pairs(means2d: Tensor, conics: Tensor, opacities: Tensor, features: Tensor,
                    gaussian_ids: Tensor, pixel_ids: Tensor, num_pixels: int, width: int, height: int,
                    max_pairs_per_chunk: int = DEFAULT_MAX_PAIRS_PER_CHUNK,
                    fused: bool | None = None) -> tuple[Tensor, Tensor]:
    """Alpha-composite sorted pairs into ``num_pixels`` flat pixels (image-major: pixel id =
    ``image * height * width + y * width + x``).

    ``means2d [G,2]``, ``conics [G,3]``, ``opacities [G]``, ``features [G,X]`` are flat per
    (camera, Gaussian) rows; ``gaussian_ids``/``pixel_ids`` int32 or int64 ``[M]`` sorted by pixel, front to
    back within a pixel. Returns ``(features [num_pixels, X], alpha [num_pixels])`` without background.

    ``fused``: None uses the fused C++ compositor (:mod:`.fused`) for CPU tensors when it loads, else
    this module's vectorised path; True requires the fused one (RuntimeError naming why not); False
    the vectorised one (``max_pairs_per_chunk`` bounds its memory; the fused one needs none).
    """
    if max_pairs_per_chunk < 1:
        raise ValueError(f"max_pairs_per_chunk must be >= 1, got {max_pairs_per_chunk}")
    if gaussian_ids.dtype != pixel_ids.dtype:
        raise ValueError(f"gaussian_ids ({gaussian_ids.dtype}) and pixel_ids ({pixel_ids.dtype}) must share a dtype")
    counts = torch.bincount(pixel_ids, minlength=num_pixels)
    row_starts = torch.zeros(num_pixels + 1, dtype=torch.int64, device=pixel_ids.device)
    torch.cumsum(counts, dim=0, out=row_starts[1:])
    gaussian_table = torch.cat([means2d, conics, opacities[:, None]], dim=1).t().contiguous()  # [6, G]
    if _use_fused(fused, means2d):
        return fused_composite(gaussian_table, features, gaussian_ids, row_starts, width, height)
    bounds = _chunk_bounds(row_starts, max_pairs_per_chunk)
    features_and_one = torch.cat([features, features.new_ones(features.shape[0], 1)], dim=1)
    inputs_need_grad = torch.is_grad_enabled() and (gaussian_table.requires_grad or features.requires_grad)
    run_checkpointed = inputs_need_grad and len(bounds) > 2
    outs = []
    for first, last in itertools.pairwise(bounds):
        lo, hi = int(row_starts[first]), int(row_starts[last])
        args = (gaussian_table, features_and_one, gaussian_ids[lo:hi], pixel_ids[lo:hi],
                (row_starts[first:last + 1] - lo).to(gaussian_ids.dtype), first, width, height)
        outs.append(checkpoint(_composite_chunk, *args, use_reentrant=False) if run_checkpointed
                    else _composite_chunk(*args))
    out = outs[0] if len(outs) == 1 else torch.cat(outs, dim=0)
    return out[:, :-1], out[:, -1]


def _use_fused(fused: bool | None, tensor: Tensor) -> bool:
    if fused is False:
        return False
    on_cpu = tensor.device.type == "cpu"
    usable, reason = fused_status() if on_cpu else (False, "tensors are not on the CPU")
    if fused and not usable:
        raise RuntimeError(f"fused compositing requested but unavailable: {reason}")
    return usable


def _chunk_bounds(row_starts: Tensor, max_pairs: int) -> list[int]:
    """Pixel indices ``[0, b1, ..., num_pixels]`` splitting the pairs into runs of whole pixels with
    at most ``max_pairs`` pairs each (a single pixel with more pairs gets a chunk of its own)."""
    num_pixels = row_starts.numel() - 1
    total = int(row_starts[-1])
    bounds = [0]
    while bounds[-1] < num_pixels and int(row_starts[bounds[-1]]) + max_pairs < total:
        limit = int(row_starts[bounds[-1]]) + max_pairs
        # last pixel boundary whose pair offset stays within the limit
        nxt = int(torch.searchsorted(row_starts, limit, right=True)) - 1
        bounds.append(max(nxt, bounds[-1] + 1))
    bounds.append(num_pixels)
    return bounds
