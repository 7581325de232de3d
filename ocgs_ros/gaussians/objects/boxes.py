"""Box geometry of map objects: oriented (gravity-aligned or full PCA) and axis-aligned boxes over
Gaussians, and the Gaussians' covariances in the map frame.

Boxes cover each Gaussian's centre +- ``box_sigma`` standard deviations (a Gaussian is a surface
patch, not a point), with the outermost ``box_trim`` fraction per face ignored and a Gaussian
reaching further than ``box_extent_ratio`` times its object's median reach counted at the median. The oriented box is
gravity-aligned by default (``up_axis``; yaw from the principal axes of the footprint), which suits
objects standing on a support; ``up_axis=None`` gives a full 3D PCA box.
"""
from __future__ import annotations

import numpy as np
import torch
from gsplat.cuda._torch_impl import _quat_scale_to_covar_preci  # CPU-capable (docs: shared README)

from ocgs_ros.gaussians.map import GaussianMap


def rotation_from_up(up) -> np.ndarray:
    """A rotation whose third column is the unit ``up`` vector."""
    z = np.asarray(up, dtype=np.float64)
    z = z / np.linalg.norm(z)
    helper = np.array([1.0, 0.0, 0.0]) if abs(z[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    x = helper - z * (helper @ z)
    x /= np.linalg.norm(x)
    return np.stack([x, np.cross(z, x), z], axis=1)


def oriented_box(points: np.ndarray, up_axis=(0.0, 0.0, 1.0), half_extents: np.ndarray | None = None,
                 trim: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(center [3], size [3], rotation [3,3])`` of ``points [P,3]``: gravity-aligned (yaw from the
    principal axes of the points projected on the plane normal to ``up_axis``) or, with
    ``up_axis=None``, along the 3D principal axes. Axes form a right-handed rotation.
    ``half_extents [P,3]`` (world-axis standard deviations of each Gaussian) widen the box;
    ``trim`` ignores that fraction of points beyond each face."""
    points = np.asarray(points, dtype=np.float64)
    mean = points.mean(axis=0)
    if up_axis is None:
        _, vectors = np.linalg.eigh(np.cov((points - mean).T) if len(points) > 1 else np.eye(3))
        rotation = vectors[:, ::-1].copy()  # largest spread first
    else:
        base = rotation_from_up(up_axis)
        planar = (points - mean) @ base[:, :2]
        if len(points) > 1:
            _, vectors = np.linalg.eigh(np.cov(planar.T))
            major = vectors[:, -1]
        else:
            major = np.array([1.0, 0.0])
        x = base[:, :2] @ major
        rotation = np.stack([x, np.cross(base[:, 2], x), base[:, 2]], axis=1)
    if np.linalg.det(rotation) < 0:
        rotation[:, 2] *= -1
    local = (points - mean) @ rotation
    extent = np.zeros_like(local) if half_extents is None else np.asarray(half_extents) @ np.abs(rotation)
    lo, hi = trimmed_bounds(local, extent, trim)
    return mean + rotation @ ((lo + hi) / 2), hi - lo, rotation


def aabbs_overlap(min_a: np.ndarray, max_a: np.ndarray, min_b: np.ndarray, max_b: np.ndarray) -> bool:
    """Whether two axis-aligned boxes share volume: exactly when their 3D IoU is positive, at the
    cost of six comparisons. The tracker and the merge test every pair of objects each update, and
    most pairs are far apart: this settles them without the general box intersection."""
    return bool(np.all(np.minimum(max_a, max_b) > np.maximum(min_a, min_b)))


def capped_extents(extent: np.ndarray, ratio: float) -> np.ndarray:
    """``extent [P,3]`` (how far each Gaussian of one object reaches along each axis), where a
    Gaussian reaching further than ``ratio`` times the object's median along any axis counts with
    the median reach; ``ratio`` 0 leaves it as it is. A blob many times larger than its neighbours
    is not a surface patch, so its size is no evidence of the object's extent (``box_extent_ratio``)."""
    if ratio <= 0 or len(extent) == 0:
        return extent
    median = np.median(extent, axis=0)
    outlier = np.any(extent > ratio * median, axis=1)
    return np.where(outlier[:, None], median, extent)


def column_quantile(values: np.ndarray, q: float) -> np.ndarray:
    """``np.quantile(values, q, axis=0)`` (its default, linear method) by one ``np.partition``.
    Why not np.quantile itself: a live extraction takes some forty small quantiles, and numpy's
    general path costs ~170 us each on a few hundred rows against ~25 us here (5-7 ms of a live
    frame in the node's world, docs/mapping_speed.md)."""
    values = np.asarray(values)
    if len(values) < 2:
        return np.quantile(values, q, axis=0)
    position = q * (len(values) - 1)
    below = int(np.floor(position))
    above = min(below + 1, len(values) - 1)
    ordered = np.partition(values, (below, above), axis=0)
    return ordered[below] + (ordered[above] - ordered[below]) * (position - below)


def trimmed_bounds(points: np.ndarray, extent: np.ndarray, trim: float) -> tuple[np.ndarray, np.ndarray]:
    """``(min, max)`` of ``points +- extent``, ignoring the ``trim`` fraction beyond each face."""
    low, high = points - extent, points + extent
    if trim <= 0:
        return low.min(axis=0), high.max(axis=0)
    return column_quantile(low, trim), column_quantile(high, 1 - trim)


def footprint_bounds(points: np.ndarray, extent: np.ndarray, frame: np.ndarray,
                     trim: float) -> tuple[np.ndarray, np.ndarray]:
    """``(min [2], max [2])`` of the footprint of ``points [P,3]`` (each reaching ``extent [P,3]``
    along the map axes) on the support: in the first two axes of ``frame`` (its third is up),
    ignoring the ``trim`` fraction beyond each side."""
    across = frame[:, :2]
    return trimmed_bounds(points @ across, extent @ np.abs(across), trim)


def footprint_iou(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> float:
    """Intersection over union of two footprints ``(min, max)`` (:func:`footprint_bounds`)."""
    overlap = np.prod(np.clip(np.minimum(a[1], b[1]) - np.maximum(a[0], b[0]), 0.0, None))
    union = np.prod(a[1] - a[0]) + np.prod(b[1] - b[0]) - overlap
    return float(overlap / union) if union > 0 else 0.0


@torch.no_grad()
def world_covariance(gmap: GaussianMap) -> np.ndarray:
    """Covariance of every Gaussian in the map frame ``[N, 3, 3]`` (gsplat's, from quaternion and
    scales)."""
    covars, _ = _quat_scale_to_covar_preci(gmap.quats_normalized(), gmap.scales_act(), True, False)
    return covars.numpy().astype(np.float64)


def axis_std(covars: np.ndarray) -> np.ndarray:
    """Standard deviation along the map axes ``[N, 3]`` of covariances ``[N, 3, 3]``."""
    return np.sqrt(np.diagonal(covars, axis1=1, axis2=2).clip(0.0))
