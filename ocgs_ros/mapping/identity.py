"""Identity sources of the pipeline: per-pixel logits over {background, codebook entry 0..M-1} for
an image. Any object with ``num_entries`` and ``pixel_logits(rgb uint8 [H, W, 3]) -> torch
[M+1, H, W] or None`` is one; GOCL's codebook is the method, raw slot indices the evaluator's
baseline.

Pixels of the view that GOCL did not see (cropped away by the fit policy when the view's aspect
differs from the model's square input) get the uniform distribution, "unknown": the mapper's hard
targets ignore them (confidence 1/(M+1) is below its threshold) and its soft targets pull nothing
towards the background there, which would erase objects standing at the view's edges.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from ocgs_ros import models
from ocgs_ros.image_fit import DEFAULT_FIT
from ocgs_ros.mapping.config import NO_CHECKPOINT, SHIPPED_CHECKPOINT, GoclConfig
from ocgs_ros.ocl.checkpoint import load_checkpoint
from ocgs_ros.ocl.segment import PIXEL_PROB_FLOOR, GoclSegmenter


def load_segmenter(config: GoclConfig, fit: str = DEFAULT_FIT) -> GoclSegmenter | None:
    """The GOCL segmenter ``config`` names (None for ``checkpoint: none``), fitting images to its
    input by ``fit`` (``ocgs_ros.image_fit``).

    Raises ValueError with one line naming the checkpoint when it cannot be used.
    """
    if config.checkpoint == NO_CHECKPOINT:
        return None
    try:
        path = (models.shipped_checkpoint("gocl") if config.checkpoint in ("", SHIPPED_CHECKPOINT)
                else Path(config.checkpoint))
        model, _config, _meta = load_checkpoint(path)
        model.eval()
        return GoclSegmenter(model, mask_temperature=config.mask_temperature, flip_average=config.flip_average,
                             fit=fit)
    except Exception as exc:  # noqa: BLE001 - any unusable checkpoint is one configuration error
        detail = " ".join(str(exc).split())
        raise ValueError(f"gocl.checkpoint {config.checkpoint!r} cannot be used: "
                         f"{type(exc).__name__}: {detail}") from exc


def image_tensor(rgb: np.ndarray) -> torch.Tensor:
    """uint8 ``[H, W, 3]`` -> float32 ``[1, 3, H, W]`` in [0, 1] (GoclSegmenter's input)."""
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float().div_(255.0)


class GoclIdentity:
    """GOCL's per-pixel codebook distribution: the same entry names the same kind of object in
    every view and every scene."""

    name = "gocl"

    def __init__(self, segmenter: GoclSegmenter):
        self.segmenter = segmenter
        self.num_entries = segmenter.model.config.codebook_size

    def pixel_logits(self, rgb: np.ndarray) -> torch.Tensor:
        result = self.segmenter.segment(image_tensor(rgb))
        return unknown_where_unseen(result.pixel_codebook_logits[0], result.seen[0])


class SlotIndexIdentity:
    """The baseline: GOCL's own soft masks with class = slot index (slot 0 is the background), what
    a slot model without a global codebook offers before any mask association. ``num_entries``
    matches the codebook map's, so both maps have the same identity head."""

    name = "slot_index"

    def __init__(self, segmenter: GoclSegmenter, num_entries: int | None = None):
        self.segmenter = segmenter
        self.num_entries = segmenter.model.config.codebook_size if num_entries is None else int(num_entries)

    def pixel_logits(self, rgb: np.ndarray) -> torch.Tensor:
        result = self.segmenter.segment(image_tensor(rgb))
        return unknown_where_unseen(slot_index_logits(result.masks[0], self.num_entries + 1), result.seen[0])


def unknown_where_unseen(logits: torch.Tensor, seen: torch.Tensor) -> torch.Tensor:
    """``logits`` ``[C, H, W]`` with the uniform distribution where ``seen`` ``[H, W]`` is False."""
    if bool(seen.all()):
        return logits
    return torch.where(seen[None], logits, torch.full_like(logits, -math.log(logits.shape[0])))


def slot_index_logits(masks: torch.Tensor, channels: int) -> torch.Tensor:
    """Soft masks ``[K, H, W]`` (slot 0 = background) as log-probabilities over ``channels``
    classes with class = slot index — no codebook."""
    if masks.shape[0] > channels:
        raise ValueError(f"{masks.shape[0]} slots do not fit in {channels} identity channels")
    probs = torch.full((channels, *masks.shape[1:]), PIXEL_PROB_FLOOR)
    probs[:masks.shape[0]] = masks.clamp_min(PIXEL_PROB_FLOOR)
    return probs.log()


def identity_from_config(config: GoclConfig, fit: str = DEFAULT_FIT):
    """The identity source ``config`` names: :class:`GoclIdentity`, or None (no identities)."""
    segmenter = load_segmenter(config, fit)
    return None if segmenter is None else GoclIdentity(segmenter)
