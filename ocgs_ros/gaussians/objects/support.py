"""The support surface under an object (the table), for snapping box bottoms and ground level.

Support snapping (``support_snap``, with ``up_axis``): an object standing on a table is never seen
from below, and the Gaussians at its foot blend into the table's, so the raw box either sinks
below the support (table Gaussians labelled as the object, widened by ``box_sigma``) or floats
above it (the foot labelled as table). The support height under an instance is the median height
of the opaque background Gaussians within ``support_radius`` of its footprint (the table around
it; under it is occluded). A box bottom below the support, or less than ``support_snap`` above
it, is moved to the support; an instance whose Gaussian centres rise less than ``min_rise`` above the
support is dropped as a patch of the support itself (table Gaussians beside an object that took its
identity). The oriented box always snaps (its third axis is ``up_axis``); the
axis-aligned box only when ``up_axis`` is (anti)parallel to a coordinate axis. The support height
of a background Gaussian is that of the surface it renders, ``support_top_sigma`` standard
deviations above its centre: optimised table Gaussians sit under the surface they render.

Support plane (``support_plane``): the up axis is the normal of the plane fitted robustly to the
background (:func:`~.ground.fit_support_plane`; ``up_axis`` is then only a hint for its side), so a
tilted road or a map whose z is not up gives boxes that stand on their support. A normal within
``plane_level_tolerance_deg`` of ``up_axis`` is taken as ``up_axis`` (a gravity-levelled map: the
fit's own lean on a level table is a fraction of a degree). Where an object has
fewer than ``min_support_gaussians`` background Gaussians within ``support_radius`` (the sparse
ground tens of metres from a LiDAR), the support is the plane: the median surface height of its
inliers. Without a plane (too little background, none gentle enough) ``up_axis`` is the up axis.

Ground level (``ground_clearance``, with a support estimate): GOCL's masks bleed onto the table
around an object, so table Gaussians beside it take its entry. Those less than ``ground_clearance``
above the support neither connect two objects of one entry into one instance (a component whose
elevated Gaussians form several connected parts of ``min_gaussians`` each is split, and the rest of
its Gaussians join the part with the nearest elevated Gaussian), nor widen the instance's footprint
beyond that of its elevated Gaussians grown by ``footprint_margin``.
"""
from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from .boxes import column_quantile, rotation_from_up
from .clustering import connected_labels
from .config import ObjectConfig
from .ground import PlaneWarmStart, SupportPlane, fit_support_plane

# the axis-aligned box snaps along a map axis within this angle of the up axis: a fitted plane's
# normal (beyond plane_level_tolerance_deg) is never exactly a map axis, and the snap's error,
# sin(angle) x half the footprint, is under 2 mm for a 10 cm object at this angle
_AABB_SNAP_MAX_TILT_DEG = 2.0


class SupportSurface:
    """Heights of the background Gaussians along the up axis (the support plane's normal, else
    ``up_axis``), for snapping box bottoms onto the surface an object stands on (see the module
    docstring)."""

    def __init__(self, background_means: np.ndarray, background_covars: np.ndarray, config: ObjectConfig,
                 warm_start: PlaneWarmStart | None = None):
        """``warm_start``: the live map's last plane, offered to the fit and replaced by its result."""
        self.config = config
        self.plane: SupportPlane | None = None
        if config.up_axis is not None and config.support_plane:
            self.plane = fit_support_plane(background_means, config.up_axis, config.plane_inlier_distance,
                                           config.plane_max_tilt_deg, config.plane_max_points,
                                           config.min_support_gaussians,
                                           prior=None if warm_start is None else warm_start.plane)
            if warm_start is not None:
                warm_start.plane = self.plane
        #: the up axis of the map's boxes (unit; None: full PCA boxes)
        self.up: np.ndarray | None = None
        if config.up_axis is not None:
            self.up = np.asarray(config.up_axis, dtype=np.float64) / np.linalg.norm(config.up_axis)
            if self.plane is not None and np.degrees(np.arccos(min(1.0, self.plane.normal @ self.up))) \
                    > config.plane_level_tolerance_deg:
                self.up = self.plane.normal
        self.enabled = self.up is not None and config.support_snap > 0 and len(background_means) > 0
        #: the plane's support height: the median surface height of the background on the plane
        #: (None: no plane, or the support is off)
        self.plane_height: float | None = None
        if not self.enabled:
            return
        self.frame = rotation_from_up(self.up)
        local = background_means @ self.frame
        # the height of the surface each Gaussian renders: centre + support_top_sigma std along up
        up = self.frame[:, 2]
        up_std = np.sqrt(np.einsum("i,nij,j->n", up, background_covars, up).clip(0.0))
        self.heights = local[:, 2] + config.support_top_sigma * up_std
        self.across = np.ascontiguousarray(local[:, :2])  # background centres across the up axis
        # the background sorted along the first axis across: an object's neighbourhood is then a
        # slice found by bisection instead of a test of every background Gaussian (_rows_near)
        self._by_first = np.argsort(self.across[:, 0], kind="stable")
        self._first_sorted = self.across[self._by_first, 0]
        if self.plane is not None:
            on_plane = np.abs(self.plane.distance(background_means)) < config.plane_inlier_distance
            self.plane_height = float(np.median(self.heights[on_plane])) if on_plane.any() else None
        alignment = np.abs(up)  # |cos| of the angle between up and each map axis
        # the AABB can only snap along a coordinate axis that is (nearly) parallel to up
        nearly = alignment.max() >= np.cos(np.radians(_AABB_SNAP_MAX_TILT_DEG))
        self.aabb_axis = int(alignment.argmax()) if nearly else None
        self.aabb_sign = float(np.sign(self.frame[self.aabb_axis, 2])) if self.aabb_axis is not None else 0.0

    def height_near(self, points: np.ndarray, below: float | None = None) -> float | None:
        """Median background height within ``support_radius`` of the footprint of ``points``; the
        support plane's height without enough background around (None: no plane either).
        ``below``: only background surface heights under this count (an unknown-kind object is
        itself background-decoded: its own Gaussians must not raise its support)."""
        if not self.enabled:
            return None
        rows = self._rows_near((points @ self.frame)[:, :2], self.config.support_radius)
        if below is not None:
            rows = rows[self.heights[rows] < below]
        if len(rows) < self.config.min_support_gaussians:
            return self.plane_height
        return float(np.median(self.heights[rows]))

    def _rows_near(self, footprint: np.ndarray, radius: float) -> np.ndarray:
        """Sorted rows of the background within ``radius`` of any point of ``footprint [P,2]`` (the
        union of the discs around them). Asked of the few background Gaussians inside the
        footprint's bounds grown by ``radius``, each for its nearest footprint point: one query per
        nearby background Gaussian instead of one ball per object point, which returned every table
        Gaussian under the object again for each of its hundreds of points."""
        if len(footprint) == 0:
            return np.zeros(0, dtype=np.int64)
        lo, hi = footprint.min(axis=0) - radius, footprint.max(axis=0) + radius
        start = np.searchsorted(self._first_sorted, lo[0], side="left")
        stop = np.searchsorted(self._first_sorted, hi[0], side="right")
        candidates = self._by_first[start:stop]
        second = self.across[candidates, 1]
        nearby = np.sort(candidates[(second >= lo[1]) & (second <= hi[1])])
        if len(nearby) == 0:
            return nearby
        distance, _ = cKDTree(footprint).query(self.across[nearby], distance_upper_bound=np.nextafter(radius, np.inf))
        return nearby[distance <= radius]

    def elevation(self, points: np.ndarray) -> np.ndarray | None:
        """Height of ``points [P,3]`` above the support plane's surface (None: no plane estimate)."""
        if not self.enabled or self.plane_height is None:
            return None
        return points @ self.frame[:, 2] - self.plane_height

    def _ground_level(self, means: np.ndarray, indices: np.ndarray) -> np.ndarray | None:
        """Which of the Gaussians ``indices`` lie less than ``ground_clearance`` above the support
        under them (None: clearance off or no support estimate)."""
        if not self.enabled or self.config.ground_clearance <= 0:
            return None
        height = self.height_near(means[indices])
        if height is None:
            return None
        return means[indices] @ self.frame[:, 2] < height + self.config.ground_clearance

    def split_at_ground(self, means: np.ndarray, indices: np.ndarray) -> list[np.ndarray]:
        """One entry's connected component ``indices`` split into objects: the connected parts (at
        ``link_radius``) of its elevated Gaussians with at least ``min_gaussians`` each; every other
        Gaussian of the component joins the part with the nearest elevated Gaussian. Two objects of
        one kind are often joined only through table Gaussians that took their identity."""
        ground = self._ground_level(means, indices)
        if ground is None or (~ground).sum() < 2 * self.config.min_gaussians:
            return [indices]
        elevated = indices[~ground]
        labels = connected_labels(means[elevated], self.config.link_radius)
        names, counts = np.unique(labels, return_counts=True)
        parts = names[counts >= self.config.min_gaussians]
        if len(parts) < 2:
            return [indices]
        anchors = np.isin(labels, parts)
        _, nearest = cKDTree(means[elevated[anchors]]).query(means[indices])
        owner = labels[anchors][nearest]
        return [indices[owner == part] for part in parts]

    def elevated(self, means: np.ndarray, indices: np.ndarray) -> np.ndarray:
        """``indices`` without the ground-level Gaussians (all of them when none or nearly none
        rise: clearance off, no support estimate, or a flat thing)."""
        ground = self._ground_level(means, indices)
        if ground is None or (~ground).sum() < self.config.min_gaussians:
            return indices
        return indices[~ground]

    def trim_ground_footprint(self, means: np.ndarray, indices: np.ndarray) -> np.ndarray:
        """``indices`` without the ground-level Gaussians outside the elevated ones' footprint
        (their box across the up axis, grown by ``footprint_margin``): table Gaussians beside the
        object that took its identity would otherwise widen its box."""
        ground = self._ground_level(means, indices)
        if ground is None or (~ground).sum() < self.config.min_gaussians:
            return indices
        across = means[indices] @ self.frame[:, :2]
        # trimmed like the box: a few stray elevated Gaussians far off (a faint blob, a neighbour's
        # edge) must not keep every table Gaussian between them and the object
        trim = self.config.box_trim
        lo = column_quantile(across[~ground], trim) - self.config.footprint_margin
        hi = column_quantile(across[~ground], 1.0 - trim) + self.config.footprint_margin
        inside = np.all((across >= lo) & (across <= hi), axis=1)
        return indices[~ground | inside]

    def is_under(self, points: np.ndarray, height: float) -> bool:
        """Whether the support ``height`` lies below the centroid of ``points`` (it holds them up)."""
        return height < float(points.mean(axis=0) @ self.frame[:, 2])

    def rise(self, points: np.ndarray, height: float) -> float:
        """How far the instance's Gaussian centres reach above the support ``height`` (the
        ``1 - box_trim`` quantile, robust to a few stray centres)."""
        return float(column_quantile(points @ self.frame[:, 2], 1.0 - self.config.box_trim)) - height

    def _snapped_bottom(self, bottom: float, height: float) -> float:
        return height if bottom - height < self.config.support_snap else bottom

    def snap_oriented(self, center, size, rotation, height: float):
        """Oriented box (third axis = up) with its bottom snapped to the support ``height``."""
        up = rotation[:, 2]
        bottom, top = center @ up - size[2] / 2, center @ up + size[2] / 2
        new_bottom = self._snapped_bottom(bottom, height)
        if new_bottom >= top:
            return center, size
        size = size.copy()
        size[2] = top - new_bottom
        return center + up * ((new_bottom - bottom) / 2), size

    def snap_aabb(self, aabb_min, aabb_max, height: float) -> tuple[np.ndarray, np.ndarray]:
        """AABB with its bottom face (the min face along up's axis, or the max face if up points
        down that axis) snapped to the support ``height``; unchanged if up is not an axis."""
        if self.aabb_axis is None:
            return aabb_min, aabb_max
        axis, sign = self.aabb_axis, self.aabb_sign
        lo, hi = aabb_min.copy(), aabb_max.copy()
        # heights along up: +coordinate if up is +axis, -coordinate if up is -axis
        bottom, top = (lo[axis], hi[axis]) if sign > 0 else (-hi[axis], -lo[axis])
        new_bottom = self._snapped_bottom(float(bottom), height)
        if new_bottom >= top:
            return aabb_min, aabb_max
        if sign > 0:
            lo[axis] = new_bottom
        else:
            hi[axis] = -new_bottom
        return lo, hi
