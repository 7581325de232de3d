"""The geometric instance path: objects of kinds the codebook does not name (issue 19).

The codebook is closed-world. GOCL leaves an object of a kind it was never trained on to the
background (or names a few of its pixels), so the map's Gaussians there decode as background and the
identity path (:mod:`.extraction`) never sees them. Their geometry is there all the same: the mapper
grows Gaussians from the LiDAR / depth returns whatever GOCL says, and every frame's returns sample
the object's surface again.

:func:`unknown_clusters` takes two kinds of geometric evidence: the opaque, finite Gaussians of
the map that no identified object owns, and the range returns accumulated over frames
(:class:`~.evidence.PointEvidence`: voxels hit at least ``unknown_min_hits`` times; every frame
samples a small object's surface again, where the map may hold only a few Gaussians). Of these, the
points more than ``unknown_clearance`` above the support plane that no identified object explains
(inside its oriented box grown by ``unknown_margin`` and within ``unknown_explain_radius`` of one of
its Gaussians, see :func:`_explained`) are linked at ``link_radius`` (the identity path's
connectivity); each connected cluster of at least ``unknown_min_points`` points whose footprint is
at most ``unknown_max_size`` across (a wall or a shelf is structure, not an object) is an
unknown-kind object. Its box is fitted to the cluster's return voxels (to all its points where it
has fewer than :data:`MIN_RETURNS_FOR_BOX`) and stands on the support like any other; its Gaussians
(for instance masks and its colour) are the unowned Gaussians inside that box; a cluster with fewer
than ``unknown_min_gaussians`` there (returns the map does not explain, e.g. of something since
removed) is dropped. Identified objects' Gaussians and boxes are taken out first, so the path never
splits or merges identified objects. One exception to "only adds objects": a cluster standing on an
identified object's footprint (IoU ``footprint_merge_iou``) is the part of that object no entry named
(GOCL named a cone's top and left its foot to the background): it joins that object's box and
Gaussians instead of being published as a second object in the same place
(:func:`~.extraction.extract_instances`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from .clustering import connected_labels
from .config import ObjectConfig
from .map_object import MapObject
from .support import SupportSurface


# a cluster with at least this many return voxels is boxed over them alone: returns sample the
# surface to a few millimetres, while Gaussians are extended blobs (+- box_sigma std) that inflate a
# small object's box (dev seed 5: the box IoU of a 5 cm cylinder 0.42 -> 0.53)
MIN_RETURNS_FOR_BOX = 10


@dataclass
class UnknownCluster:
    points: np.ndarray  # [P, 3] Gaussian centres and evidence voxel centres of one cluster
    half_extents: np.ndarray  # [P, 3] how far each point's surface reaches along the map axes
    is_return: np.ndarray  # [P] bool: an evidence voxel (else a Gaussian centre)

    def box_points(self) -> tuple[np.ndarray, np.ndarray]:
        """``(points, half_extents)`` the box is fitted to: the return voxels where there are
        :data:`MIN_RETURNS_FOR_BOX` of them, else every point."""
        if self.is_return.sum() >= MIN_RETURNS_FOR_BOX:
            return self.points[self.is_return], self.half_extents[self.is_return]
        return self.points, self.half_extents


def unknown_clusters(means: np.ndarray, half_extents: np.ndarray, usable: np.ndarray, evidence: np.ndarray,
                     identified: list[MapObject], support: SupportSurface,
                     config: ObjectConfig) -> list[UnknownCluster]:
    """The unknown-kind clusters (module docstring). ``means``/``half_extents [N, 3]``: the map's
    Gaussians; ``usable [N]``: opaque, finite ones; ``evidence [V, 3]``: accumulated returns
    (voxel centres; :class:`~.evidence.PointEvidence`); ``identified``: the identity path's objects
    (their ``gaussian_indices`` index ``means``)."""
    if not config.unknown_objects:
        return []
    free = usable.copy()
    for obj in identified:
        free[obj.gaussian_indices] = False
    points = np.concatenate([means[free], evidence])
    extents = np.concatenate([half_extents[free], np.full((len(evidence), 3), config.unknown_voxel / 2)])
    is_return = np.r_[np.zeros(int(free.sum()), dtype=bool), np.ones(len(evidence), dtype=bool)]
    elevation = support.elevation(points)
    if elevation is None:  # no support plane: "above the support" means nothing
        return []
    keep = elevation > config.unknown_clearance
    keep &= ~_explained(points, means, identified, support, config)
    points, extents, is_return = points[keep], extents[keep], is_return[keep]
    if len(points) < config.unknown_min_points:
        return []
    labels = connected_labels(points, config.link_radius)
    names, counts = np.unique(labels, return_counts=True)
    clusters = []
    for name in names[counts >= config.unknown_min_points]:
        member = labels == name
        across = points[member] @ support.frame[:, :2]
        if np.linalg.norm(across.max(axis=0) - across.min(axis=0)) <= config.unknown_max_size:
            clusters.append(UnknownCluster(points[member], extents[member], is_return[member]))
    return clusters


def _explained(points: np.ndarray, means: np.ndarray, identified: list[MapObject], support: SupportSurface,
               config: ObjectConfig) -> np.ndarray:
    """Which ``points`` an identified object explains: inside its box grown by ``unknown_margin``
    *and* within ``unknown_explain_radius`` of one of its Gaussians above the clearance. The box
    alone would let a table patch that took an entry (a flat box tens of centimetres wide) hide
    every object standing in it; nearness alone would cut the unnamed top of a known object off
    as an object of its own."""
    explained = np.zeros(len(points), dtype=bool)
    inside = np.zeros(len(points), dtype=bool)
    for obj in identified:
        inside |= obj.contains(points, config.unknown_margin)
    if not inside.any():
        return explained
    owned = np.concatenate([obj.gaussian_indices for obj in identified])
    owned = owned[support.elevation(means[owned]) > config.unknown_clearance]
    if len(owned) == 0:
        return explained
    distance, _ = cKDTree(means[owned]).query(points[inside], distance_upper_bound=config.unknown_explain_radius)
    explained[inside] = np.isfinite(distance)
    return explained


def nearest_entry(entry_probs: np.ndarray) -> tuple[int, float]:
    """``(entry, distance)`` of Gaussians' entry distributions ``[K, M]`` (each over the object
    entries): the entry of largest mean probability, and the total-variation distance between the
    mean distribution and that entry (1 - its mean probability)."""
    mean = entry_probs.mean(axis=0)
    entry = int(mean.argmax())
    return entry, float(1.0 - mean[entry])
