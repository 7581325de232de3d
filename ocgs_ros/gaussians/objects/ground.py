"""The support plane (a table top, the ground outdoors) fitted robustly to background points.

Objects stand on a support whose orientation and height the data give: a level table indoors, a
road that tilts a few degrees outdoors, sampled densely near the sensor and sparsely tens of metres
away. :func:`fit_support_plane` fits the dominant plane with RANSAC (the height along an up *hint*
as a linear function of the two coordinates across it), so walls, object sides and stray Gaussians
do not pull the plane. The trials run batched in numpy (:func:`ransac_height_plane`): scikit-learn's
``RANSACRegressor`` runs the same rule one trial at a time, and its per-trial input checks made a
fit 100-130 ms at 5000 points on this project's CPU, in every extraction where the warm start
below fails (a room whose table is not half of the background: a 30 min soak's extraction went
35 -> 100 ms when its table fell below half, docs/mapping_speed.md, "Long runs"). The hint only fixes
which side is up and bounds the tilt (``max_tilt_deg``): candidate planes steeper than that are
walls, not supports. Where a table and the floor are both in view, the plane with more support wins.

Warm start (``prior``, the live map's extractions: :class:`PlaneWarmStart`): a live map changes
little between two frames, and a refit is cheaper than RANSAC's trials. When the previous plane still has at least half of the
points within ``inlier_distance``, another plane could hold as many only through the points near
their intersection (two planes share no others), so it is what RANSAC's best candidate would be:
it is refitted by least squares on those inliers, as RANSAC refits its best candidate, and RANSAC
runs only when it fails (a new table, the robot on another floor, a map that moved).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LinearRegression

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

    model = ransac_height_plane(local, inlier_distance, max_slope, min_points, seed=seed)
    return None if model is None else _plane_from_height_model(hint, *model)


def ransac_height_plane(local: np.ndarray, inlier_distance: float, max_slope: float, min_points: int,
                        trials: int = 200, seed: int = 0) -> tuple[float, float, float] | None:
    """RANSAC for ``h = a u + b v + c`` on ``local [N, 3]`` (u, v, h), as scikit-learn's
    ``RANSACRegressor(LinearRegression(), min_samples=3, residual_threshold=inlier_distance,
    max_trials=trials)`` with a slope bound as ``is_model_valid``, its trials batched: every trial's
    three points are drawn at once (seeded), each candidate solved exactly, those steeper than
    ``max_slope`` (or degenerate) dropped; the candidate with the most points within
    ``inlier_distance`` (ties: the smaller residual sum on them) is refitted by least squares on
    its inliers. None when no candidate holds ``min_points`` (at least 3)."""
    n = len(local)
    if n < 3:
        return None
    rng = np.random.default_rng(seed)
    # three distinct points per trial: a random permutation's first three, without a Python loop
    samples = np.argsort(rng.random((trials, n)), axis=1)[:, :3] if n <= 64 else _distinct_triples(rng, n, trials)
    design = np.concatenate([local[samples][..., :2], np.ones((trials, 3, 1))], axis=2)  # [T, 3, 3]
    heights = local[samples][..., 2]  # [T, 3]
    solvable = np.abs(np.linalg.det(design)) > 1e-12
    if not solvable.any():
        return None
    models = np.linalg.solve(design[solvable], heights[solvable][..., None])[..., 0]  # [T', 3] = (a, b, c)
    models = models[np.linalg.norm(models[:, :2], axis=1) <= max_slope]
    if len(models) == 0:
        return None
    residuals = np.abs(local[:, 2][None, :] - (models[:, :2] @ local[:, :2].T + models[:, 2:3]))  # [T', N]
    inliers = residuals < inlier_distance
    counts = inliers.sum(axis=1)
    spread = np.where(inliers, residuals, 0.0).sum(axis=1)
    best = np.lexsort((spread, -counts))[0]
    if counts[best] < max(min_points, 3):
        return None
    chosen = local[inliers[best]]
    design_all = np.c_[chosen[:, :2], np.ones(len(chosen))]
    (a, b, c), *_ = np.linalg.lstsq(design_all, chosen[:, 2], rcond=None)
    return float(a), float(b), float(c)


def _distinct_triples(rng: np.random.Generator, n: int, trials: int) -> np.ndarray:
    """``[trials, 3]`` indices in ``[0, n)``, distinct within each row (redrawn where they collide)."""
    triples = rng.integers(0, n, size=(trials, 3))
    while True:
        clash = (triples[:, 0] == triples[:, 1]) | (triples[:, 0] == triples[:, 2]) | (triples[:, 1] == triples[:, 2])
        if not clash.any():
            return triples
        triples[clash] = rng.integers(0, n, size=(int(clash.sum()), 3))


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
