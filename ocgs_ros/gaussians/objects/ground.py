"""The support plane (a table top, the ground outdoors) fitted robustly to background points.

Objects stand on a support whose orientation and height the data give: a level table indoors, a
road that tilts a few degrees outdoors, sampled densely near the sensor and sparsely tens of metres
away. :func:`fit_support_plane` fits the dominant plane with RANSAC (scikit-learn's
``RANSACRegressor``: the height along an up *hint* as a linear function of the two coordinates
across it), so walls, object sides and stray Gaussians do not pull the plane. The hint only fixes
which side is up and bounds the tilt (``max_tilt_deg``): candidate planes steeper than that are
walls, not supports. Where a table and the floor are both in view, the plane with more support wins.

Warm start (``prior``, the live map's extractions: :class:`PlaneWarmStart`): a live map changes
little between two frames, and RANSAC's trials cost 8-15 ms an extraction, mostly scikit-learn's
per-trial checks (docs/mapping_speed.md). When the previous plane still has at least half of the
points within ``inlier_distance``, another plane could hold as many only through the points near
their intersection (two planes share no others), so it is what RANSAC's best candidate would be:
it is refitted by least squares on those inliers, as RANSAC refits its best candidate, and RANSAC
runs only when it fails (a new table, the robot on another floor, a map that moved).
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


@dataclass
class PlaneWarmStart:
    """The last plane :func:`fit_support_plane` gave one live map, offered to its next fit (``plane``
    is None until then, or after a fit found none)."""

    plane: SupportPlane | None = None


def fit_support_plane(points: np.ndarray, up_hint, inlier_distance: float, max_tilt_deg: float,
                      max_points: int, min_points: int, seed: int = 0,
                      prior: SupportPlane | None = None) -> SupportPlane | None:
    """The dominant plane of ``points [N,3]`` within ``max_tilt_deg`` of ``up_hint``, its normal
    oriented to the hint's side; points within ``inlier_distance`` of a candidate count for it
    (measured along the hint: at most 10 % more than the perpendicular distance at 25 degrees).
    At most ``max_points`` points (a seeded subset) take part, which bounds the cost. None when
    fewer than ``min_points`` points are given or support a plane. ``prior``: the warm start (module
    docstring), refitted instead of RANSAC while it holds half of the points."""
    points = np.asarray(points, dtype=np.float64)
    if len(points) < max(3, min_points):
        return None
    if len(points) > max_points:
        points = points[np.random.default_rng(seed).choice(len(points), max_points, replace=False)]
    hint = rotation_from_up(up_hint)
    local = points @ hint
    max_slope = np.tan(np.radians(max_tilt_deg))
    if prior is not None:
        refitted = _refit_prior(prior, hint, local, inlier_distance, max_slope, min_points)
        if refitted is not None:
            return refitted

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
    return _plane_from_height_model(hint, a, b, c)


def _plane_from_height_model(hint: np.ndarray, a: float, b: float, c: float) -> SupportPlane:
    # height = a u + b v + c in the hint frame  <=>  (-a, -b, 1) . (u, v, h) = c
    length = float(np.sqrt(a * a + b * b + 1.0))
    normal = hint @ (np.array([-a, -b, 1.0]) / length)
    return SupportPlane(normal=normal, offset=c / length)


def _refit_prior(prior: SupportPlane, hint: np.ndarray, local: np.ndarray, inlier_distance: float,
                 max_slope: float, min_points: int) -> SupportPlane | None:
    """``prior`` refitted to its inliers among ``local`` (points in the hint frame), residuals along
    the hint as RANSAC measures them; None when it holds fewer than half of them (or
    ``min_points``), or is no longer gentle enough."""
    normal_local = hint.T @ prior.normal
    if normal_local[2] <= 1e-6:  # the prior is a wall in this hint's frame
        return None
    a, b = -normal_local[:2] / normal_local[2]
    c = prior.offset / normal_local[2]
    inliers = np.abs(local[:, 2] - (local[:, :2] @ np.array([a, b]) + c)) < inlier_distance
    if inliers.sum() < max(min_points, 3) or 2 * inliers.sum() < len(local):
        return None
    fit = LinearRegression().fit(local[inliers, :2], local[inliers, 2])
    if np.linalg.norm(fit.coef_) > max_slope:
        return None
    (a, b), c = fit.coef_, float(fit.intercept_)
    return _plane_from_height_model(hint, a, b, c)
