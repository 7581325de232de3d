"""Extraction of the map's object instances: candidates by identity and opacity, clusters by
connectivity, merged across disagreeing entries, boxed and snapped to their support.

Extraction (:func:`extract_instances`): every Gaussian whose decoded identity
(:func:`~ocgs_ros.gaussians.map.entries_from_logits` of the shared head's logits) is a codebook entry
rather than background, and whose opacity is at least
``min_opacity``, is a candidate. Candidates of one entry are linked when their centres are closer
than ``link_radius`` (scipy ``cKDTree.query_pairs``), and each connected component
(``scipy.sparse.csgraph.connected_components``) with at least ``min_gaussians`` members is an
instance. Because the codebook entry is the same in every view (GOCL's global codebook), grouping by
entry needs no cross-view mask association; connectivity only separates two objects of one kind.
Where the map's Gaussians of one object still disagree on the entry (GOCL gave it different entries
in different views), the per-entry components interpenetrate; components of different entries whose
boxes reach a 3D IoU of ``merge_iou`` are merged into one instance with the majority
entry (its confidence, the mean probability of that entry, then shows the disagreement).
Boxes stand on the support (:class:`~.support.SupportSurface`): its up axis is the normal of the
plane fitted to the background (a table, the ground), so the same code serves a tabletop and a
road; only the scale settings differ (``config/tabletop.yaml``, ``config/outdoor.yaml``).
Components standing on one footprint (IoU ``footprint_merge_iou`` on the support) are one object
whatever their entries: objects on a support never share a footprint, while GOCL may name an
object's foot and top apart, or a band of background-decoded Gaussians cut one entry's object in two.
Then the geometric path (:mod:`.unknown`) adds the objects no codebook entry names, with entry -1;
a cluster on an identified object's footprint joins that object instead.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from ocgs_ros.evaluation import Box3D, box_iou_3d
from ocgs_ros.gaussians.map import GaussianMap, entries_from_logits

from .boxes import (aabbs_overlap, axis_std, capped_extents, footprint_bounds, footprint_iou, oriented_box,
                    trimmed_bounds, world_covariance)
from .clustering import connected_labels
from .config import ObjectConfig
from .ground import PlaneWarmStart
from .map_object import UNKNOWN_ENTRY, MapObject
from .support import SupportSurface
from .unknown import nearest_entry, unknown_clusters


# m: Gaussians on a box face (the extremes the box was fitted to) count as inside despite rounding
_ON_FACE = 1e-6


@torch.no_grad()
def extract_instances(gmap: GaussianMap, config: ObjectConfig | None = None,
                      evidence: np.ndarray | None = None, plane_warm_start: PlaneWarmStart | None = None,
                      ) -> list[MapObject]:
    """Instances of ``gmap`` (ids are provisional, 0-based in extraction order; use
    :class:`ObjectTracker` for stable ids). ``evidence [V, 3]``: accumulated range returns (voxel
    centres, :class:`~.evidence.PointEvidence`) for the geometric path, besides the map's Gaussians.
    ``plane_warm_start``: the support plane of this live map's previous extraction (:mod:`.ground`)."""
    config = config or ObjectConfig()
    if gmap.num_gaussians == 0:
        return []
    logits = gmap.identity_logits()
    probs = logits.softmax(dim=1).numpy()
    # probability of each entry among the object entries (how sure the map is *which* object it is)
    entry_probs = probs[:, 1:] / (1.0 - probs[:, :1]).clip(1e-12)
    entry = entries_from_logits(logits, dim=1).numpy()
    opaque = gmap.opacities_act().numpy() >= config.min_opacity
    covars = world_covariance(gmap)
    # a Gaussian with a non-finite centre or shape (a diverged optimiser step) is no evidence of
    # anything, and would give its instance (or the support under one) a non-finite box
    finite = torch.isfinite(gmap.params["means"]).all(dim=1).numpy() & np.isfinite(covars).all(axis=(1, 2))
    candidate = (entry >= 0) & opaque & finite & (entry_probs.max(axis=1) >= config.min_probability)
    means = gmap.params["means"].detach().double().numpy()
    colors = gmap.colors().numpy()
    std = axis_std(covars) * config.box_sigma
    background = (entry < 0) & opaque & finite
    support = SupportSurface(means[background], covars[background], config, plane_warm_start)
    groups: list[tuple[int, np.ndarray]] = []  # (codebook entry, Gaussian indices) per connected component
    for code in np.unique(entry[candidate]):
        members = np.flatnonzero(candidate & (entry == code))
        if len(members) < config.min_gaussians:
            continue
        labels = connected_labels(means[members], config.link_radius)
        for label in np.unique(labels):
            component = members[labels == label]
            if len(component) >= config.min_gaussians:
                groups += [(int(code), part) for part in support.split_at_ground(means, component)]
    if config.merge_iou <= 1.0 or (support.enabled and config.footprint_merge_iou <= 1.0):
        groups = _merge_overlapping(groups, means, std, support, config)
    objects: list[MapObject] = []
    for code, indices in groups:
        indices = support.trim_ground_footprint(means, indices)
        confidence = float(entry_probs[indices, code].mean())
        obj = _boxed_object(len(objects), code, confidence, means[indices], std[indices], indices, colors, support,
                            config, None)
        if obj is not None:
            obj.nearest_codebook_entry, obj.nearest_codebook_distance = code, 1.0 - confidence
            objects.append(obj)
    identified = list(objects)
    usable = opaque & finite
    unowned = usable.copy()
    for obj in identified:
        unowned[obj.gaussian_indices] = False
    evidence = np.zeros((0, 3)) if evidence is None else np.asarray(evidence, dtype=np.float64).reshape(-1, 3)
    footprints = None  # the identified objects' footprints, once a cluster needs them
    joined: dict[int, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}  # identified k -> parts no entry named
    # unknown-kind Gaussians are background-decoded, the object's own too: only the surface under the
    # clearance is support (clusters exist only with a support plane, so plane_height is set for them)
    below = None if support.plane_height is None else support.plane_height + config.unknown_clearance
    for cluster in unknown_clusters(means, std, usable, evidence, identified, support, config):
        points, extents = cluster.box_points()
        obj = _boxed_object(len(objects), UNKNOWN_ENTRY, 0.0, points, extents, np.zeros(0, dtype=np.int64),
                            colors, support, config, below)
        if obj is None:
            continue
        indices = np.flatnonzero(unowned & obj.contains(means, _ON_FACE))
        if len(indices) < config.unknown_min_gaussians:
            continue  # returns the map does not explain (something since removed, range noise)
        unowned[indices] = False  # two unknown-kind boxes never share a Gaussian
        if footprints is None:
            footprints = [_footprint(means[o.gaussian_indices], std[o.gaussian_indices], support, config)
                          for o in identified]
        owner = _footprint_owner(_footprint(points, extents, support, config), footprints, config)
        if owner is not None:
            joined.setdefault(owner, []).append((points, extents, indices))
            continue
        obj.gaussian_indices, obj.num_gaussians = indices, int(len(indices))
        obj.confidence = float(probs[indices, 0].mean())
        obj.mean_color = colors[indices].mean(axis=0).astype(np.float64)
        obj.nearest_codebook_entry, obj.nearest_codebook_distance = nearest_entry(entry_probs[indices])
        objects.append(obj)
    for k, parts in joined.items():
        objects[k] = _with_unnamed_parts(objects[k], parts, means, std, colors, support, config, below)
    return objects


def _footprint(points: np.ndarray, extent: np.ndarray, support: SupportSurface,
               config: ObjectConfig) -> tuple[np.ndarray, np.ndarray] | None:
    """The footprint on the support of points reaching ``extent`` (None without a support estimate)."""
    if not support.enabled or config.footprint_merge_iou > 1.0 or len(points) == 0:
        return None
    return footprint_bounds(points, capped_extents(extent, config.box_extent_ratio), support.frame, config.box_trim)


def _footprint_owner(footprint, footprints: list, config: ObjectConfig) -> int | None:
    """Index of the footprint in ``footprints`` that ``footprint`` overlaps most, if by
    ``footprint_merge_iou`` or more."""
    if footprint is None:
        return None
    overlaps = [footprint_iou(footprint, other) if other is not None else 0.0 for other in footprints]
    if not overlaps or max(overlaps) < config.footprint_merge_iou:
        return None
    return int(np.argmax(overlaps))


def _with_unnamed_parts(obj: MapObject, parts: list, means: np.ndarray, std: np.ndarray, colors: np.ndarray,
                        support: SupportSurface, config: ObjectConfig, support_below: float) -> MapObject:
    """``obj`` re-boxed over its own Gaussians and the unknown-kind clusters ``parts``
    (``(points, extents, Gaussian indices)`` each) standing on its footprint, on the support under
    ``support_below`` (the parts are background-decoded); its entry, confidence and id stay (a part
    no entry named says nothing of which object it is)."""
    indices = np.unique(np.concatenate([obj.gaussian_indices, *[idx for _, _, idx in parts]]))
    points = np.concatenate([means[obj.gaussian_indices], *[p for p, _, _ in parts]])
    extents = np.concatenate([std[obj.gaussian_indices], *[e for _, e, _ in parts]])
    boxed = _boxed_object(obj.id, obj.codebook_entry, obj.confidence, points, extents, indices, colors, support,
                          config, support_below)
    if boxed is None:
        return obj
    boxed.nearest_codebook_entry, boxed.nearest_codebook_distance = obj.nearest_codebook_entry, \
        obj.nearest_codebook_distance
    return boxed


def _boxed_object(provisional_id: int, code: int, confidence: float, pts: np.ndarray, half_extents: np.ndarray,
                  indices: np.ndarray, colors: np.ndarray, support: SupportSurface, config: ObjectConfig,
                  support_below: float | None) -> MapObject | None:
    """The object over points ``pts`` (Gaussians ``indices``, their surfaces reaching
    ``half_extents`` along the map axes), its boxes standing on the support; None for a patch of the
    support itself (rising less than ``min_rise``)."""
    half_extents = capped_extents(half_extents, config.box_extent_ratio)
    center, size, rotation = oriented_box(pts, support.up, half_extents, config.box_trim)
    aabb_min, aabb_max = trimmed_bounds(pts, half_extents, config.box_trim)
    height = support.height_near(pts, support_below)
    if height is not None and support.rise(pts, height) < config.min_rise:
        return None  # a patch of the support itself whose identity bled from a neighbour
    if height is not None and support.is_under(pts, height):
        center, size = support.snap_oriented(center, size, rotation, height)
        aabb_min, aabb_max = support.snap_aabb(aabb_min, aabb_max, height)
    mean_color = colors[indices].mean(axis=0).astype(np.float64) if len(indices) else np.zeros(3)
    return MapObject(
        id=provisional_id, codebook_entry=code, confidence=confidence,
        centroid=pts.mean(axis=0), box_center=center, box_size=size, box_rotation=rotation,
        aabb_min=aabb_min, aabb_max=aabb_max, num_gaussians=int(len(indices)),
        mean_color=mean_color, gaussian_indices=indices.astype(np.int64))


class _ElevatedFootprints:
    """Footprints on the support of the groups' Gaussians above ground level, computed when a pair
    needs them: finding the ground level queries the background around each group, and most pairs
    are told apart by the footprints of all their Gaussians at full reach, which contain them."""

    def __init__(self, groups: list[tuple[int, np.ndarray]], means: np.ndarray, std: np.ndarray,
                 support: SupportSurface, config: ObjectConfig):
        self.groups, self.means, self.std, self.support, self.config = groups, means, std, support, config
        self.enabled = support.enabled and config.footprint_merge_iou <= 1.0
        self.outer = [footprint_bounds(means[idx], std[idx], support.frame, 0.0) for _, idx in groups] \
            if self.enabled else []
        self.cache: dict[int, tuple[np.ndarray, np.ndarray] | None] = {}

    def _elevated(self, k: int):
        if k not in self.cache:
            up = self.support.elevated(self.means, self.groups[k][1])
            self.cache[k] = _footprint(self.means[up], self.std[up], self.support, self.config)
        return self.cache[k]

    def overlap(self, i: int, j: int) -> float:
        """Footprint IoU of groups ``i`` and ``j`` (0 when footprints are off)."""
        if not self.enabled or footprint_iou(self.outer[i], self.outer[j]) == 0.0:
            return 0.0
        a, b = self._elevated(i), self._elevated(j)
        return 0.0 if a is None or b is None else footprint_iou(a, b)


def _merge_overlapping(groups: list[tuple[int, np.ndarray]], means: np.ndarray, std: np.ndarray,
                       support: SupportSurface, config: ObjectConfig) -> list[tuple[int, np.ndarray]]:
    """Merge ``(entry, indices)`` components (transitively) of *different* entries whose boxes
    (trimmed, sigma-widened AABBs) reach a 3D IoU of ``merge_iou``, and of any entries whose
    footprints on the support (of their Gaussians above ground level) reach an IoU of
    ``footprint_merge_iou``; a merged group takes the entry most of its Gaussians carry. Same-entry
    components side by side are never merged: connectivity already decided that they are separate
    objects; stacked on one footprint they are one object that a band of background-decoded
    Gaussians cut in two."""
    if len(groups) < 2:
        return groups
    bounds = [trimmed_bounds(means[idx], capped_extents(std[idx], config.box_extent_ratio), config.box_trim)
              for _, idx in groups]
    boxes = [Box3D.from_aabb(*b) for b in bounds]
    footprints = _ElevatedFootprints(groups, means, std, support, config)
    rows, cols = [], []
    for i in range(len(groups)):
        for j in range(i + 1, len(groups)):
            stacked = footprints.overlap(i, j) >= config.footprint_merge_iou
            overlapping = groups[i][0] != groups[j][0] and config.merge_iou <= 1.0 \
                and aabbs_overlap(*bounds[i], *bounds[j]) and box_iou_3d(boxes[i], boxes[j]) >= config.merge_iou
            if stacked or overlapping:
                rows.append(i)
                cols.append(j)
    if not rows:
        return groups
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(groups),) * 2)
    _, labels = connected_components(graph, directed=False)
    merged = []
    for label in np.unique(labels):
        members = [groups[k] for k in np.flatnonzero(labels == label)]
        entry = max(members, key=lambda g: (len(g[1]), -g[0]))[0]
        merged.append((entry, np.sort(np.concatenate([idx for _, idx in members]))))
    return merged
