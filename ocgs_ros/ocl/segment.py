"""Inference API used by the mapper: images in, object masks + codebook identities out.

Layouts (K = num_object_slots + 1 slots, M = codebook_size entries):

* ``masks`` ``[B, K, H, W]`` float32, soft, sum to 1 over K. **Slot 0 is the background.**
* ``slot_codebook_ids`` ``[B, K]`` int64: codebook entry (0..M-1) of each object slot's argmax pi;
  **the background slot is -1** (``BACKGROUND_CODE``).
* ``slot_codebook_probs`` ``[B, K, M]`` float32: pi per slot; the background row is all zeros.
* ``slot_confidence`` ``[B, K]`` float32 in [0, 1]: ``max(pi) * presence`` where presence is the
  slot's peak mask value (~1 when the slot clearly owns some pixel, ~0 for an empty slot);
  background: presence only.
* ``pixel_codebook_logits`` ``[B, M + 1, H, W]`` float32: log of the per-pixel distribution over
  {background, entry 0, ..., entry M-1}. **Channel 0 = background, channel c = entry c - 1** —
  i.e. channel = ``slot_codebook_ids + 1``. Probability of entry m at a pixel is
  ``sum_k masks_k * pi_k[m]`` over object slots; background channel is the background mask. The
  channels are log-probabilities (logsumexp over channels = 0), floored at log(1e-8).

Mask temperature: the masks are ``softmax(alpha_logits / mask_temperature)`` over slots. The
argmax — the hard segmentation that FG-ARI/mIoU score — does not depend on it; the soft masks do.
A trained model leaves a little alpha of every object slot on the table, so at temperature 1 about
half of the background pixels (48.8 % on the validation set, seed 2) have P(background) < 0.5 even
though the background slot wins them (94.6 %), and the mapper, which trains Gaussians on these
per-pixel distributions, turns the table into objects. The default 0.5 (chosen on the validation
set) brings that to 7 %, while object pixels with P(background) >= 0.5 rise from 2 % to 15 % —
mostly the objects the hard segmentation already gives to the background. ``1.0`` gives the
model's own masks.

Flip averaging (``flip_average``, on by default): ``pixel_codebook_logits`` are the log of the mean of
the per-pixel distributions of the image and of its mirror image (mirrored back). GOCL is trained
with horizontal flips, so both are equally valid decompositions; their average has steadier
object boundaries and fewer small objects left to the background. On the Gaussian map's dev scenes
(dataset seed 5) it raised cross-view consistency from 0.81 to 0.86 and instance recall from
0.88 to 0.96 (docs/gaussian_map.md). It costs a second forward pass. ``masks``,
``slot_codebook_ids``, ``slot_codebook_probs`` and ``slot_confidence`` are those of the image
itself: slots of two passes do not correspond.

Any input size and aspect ratio is accepted, without distortion: images are fitted to the
model's (square) input by the project's fit policy (:mod:`ocgs_ros.image_fit`, ``fit``: centre-crop
by default, or letterbox), and masks and pixel probabilities are mapped back (bilinear, which keeps
them summing to 1) before the log is taken — to the input's own grid by default, i.e. the
processing resolution the caller chose, or to ``output_size`` when asked (e.g. a camera's full
resolution; resizing 33 channels to 1600x900 costs about a second, so only on request). Pixels the
model did not see (cropped away) are background in ``masks`` and ``pixel_codebook_logits`` and
False in ``seen``; callers that must not read them as background (the mapper) use ``seen``.
Letterbox bars are dropped. A square input is a plain resize under either policy, as before.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ocgs_ros.image_fit import DEFAULT_FIT, check_policy, fit_tensor, plan_fit, unfit_tensor

from .model import BACKGROUND_SLOT, GoclModel

BACKGROUND_CODE = -1
PIXEL_PROB_FLOOR = 1e-8
DEFAULT_MASK_TEMPERATURE = 0.5
# Inputs may overshoot [0, 1] by float error from upstream conversions; more than this is a bug.
RANGE_TOLERANCE = 1e-3


@dataclass
class SegmentationResult:
    masks: torch.Tensor  # float32 [B, K, H, W]; slot 0 = background
    slot_codebook_ids: torch.Tensor  # int64 [B, K]; background slot = -1
    slot_codebook_probs: torch.Tensor  # float32 [B, K, M]; background row = 0
    slot_confidence: torch.Tensor  # float32 [B, K]
    pixel_codebook_logits: torch.Tensor  # float32 [B, M+1, H, W]; channel 0 = background
    seen: torch.Tensor | None = None  # bool [B, H, W]: pixels the model saw (False = cropped away)

    @staticmethod
    def channel_of_code(code: int) -> int:
        """Channel of ``pixel_codebook_logits`` holding codebook entry ``code`` (-1 = background)."""
        return int(code) + 1


def _background_only(channels: int, device: torch.device) -> torch.Tensor:
    """``[channels]``: all mass on channel 0 (the background slot / background channel)."""
    fill = torch.zeros(channels, device=device)
    fill[0] = 1.0
    return fill


class GoclSegmenter:
    """Deterministic segmentation with a trained :class:`GoclModel` (eval mode, no gradients)."""

    def __init__(self, model: GoclModel, mask_temperature: float = DEFAULT_MASK_TEMPERATURE,
                 flip_average: bool = True, fit: str = DEFAULT_FIT):
        if not isinstance(model, GoclModel):
            raise TypeError(f"GoclSegmenter needs a GoclModel, got {type(model).__name__}")
        if not mask_temperature > 0:
            raise ValueError(f"mask_temperature must be > 0, got {mask_temperature}")
        self.model = model
        self.mask_temperature = float(mask_temperature)
        self.flip_average = bool(flip_average)
        self.fit = check_policy(fit)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @staticmethod
    def check_images(images: torch.Tensor) -> None:
        """Raise unless ``images`` is a float32 ``[B, 3, H, W]`` tensor with finite values in [0, 1]."""
        if not isinstance(images, torch.Tensor):
            raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}")
        if images.dtype != torch.float32:
            hint = " (divide uint8 images by 255)" if images.dtype == torch.uint8 else ""
            raise TypeError(f"images must be float32 in [0, 1], got {images.dtype}{hint}")
        if images.dim() != 4 or images.shape[1] != 3 or images.shape[0] == 0:
            raise ValueError(f"images must have shape [B>0, 3, H, W], got {list(images.shape)}")
        if not torch.isfinite(images).all():
            raise ValueError("images contain NaN or inf")
        low, high = float(images.min()), float(images.max())
        if low < -RANGE_TOLERANCE or high > 1.0 + RANGE_TOLERANCE:
            raise ValueError(f"images must be in [0, 1], got values in [{low:.4g}, {high:.4g}]")

    def _masks_and_pixel_probs(self, output) -> tuple[torch.Tensor, torch.Tensor]:
        """Soft masks ``[B, K, h, w]`` at the mask temperature and per-pixel probabilities
        ``[B, M+1, h, w]`` over {background, entries} of one forward pass."""
        masks = (output.alpha_logits / self.mask_temperature).softmax(dim=1)
        object_masks = masks[:, BACKGROUND_SLOT + 1:]
        pixel_probs = torch.cat([masks[:, BACKGROUND_SLOT:BACKGROUND_SLOT + 1],
                                 torch.einsum("bkhw,bkm->bmhw", object_masks, output.codebook_probs)], dim=1)
        return masks, pixel_probs

    @torch.no_grad()
    def segment(self, images: torch.Tensor, output_size: tuple[int, int] | None = None) -> SegmentationResult:
        """Segment ``images`` (float32 ``[B, 3, H, W]`` in [0, 1], any H, W); outputs on the
        model's device at the input's H, W, or at ``output_size`` ``(h, w)`` (a grid covering the
        same field of view, e.g. the camera's full resolution). The model's train/eval mode is
        restored afterwards."""
        self.check_images(images)
        if output_size is not None:
            output_size = (int(output_size[0]), int(output_size[1]))
            if min(output_size) <= 0:
                raise ValueError(f"output_size must be (height > 0, width > 0), got {output_size}")
        model = self.model
        cfg = model.config
        fit = plan_fit(images.shape[-2:], (cfg.image_height, cfg.image_width), self.fit)
        was_training = model.training
        model.eval()
        try:
            x = fit_tensor(images.to(self.device).clamp(0.0, 1.0), fit)
            # the passes themselves without autograd's version counters (~14 % of a 48x48 pass, which is
            # many small ops); what is returned is computed below, outside, as ordinary tensors that
            # callers may keep and use as training targets
            with torch.inference_mode():
                output = model(x)
                mirrored = model(x.flip(-1)) if self.flip_average else None
        finally:
            model.train(was_training)

        masks, pixel_probs = self._masks_and_pixel_probs(output)
        if mirrored is not None:
            pixel_probs = 0.5 * (pixel_probs + self._masks_and_pixel_probs(mirrored)[1].flip(-1))
        probs = output.codebook_probs  # [B, Ko, M]
        batch = masks.shape[0]
        presence = masks.flatten(2).amax(dim=-1)  # [B, K]
        best_prob, best_code = probs.max(dim=-1)  # [B, Ko]
        background_column = torch.full((batch, 1), BACKGROUND_CODE, dtype=torch.int64, device=masks.device)
        slot_ids = torch.cat([background_column, best_code.to(torch.int64)], dim=1)
        confidence = presence * torch.cat([torch.ones_like(best_prob[:, :1]), best_prob], dim=1)
        slot_probs = torch.cat([torch.zeros_like(probs[:, :1]), probs], dim=1)

        masks = unfit_tensor(masks, fit, _background_only(masks.shape[1], masks.device), output_size)
        masks = masks / masks.sum(dim=1, keepdim=True)
        pixel_probs = unfit_tensor(pixel_probs, fit, _background_only(pixel_probs.shape[1], masks.device), output_size)
        pixel_probs = pixel_probs / pixel_probs.sum(dim=1, keepdim=True)
        pixel_logits = pixel_probs.clamp_min(PIXEL_PROB_FLOOR).log()
        seen = torch.from_numpy(fit.seen(output_size)).to(masks.device).expand(batch, -1, -1)
        return SegmentationResult(
            masks=masks.float().contiguous(), slot_codebook_ids=slot_ids,
            slot_codebook_probs=slot_probs.float(), slot_confidence=confidence.float(),
            pixel_codebook_logits=pixel_logits.float().contiguous(), seen=seen,
        )
