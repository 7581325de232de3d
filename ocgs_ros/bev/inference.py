"""Inference API of the BEV model for the ROS node (numpy in, numpy out, no ROS).

    predictor = BevPredictor.from_checkpoint(ocgs_ros.models.BEV_DRIVING)
    pred = predictor.predict(images, intrinsics, T_ego_cam, points)
    pred.boxes, pred.scores, pred.labels, pred.map_probs, pred.grid, pred.latency_ms

Images of another size or aspect ratio than the model's (whose input size comes from the
checkpoint) are fitted without distortion by the project's policy, ``fit="crop"`` (default) or
``"letterbox"`` (``ocgs_ros.image_fit``, ``K`` moved, ``frames.fit_images``);
points outside the detection grid are ignored. Wrong shapes, dtypes or NaNs raise ``ValueError``.
"""
from __future__ import annotations

import copy
import os
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .checkpoint import load_checkpoint
from .config import BevConfig, GridSpec
from ..image_fit import DEFAULT_FIT, check_policy
from .frames import crop_points, prepare_inputs
from .model import BevFusionModel, BevInputs
from .targets import decode_detections


@dataclass
class BevPrediction:
    """Detections and map of one frame, ego frame (docs/conventions.md).

    ``boxes [D, 9]`` (x, y, z, l, w, h, yaw, vx, vy), ``scores [D]``, ``labels [D]`` (index into
    ``class_names``), ``map_probs`` float32 ``[len(map_classes), rows, cols]`` on ``grid`` (row =
    x bin, col = y bin), ``latency_ms`` from input checks to decoded output.
    """

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    map_probs: np.ndarray
    map_classes: tuple[str, ...]
    grid: GridSpec
    latency_ms: float


def _fold_sequence(seq: nn.Sequential) -> nn.Sequential:
    layers, out, i = list(seq), [], 0
    while i < len(layers):
        layer = layers[i]
        if isinstance(layer, nn.Conv2d) and i + 1 < len(layers) and isinstance(layers[i + 1], nn.BatchNorm2d):
            out.append(fuse_conv_bn_eval(layer, layers[i + 1]))
            i += 2
            continue
        out.append(_fold_sequence(layer) if isinstance(layer, nn.Sequential) else fold_batchnorm(layer))
        i += 1
    return nn.Sequential(*out)


def fold_batchnorm(module: nn.Module) -> nn.Module:
    """Fold every ``Conv2d -> BatchNorm2d`` pair inside the (eval-mode) module's ``nn.Sequential``s
    into one conv, in place. Exact up to float rounding; saves the BN passes at inference."""
    for name, child in module.named_children():
        setattr(module, name, _fold_sequence(child) if isinstance(child, nn.Sequential) else fold_batchnorm(child))
    return module


class BevPredictor:
    """A BEV model in eval mode with the pre/post-processing of training.

    ``fuse_bn`` (default) runs a copy of the model with BatchNorm folded into the convolutions;
    ``fit`` is how camera images reach the model's input size ("crop" or "letterbox").
    """

    def __init__(self, model: BevFusionModel, device: str | torch.device = "cpu", fuse_bn: bool = True,
                 fit: str = DEFAULT_FIT) -> None:
        self.fit = check_policy(fit)
        self.device = torch.device(device)
        model = model.to(self.device).eval()
        self.model = fold_batchnorm(copy.deepcopy(model)).eval() if fuse_bn else model
        self.config: BevConfig = model.cfg

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, device: str | torch.device = "cpu",
                        fit: str = DEFAULT_FIT) -> "BevPredictor":
        """Load a BEV checkpoint (``weights_only=True``; ``CheckpointError`` if unusable)."""
        model, _, _ = load_checkpoint(path, map_location=device)
        return cls(model, device, fit=fit)

    @property
    def num_cameras(self) -> int:
        return self.config.num_cameras

    @torch.inference_mode()
    def predict(self, images: np.ndarray, intrinsics: np.ndarray, T_ego_cam: np.ndarray,
                points: np.ndarray) -> BevPrediction:
        """``images`` uint8 ``[N, H, W, 3]`` RGB, ``intrinsics [N, 3, 3]``, ``T_ego_cam [N, 4, 4]``
        (camera optical frame -> ego), ``points`` float32 ``[P, 4]`` (x, y, z, intensity, ego)."""
        start = time.perf_counter()
        cfg = self.config
        pts = np.asarray(points)
        if pts.ndim == 2 and pts.shape[1] == 4 and np.issubdtype(pts.dtype, np.floating) and np.isfinite(pts).all():
            pts = crop_points(pts.astype(np.float32, copy=False), cfg)
        img, k, t, p = prepare_inputs(images, intrinsics, T_ego_cam, pts, cfg, self.fit)
        inputs = BevInputs(img[None].to(self.device), k[None].to(self.device), t[None].to(self.device),
                           [p.to(self.device)])
        out = self.model(inputs)
        det = decode_detections({"heatmap": out.heatmap, "regression": out.regression}, cfg)[0]
        map_probs = out.map_logits[0].sigmoid().float().cpu().numpy()
        return BevPrediction(boxes=det["boxes"], scores=det["scores"], labels=det["labels"].astype(np.int64),
                             class_names=tuple(cfg.box_classes), map_probs=map_probs,
                             map_classes=tuple(cfg.map_classes), grid=cfg.map_grid,
                             latency_ms=(time.perf_counter() - start) * 1000.0)
