"""Geometry of one input frame: rigid transforms of point sets, the camera-view crop and the
per-frame point budget (used by the pipeline and by the ROS adapters alike)."""
from __future__ import annotations

import numpy as np


def transform_points(T: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply ``T`` [4, 4] to the xyz columns of ``points`` [N, 3+k] (extra columns and dtype kept)."""
    out = points.copy()
    out[:, :3] = (points[:, :3].astype(np.float64) @ T[:3, :3].T + T[:3, 3]).astype(points.dtype)
    return out


def in_view(points_cam: np.ndarray, K: np.ndarray, width: int, height: int, min_depth: float = 1e-3) -> np.ndarray:
    """Mask of the camera-frame points that project inside a ``width`` x ``height`` image."""
    z = points_cam[:, 2]
    front = z > min_depth
    with np.errstate(divide="ignore", invalid="ignore"):
        u = K[0, 0] * points_cam[:, 0] / z + K[0, 2]
        v = K[1, 1] * points_cam[:, 1] / z + K[1, 2]
    return front & (u >= -0.5) & (u < width - 0.5) & (v >= -0.5) & (v < height - 0.5)


def subsample_points(points: np.ndarray, max_points: int, rng: np.random.Generator) -> np.ndarray:
    """At most ``max_points`` rows of ``points`` (a random subset in the original order; 0 = all):
    bounded work per frame."""
    if not max_points or len(points) <= max_points:
        return points
    return points[np.sort(rng.choice(len(points), max_points, replace=False))]
