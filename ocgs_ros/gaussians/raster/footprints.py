"""Which (pixel, Gaussian) pairs can contribute, sorted for compositing — vectorised, no gradients.

gsplat's CUDA path bins Gaussians to 16x16 tiles and evaluates every Gaussian of a tile at all 256
of its pixels; cheap on a GPU, but on a CPU most of those evaluations land where the Gaussian is
below the 1/255 alpha threshold. Here each Gaussian is instead binned to exactly the pixels of its
footprint, the ellipse ``opacity * exp(-sigma) >= 1/255``, i.e. ``sigma <= ln(255 * opacity)``
(capped at ``ln 255``, where ``sqrt(2 ln 255) = 3.33`` is gsplat's radius in sigmas). For each pixel
row the ellipse is an x-interval, found by solving the quadratic ``sigma(dx, dy) = L`` in ``dx``;
so a Gaussian costs work per footprint row and per footprint pixel, nothing more.

The intervals get ``_SLACK_PX`` of slack so float rounding can never drop a contributing pair; the
compositor applies gsplat's exact test (``sigma >= 0``, ``alpha >= 1/255``) to every pair, so the few
extra candidates change nothing.

Order: Gaussians are sorted by depth (stable), their pairs generated in that order, and the pairs then
stably sorted by pixel, which leaves them front to back within each pixel.

Memory: pairs are generated in batches of at most ``max_pairs_per_batch`` (a single huge footprint
row is never split); what is kept is two int32 indices per pair.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from .compositing import ALPHA_MIN
from .fused import expand_segments_by_pixel

# ln(255): beyond this sigma no Gaussian with opacity <= 1 reaches alpha 1/255 (3.33 sigmas).
_MAX_LOG_REACH = math.log(1.0 / ALPHA_MIN)
_SLACK_PX = 1e-3


@torch.no_grad()
def footprint_pairs(means2d: Tensor, conics: Tensor, opacities: Tensor, depths: Tensor, radii: Tensor,
                    num_gaussians: int, width: int, height: int,
                    max_pairs_per_batch: int = 1 << 20, counting_sort: bool = True) -> tuple[Tensor, Tensor]:
    """Candidate pairs of flat (camera, Gaussian) rows: ``means2d [G,2]``, ``conics [G,3]``,
    ``opacities [G]``, ``depths [G]``, ``radii [G,2]`` (gsplat's, 0 = culled) with ``G = C * N``.

    Returns ``(gaussian_ids, pixel_ids)`` ``[M]`` (int32 when all indices fit, else int64): row of the
    flat arrays and flat pixel id
    ``camera * height * width + y * width + x``, sorted by pixel then front to back. Every pair with
    ``alpha >= 1/255`` is included (plus possibly a few boundary pairs just below it).
    """
    device = means2d.device
    empty = torch.zeros(0, dtype=torch.int32, device=device)
    visible = (radii > 0).all(dim=-1) & (opacities >= ALPHA_MIN)
    ids = torch.nonzero(visible, as_tuple=False).squeeze(1)
    if ids.numel() == 0:
        return empty, empty
    ids = ids[torch.argsort(depths[ids], stable=True)]

    segment_owner, row_y, x_lo, x_hi = _footprint_rows(means2d[ids].double(), conics[ids].double(),
                                                       opacities[ids].double(), width, height)
    lengths = x_hi - x_lo
    keep = lengths > 0
    segment_owner, row_y, x_lo, lengths = segment_owner[keep], row_y[keep], x_lo[keep], lengths[keep]
    if lengths.numel() == 0:
        return empty, empty
    segment_gid = ids[segment_owner]
    image = torch.div(segment_gid, num_gaussians, rounding_mode="floor")
    ends = torch.cumsum(lengths, dim=0)
    # pixel id of pair k in segment s is k + offset[s]
    offset = image * (width * height) + row_y * width + x_lo - (ends - lengths)
    # int32 pair indices when everything fits: half the memory, faster sorting and gathering
    num_images = means2d.shape[0] // num_gaussians
    largest_index = max(means2d.shape[0], int(ends[-1]), num_images * width * height)
    index_dtype = torch.int32 if largest_index < 2**31 else torch.int64
    if counting_sort:
        expanded = expand_segments_by_pixel(segment_gid, offset + (ends - lengths), lengths,
                                            num_images * width * height, index_dtype)
        if expanded is not None:
            return expanded
    offset, segment_gid, lengths_i = offset.to(index_dtype), segment_gid.to(index_dtype), lengths.to(index_dtype)

    batch_of = torch.div(ends - 1, max_pairs_per_batch, rounding_mode="floor")
    _, batch_sizes = torch.unique_consecutive(batch_of, return_counts=True)
    gaussian_ids, pixel_ids = [], []
    first = 0
    for size in batch_sizes.tolist():
        segs = slice(first, first + size)
        first += size
        start = int(ends[segs.start] - lengths[segs.start])
        n_pairs = int(ends[segs.stop - 1]) - start
        segment = torch.repeat_interleave(torch.arange(segs.start, segs.stop, device=device, dtype=index_dtype),
                                          lengths_i[segs], output_size=n_pairs)
        pixel_ids.append(torch.arange(start, start + n_pairs, device=device, dtype=index_dtype)
                         + offset.index_select(0, segment))
        gaussian_ids.append(segment_gid.index_select(0, segment))
    gaussian_ids = torch.cat(gaussian_ids) if len(gaussian_ids) > 1 else gaussian_ids[0]
    pixel_ids = torch.cat(pixel_ids) if len(pixel_ids) > 1 else pixel_ids[0]
    # stable: keeps the depth order inside each pixel
    sorted_pixels, order = torch.sort(pixel_ids, stable=True)
    return gaussian_ids.index_select(0, order), sorted_pixels


def _footprint_rows(mean: Tensor, conic: Tensor, opacity: Tensor, width: int, height: int):
    """Per Gaussian and pixel row of its footprint: ``(owner, y, x_lo, x_hi)`` with pixels
    ``x_lo <= x < x_hi`` (clipped to the image) whose centres satisfy ``sigma <= L``."""
    a, b, c = conic.unbind(-1)
    log_reach = torch.log(opacity * (1.0 / ALPHA_MIN)).clamp(0.0, _MAX_LOG_REACH)  # L
    det_conic = (a * c - b * b).clamp_min(1e-300)  # = 1 / det(Sigma)
    # rows: |dy| <= sqrt(2 L Sigma_yy), Sigma_yy = a / det_conic
    half_y = torch.sqrt(2.0 * log_reach * a / det_conic) + _SLACK_PX
    y_lo = torch.ceil(mean[:, 1] - half_y - 0.5).clamp(0, height).long()
    y_hi = (torch.floor(mean[:, 1] + half_y - 0.5) + 1).clamp(0, height).long()
    rows = (y_hi - y_lo).clamp_min(0)
    owner = torch.repeat_interleave(torch.arange(mean.shape[0], device=mean.device), rows)
    starts = torch.cumsum(rows, dim=0) - rows
    y = y_lo[owner] + torch.arange(owner.numel(), device=mean.device) - starts[owner]
    # in row y: 0.5 a dx^2 + b dy dx + 0.5 c dy^2 - L <= 0 with dx = mean_x - (x + 0.5)
    dy = mean[owner, 1] - (y.double() + 0.5)
    a_o, b_o = a[owner], b[owner]
    disc = (2.0 * a_o * log_reach[owner] - dy * dy * det_conic[owner]).clamp_min(0.0)
    root = torch.sqrt(disc) / a_o
    centre = mean[owner, 0] + b_o * dy / a_o  # pixel-centre x where sigma is smallest in this row
    x_lo = torch.ceil(centre - root - _SLACK_PX - 0.5).clamp(0, width).long()
    x_hi = (torch.floor(centre + root + _SLACK_PX - 0.5) + 1).clamp(0, width).long()
    return owner, y, x_lo, x_hi
