"""GOCL: slot attention with a global, scene-agnostic object codebook (no ROS).

Slot 0 is always the background slot; object slots are 1..K-1. Public entry points:

* :class:`GoclConfig` (``tiny()``, ``default()``, ``gold_reference()``, ``from_dict``)
* :class:`GoclModel` (training forward) and :func:`gocl_loss` (unsupervised loss terms)
* :class:`GoclSegmenter` / :class:`SegmentationResult` (inference API for the mapper)
* :func:`save_checkpoint`, :func:`load_checkpoint`, :class:`CheckpointError`
* :func:`build_optimizer`, :func:`train_step`, :func:`gumbel_tau`
* metrics in :mod:`ocgs_ros.ocl.metrics`
"""
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .codebook import GlobalCodebook
from .config import GoclConfig
from .losses import gocl_loss
from .model import BACKGROUND_SLOT, GoclModel, GoclOutput
from .optim import build_optimizer, train_step
from .schedules import gumbel_tau, warmup_factor
from .segment import BACKGROUND_CODE, GoclSegmenter, SegmentationResult

__all__ = [
    "BACKGROUND_CODE", "BACKGROUND_SLOT", "CheckpointError", "GlobalCodebook", "GoclConfig",
    "GoclModel", "GoclOutput", "GoclSegmenter", "SegmentationResult", "build_optimizer",
    "gocl_loss", "gumbel_tau", "load_checkpoint", "save_checkpoint", "train_step", "warmup_factor",
]
