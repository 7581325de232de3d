"""One policy for bringing an image of any size and aspect ratio to a model's or a map's size
without distortion, shared by GOCL, the object map and the BEV camera branch.

Policies (``FIT_POLICIES``):

* ``"crop"`` (default): scale so the target is covered, cut the overflow symmetrically. Every
  target pixel sees the scene at the source's own aspect ratio; the source's margins are not seen.
* ``"letterbox"``: scale so the whole source fits inside the target, pad the rest with bars
  (``fill``). Nothing of the source is lost; the bars carry no scene content.

An :class:`ImageFit` records what was done — which box of the source was kept and where it landed
in the target — so that:

* intrinsics move with it (:meth:`ImageFit.move_intrinsics`: scale and principal-point shift, under
  the project convention of pixel centres at integer coordinates, docs/conventions.md);
* per-pixel outputs computed on the target (masks, class distributions) can be placed back on the
  source's pixel grid, or on any grid of the same field of view (:meth:`ImageFit.unfit`,
  :func:`unfit_tensor`): source pixels that were cropped away get a caller-chosen ``fill`` (the
  model never saw them: "unknown" or "background"), and letterbox bars are dropped.

When source and target have the same aspect ratio both policies are a plain resize, so models
that run at their training camera's aspect behave exactly as before this policy existed.
Images go through OpenCV (area filter when shrinking); tensors of per-pixel outputs through
:func:`torch.nn.functional.interpolate` (bilinear, which keeps distributions summing to 1).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ocgs_ros.camera import scale_intrinsics

CROP = "crop"
LETTERBOX = "letterbox"
FIT_POLICIES = (CROP, LETTERBOX)
DEFAULT_FIT = CROP


@dataclass(frozen=True)
class Box:
    """An axis-aligned block of whole pixels: columns ``x .. x + width - 1``, rows ``y .. y + height - 1``."""

    x: int
    y: int
    width: int
    height: int

    @property
    def slices(self) -> tuple[slice, slice]:
        """(rows, columns) slices of this box."""
        return slice(self.y, self.y + self.height), slice(self.x, self.x + self.width)


@dataclass(frozen=True)
class ImageFit:
    """How a ``source_size`` image became a ``target_size`` one (sizes are ``(height, width)``):
    ``source_box`` of the source was scaled onto ``target_box`` of the target."""

    source_size: tuple[int, int]
    target_size: tuple[int, int]
    source_box: Box
    target_box: Box

    @property
    def scale(self) -> tuple[float, float]:
        """(sx, sy): target pixels per source pixel."""
        return self.target_box.width / self.source_box.width, self.target_box.height / self.source_box.height

    @property
    def is_plain_resize(self) -> bool:
        """True when the whole source fills the whole target (no crop, no bars)."""
        return (self.source_box == Box(0, 0, self.source_size[1], self.source_size[0])
                and self.target_box == Box(0, 0, self.target_size[1], self.target_size[0]))

    def move_intrinsics(self, K: np.ndarray) -> np.ndarray:
        """``K`` (``[..., 3, 3]``) of the target image, float64: the principal point shifted to the
        kept box, scaled with it, then shifted to where the box landed."""
        sx, sy = self.scale
        out = np.array(K, dtype=np.float64, copy=True)
        out[..., 0, 2] -= self.source_box.x
        out[..., 1, 2] -= self.source_box.y
        out = scale_intrinsics(out, sx, sy)
        out[..., 0, 2] += self.target_box.x
        out[..., 1, 2] += self.target_box.y
        return out

    def to_target(self, u, v) -> tuple[np.ndarray, np.ndarray]:
        """Source pixel coordinates -> target pixel coordinates (the map ``move_intrinsics`` applies)."""
        sx, sy = self.scale
        return ((np.asarray(u, dtype=np.float64) - self.source_box.x + 0.5) * sx - 0.5 + self.target_box.x,
                (np.asarray(v, dtype=np.float64) - self.source_box.y + 0.5) * sy - 0.5 + self.target_box.y)

    def to_source(self, u, v) -> tuple[np.ndarray, np.ndarray]:
        """Target pixel coordinates -> source pixel coordinates (inverse of :meth:`to_target`)."""
        sx, sy = self.scale
        return ((np.asarray(u, dtype=np.float64) - self.target_box.x + 0.5) / sx - 0.5 + self.source_box.x,
                (np.asarray(v, dtype=np.float64) - self.target_box.y + 0.5) / sy - 0.5 + self.source_box.y)

    def apply(self, image: np.ndarray, interpolation: int | None = None, fill=0) -> np.ndarray:
        """``image`` ``[H, W]`` or ``[H, W, C]`` at ``source_size`` -> the target image. Default
        interpolation: area when shrinking both ways, bilinear otherwise (``cv2.INTER_NEAREST_EXACT``
        for labels or depth: it samples at pixel centres, where ``INTER_NEAREST`` is off by up to
        a source pixel); bars are ``fill``."""
        if tuple(image.shape[:2]) != tuple(self.source_size):
            raise ValueError(f"ImageFit.apply: image is {list(image.shape[:2])}, this fit is for "
                             f"{list(self.source_size)}")
        if interpolation is None:
            sx, sy = self.scale
            interpolation = cv2.INTER_AREA if sx < 1 and sy < 1 else cv2.INTER_LINEAR
        box = self.target_box
        kept = np.ascontiguousarray(image[self.source_box.slices])
        if (kept.shape[1], kept.shape[0]) != (box.width, box.height):
            kept = cv2.resize(kept, (box.width, box.height), interpolation=interpolation)
            if image.ndim == 3 and kept.ndim == 2:  # cv2 drops a single channel axis
                kept = kept[..., None]
        if box == Box(0, 0, self.target_size[1], self.target_size[0]):
            return kept
        out = np.empty((*self.target_size, *image.shape[2:]), dtype=image.dtype)
        out[...] = fill
        out[box.slices] = kept
        return out

    def output_box(self, output_size: tuple[int, int] | None = None) -> Box:
        """Where ``source_box`` lies on an ``output_size`` grid covering the source's field of view
        (default: the source grid itself); edges rounded to whole pixels."""
        height, width = self.source_size if output_size is None else output_size
        ky, kx = height / self.source_size[0], width / self.source_size[1]
        b = self.source_box
        x0, x1 = round(b.x * kx), round((b.x + b.width) * kx)
        y0, y1 = round(b.y * ky), round((b.y + b.height) * ky)
        return Box(x0, y0, max(1, x1 - x0), max(1, y1 - y0))

    def seen(self, output_size: tuple[int, int] | None = None) -> np.ndarray:
        """bool ``[h, w]`` on the output grid: the pixels the target covers (False = cropped away)."""
        mask = np.zeros(self.source_size if output_size is None else output_size, dtype=bool)
        mask[self.output_box(output_size).slices] = True
        return mask

    def unfit(self, values: np.ndarray, fill=0, output_size: tuple[int, int] | None = None,
              interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
        """Per-pixel ``values`` ``[th, tw]`` or ``[th, tw, C]`` on the target -> the source grid (or an
        ``output_size`` grid of the same field of view): bars dropped, cropped-away pixels ``fill``."""
        if tuple(values.shape[:2]) != tuple(self.target_size):
            raise ValueError(f"ImageFit.unfit: values are {list(values.shape[:2])}, this fit's target is "
                             f"{list(self.target_size)}")
        out_box = self.output_box(output_size)
        content = np.ascontiguousarray(values[self.target_box.slices])
        if (content.shape[1], content.shape[0]) != (out_box.width, out_box.height):
            resized = cv2.resize(content, (out_box.width, out_box.height), interpolation=interpolation)
            content = resized[..., None] if values.ndim == 3 and resized.ndim == 2 else resized
        out = np.empty((*(self.source_size if output_size is None else output_size), *values.shape[2:]),
                       dtype=values.dtype)
        out[...] = fill
        out[out_box.slices] = content
        return out


def check_policy(policy: str) -> str:
    """``policy`` if it names a fit policy, else ValueError naming the choices."""
    if policy not in FIT_POLICIES:
        raise ValueError(f"unknown fit policy {policy!r}; choose one of {', '.join(FIT_POLICIES)}")
    return policy


def plan_resize(source_size: tuple[int, int], target_size: tuple[int, int]) -> ImageFit:
    """The whole source onto the whole target (a plain resize; the aspect ratio changes unless
    the sizes share it)."""
    (sh, sw), (th, tw) = _size(source_size), _size(target_size)
    return ImageFit((sh, sw), (th, tw), Box(0, 0, sw, sh), Box(0, 0, tw, th))


def plan_fit(source_size: tuple[int, int], target_size: tuple[int, int], policy: str = DEFAULT_FIT) -> ImageFit:
    """How to fit a ``source_size`` image to ``target_size`` (both ``(height, width)``) by ``policy``."""
    (sh, sw), (th, tw) = _size(source_size), _size(target_size)
    if check_policy(policy) == CROP:
        if sw * th > tw * sh:  # source wider than the target: cut columns
            width = min(sw, max(1, round(sh * tw / th)))
            return ImageFit((sh, sw), (th, tw), Box((sw - width) // 2, 0, width, sh), Box(0, 0, tw, th))
        height = min(sh, max(1, round(sw * th / tw)))
        return ImageFit((sh, sw), (th, tw), Box(0, (sh - height) // 2, sw, height), Box(0, 0, tw, th))
    scale = min(tw / sw, th / sh)
    width, height = min(tw, max(1, round(sw * scale))), min(th, max(1, round(sh * scale)))
    return ImageFit((sh, sw), (th, tw), Box(0, 0, sw, sh), Box((tw - width) // 2, (th - height) // 2, width, height))


def fit_image(image: np.ndarray, K: np.ndarray, width: int, height: int, policy: str = DEFAULT_FIT
              ) -> tuple[np.ndarray, np.ndarray, ImageFit]:
    """``image`` ``[H, W, C]`` fitted to ``width x height`` by ``policy`` (black bars), the moved
    intrinsics (float64) and the :class:`ImageFit` that maps outputs back."""
    fit = plan_fit(image.shape[:2], (height, width), policy)
    return fit.apply(image), fit.move_intrinsics(K), fit


def _size(size) -> tuple[int, int]:
    height, width = (int(s) for s in size)
    if height <= 0 or width <= 0:
        raise ValueError(f"image sizes must be positive, got {height}x{width} (height x width)")
    return height, width


# -- tensors of per-pixel values ([B, C, H, W]) ---------------------------------------------------
def resize_tensor(tensor: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of ``[B, C, H, W]`` to ``size`` (antialiased when shrinking); a no-op at size."""
    if tuple(tensor.shape[-2:]) == tuple(size):
        return tensor
    downsampling = size[0] < tensor.shape[-2] or size[1] < tensor.shape[-1]
    return F.interpolate(tensor, size=tuple(size), mode="bilinear", align_corners=False, antialias=downsampling)


def fit_tensor(images: torch.Tensor, fit: ImageFit, fill: float = 0.0) -> torch.Tensor:
    """``[B, C, H, W]`` at ``fit.source_size`` -> ``[B, C, th, tw]`` (bars ``fill``)."""
    rows, cols = fit.source_box.slices
    box = fit.target_box
    kept = resize_tensor(images[..., rows, cols], (box.height, box.width))
    if box.width == fit.target_size[1] and box.height == fit.target_size[0]:
        return kept
    pad = (box.x, fit.target_size[1] - box.x - box.width, box.y, fit.target_size[0] - box.y - box.height)
    return F.pad(kept, pad, value=fill)


def unfit_tensor(values: torch.Tensor, fit: ImageFit, fill: torch.Tensor,
                 output_size: tuple[int, int] | None = None) -> torch.Tensor:
    """``[B, C, th, tw]`` on the target -> ``[B, C, h, w]`` on the source grid (or ``output_size``):
    bars dropped, cropped-away pixels set to ``fill`` (``[C]``, e.g. "all background")."""
    out_box = fit.output_box(output_size)
    rows, cols = fit.target_box.slices
    content = resize_tensor(values[..., rows, cols], (out_box.height, out_box.width))
    size = tuple(fit.source_size if output_size is None else output_size)
    if (out_box.x, out_box.y, out_box.height, out_box.width) == (0, 0, *size):
        return content
    out = fill.to(values.dtype).view(1, -1, 1, 1).expand(values.shape[0], -1, *size).clone()
    out[..., out_box.slices[0], out_box.slices[1]] = content
    return out
