"""Pinhole camera helpers under the project convention (pixel centres at integer coordinates,
docs/conventions.md): intrinsics when an image is resized — shared by the ROS adapters, the BEV
model's input path and the demo report, so every resize moves K the same way — and depth images
(resizing, back-projection: the mapper's depth-camera input)."""
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


def resize_depth(depth: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize a depth image ``[H, W]`` to ``width x height`` by nearest neighbour: interpolating
    across a depth edge would invent surfaces between foreground and background."""
    if depth.shape[:2] == (height, width):
        return depth
    return cv2.resize(np.ascontiguousarray(depth), (width, height), interpolation=cv2.INTER_NEAREST)


def backproject_depth(depth: np.ndarray, K: np.ndarray, T_world_cam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World points ``[P, 3]`` of the valid pixels of a z-depth image ``[H, W]`` (metres; 0, negative
    or non-finite = no return) and those pixels' flat indices ``[P]`` (row-major)."""
    depth = np.asarray(depth, dtype=np.float64)
    if depth.ndim != 2:
        raise ValueError(f"depth must be [H, W], got shape {depth.shape}")
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(depth) & (depth > 0)
    flat = np.flatnonzero(valid)
    v, u = np.divmod(flat, depth.shape[1])
    z = depth.reshape(-1)[flat]
    rays = np.linalg.solve(np.asarray(K, dtype=np.float64), np.stack([u, v, np.ones_like(u)]).astype(np.float64))
    points_cam = (rays * z).T
    T = np.asarray(T_world_cam, dtype=np.float64)
    return points_cam @ T[:3, :3].T + T[:3, 3], flat
