"""Pinhole intrinsics under the project convention (pixel centres at integer coordinates,
docs/conventions.md) when an image is resized — shared by the ROS adapters, the BEV model's input
path and the demo report, so every resize moves K the same way."""
from __future__ import annotations

import cv2
import numpy as np


def scale_intrinsics(K: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """``K`` (``[..., 3, 3]``) after resizing the image by ``sx`` in width and ``sy`` in height.

    A scale ``s`` maps ``u -> (u + 0.5) s - 0.5``, so ``fx' = s fx``, ``skew' = sx skew`` and
    ``cx' = s (cx + 0.5) - 0.5``.
    """
    out = np.array(K, dtype=np.float64, copy=True)
    out[..., 0, 0] *= sx
    out[..., 0, 1] *= sx
    out[..., 0, 2] = sx * (out[..., 0, 2] + 0.5) - 0.5
    out[..., 1, 1] *= sy
    out[..., 1, 2] = sy * (out[..., 1, 2] + 0.5) - 0.5
    return out


def resize_image(rgb: np.ndarray, K: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Resize ``rgb`` ``[H, W, C]`` to ``width x height`` (area filter when shrinking both ways,
    bilinear otherwise) and return it with the matching intrinsics (float64)."""
    h, w = rgb.shape[:2]
    if (w, h) == (width, height):
        return rgb, np.asarray(K, dtype=np.float64)
    sx, sy = width / w, height / h
    interpolation = cv2.INTER_AREA if sx < 1 and sy < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(np.ascontiguousarray(rgb), (width, height), interpolation=interpolation)
    return resized, scale_intrinsics(K, sx, sy)
