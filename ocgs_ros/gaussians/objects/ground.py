"""The support plane (a table top, the ground outdoors) fitted robustly to background points.

Objects stand on a support whose orientation and height the data give: a level table indoors, a
road that tilts a few degrees outdoors, sampled densely near the sensor and sparsely tens of metres
away. :func:`fit_support_plane` fits the dominant plane with RANSAC (scikit-learn's
``RANSACRegressor``: the height along an up *hint* as a linear function of the two coordinates
across it), so walls, object sides and stray Gaussians do not pull the plane. The hint only fixes
which side is up and bounds the tilt (``max_tilt_deg``): candidate planes steeper than that are
walls, not supports. Where a table and the floor are both in view, the plane with more support wins.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LinearRegression, RANSACRegressor

from .boxes import rotation_from_up


@dataclass(frozen=True)
class SupportPlane:
    """The plane ``normal @ x == offset``; ``normal`` is a unit vector pointing up (to the hint's side)."""

    normal: np.ndarray
    offset: float

    def distance(self, points: np.ndarray) -> np.ndarray:
        """Signed distance of ``points [N,3]`` above the plane (along ``normal``)."""
        return np.asarray(points, dtype=np.float64) @ self.normal - self.offset


def fit_support_plane(points: np.ndarray, up_hint, inlier_distance: float, max_tilt_deg: float,
                      max_points: int, min_points: int, seed: int = 0) -> SupportPlane | None:
    """The dominant plane of ``points [N,3]`` within ``max_tilt_deg`` of ``up_hint``, its normal
    oriented to the hint's side; points within ``inlier_distance`` of a candidate count for it
    (measured along the hint: at most 10 % more than the perpendicular distance at 25 degrees).
    At most ``max_points`` points (a seeded subset) take part, which bounds the cost. None when
    fewer than ``min_points`` points are given or support a plane."""
    points = np.asarray(points, dtype=np.float64)
    if len(points) < max(3, min_points):
        return None
    if len(points) > max_points:
        points = points[np.random.default_rng(seed).choice(len(points), max_points, replace=False)]
    hint = rotation_from_up(up_hint)
    local = points @ hint
    max_slope = np.tan(np.radians(max_tilt_deg))

    def gentle_enough(estimator, _x, _y) -> bool:
        return bool(np.linalg.norm(estimator.coef_) <= max_slope)

    ransac = RANSACRegressor(LinearRegression(), min_samples=3, residual_threshold=inlier_distance,
                             is_model_valid=gentle_enough, max_trials=200, random_state=seed)
    try:
        ransac.fit(local[:, :2], local[:, 2])
    except ValueError:  # no candidate plane was gentle enough or had support
        return None
    if ransac.inlier_mask_.sum() < min_points:
        return None
    (a, b), c = ransac.estimator_.coef_, float(ransac.estimator_.intercept_)
    # height = a u + b v + c in the hint frame  <=>  (-a, -b, 1) . (u, v, h) = c
    length = float(np.sqrt(a * a + b * b + 1.0))
    normal = hint @ (np.array([-a, -b, 1.0]) / length)
    return SupportPlane(normal=normal, offset=c / length)
