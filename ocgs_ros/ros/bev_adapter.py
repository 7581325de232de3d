"""Loading the BEV model for the node: ``ocgs_ros.bev.inference.BevPredictor`` when the core
library provides it, else an equivalent built here from the core's checkpoint loader, input
preparation and detection decoder (same ``predict`` signature and ``BevPrediction`` fields), so the
node works with either.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class BevPrediction:
    boxes: np.ndarray  # [D, 9] x, y, z, l, w, h, yaw, vx, vy (ego frame)
    scores: np.ndarray  # [D]
    labels: np.ndarray  # [D]
    class_names: tuple[str, ...]
    map_probs: np.ndarray  # float32 [C, rows, cols]
    map_classes: tuple[str, ...]
    grid: object  # GridSpec of map_probs (x_min, x_max, y_min, y_max, resolution)
    latency_ms: float


class CheckpointBevPredictor:
    """``BevPredictor`` stand-in: a :class:`BevFusionModel` checkpoint run on one frame."""

    def __init__(self, model):
        self.model = model.eval()
        self.cfg = model.cfg

    @classmethod
    def from_checkpoint(cls, path) -> "CheckpointBevPredictor":
        from ocgs_ros.bev.checkpoint import load_checkpoint

        model, _cfg, _meta = load_checkpoint(path)
        return cls(model)

    @property
    def num_cameras(self) -> int:
        return self.cfg.num_cameras

    def predict(self, images: np.ndarray, intrinsics: np.ndarray, T_ego_cam: np.ndarray,
                points: np.ndarray) -> BevPrediction:
        import torch

        from ocgs_ros.bev.frames import crop_points, prepare_inputs
        from ocgs_ros.bev.model import BevInputs
        from ocgs_ros.bev.targets import decode_detections

        started = time.perf_counter()
        imgs, k, t, pts = prepare_inputs(images, intrinsics, T_ego_cam, crop_points(np.asarray(points), self.cfg),
                                         self.cfg)
        with torch.no_grad():
            out = self.model(BevInputs(imgs[None], k[None], t[None], [pts]))
            det = decode_detections({"heatmap": out.heatmap, "regression": out.regression}, self.cfg)[0]
            map_probs = out.map_logits[0].sigmoid().numpy().astype(np.float32)
        return BevPrediction(det["boxes"], det["scores"], det["labels"], tuple(self.cfg.box_classes), map_probs,
                             tuple(self.cfg.map_classes), self.cfg.map_grid, (time.perf_counter() - started) * 1e3)


def load_bev_predictor(path: str | Path):
    """The core's ``BevPredictor.from_checkpoint(path)`` if it exists, else :class:`CheckpointBevPredictor`."""
    try:
        from ocgs_ros.bev.inference import BevPredictor
    except ImportError:
        return CheckpointBevPredictor.from_checkpoint(path)
    return BevPredictor.from_checkpoint(path)
