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
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from ocgs_ros.evaluation import Box3D, box_iou_3d
from ocgs_ros.gaussians.map import GaussianMap, entries_from_logits

from .boxes import axis_std, oriented_box, trimmed_bounds, world_covariance
from .clustering import connected_labels
from .config import ObjectConfig
from .map_object import MapObject
from .support import SupportSurface


@torch.no_grad()
def extract_instances(gmap: GaussianMap, config: ObjectConfig | None = None) -> list[MapObject]:
    """Instances of ``gmap`` (ids are provisional, 0-based in extraction order; use
    :class:`ObjectTracker` for stable ids)."""
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
    support = SupportSurface(means[background], covars[background], config)
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
    if config.merge_iou <= 1.0:
        groups = _merge_overlapping(groups, means, std, config)
    objects: list[MapObject] = []
    for code, indices in groups:
        indices = support.trim_ground_footprint(means, indices)
        pts = means[indices]
        center, size, rotation = oriented_box(pts, support.up, std[indices], config.box_trim)
        aabb_min, aabb_max = trimmed_bounds(pts, std[indices], config.box_trim)
        height = support.height_near(pts)
        if height is not None and support.rise(pts, height) < config.min_rise:
            continue  # a patch of the support itself whose identity bled from a neighbour
        if height is not None and support.is_under(pts, height):
            center, size = support.snap_oriented(center, size, rotation, height)
            aabb_min, aabb_max = support.snap_aabb(aabb_min, aabb_max, height)
        objects.append(MapObject(
            id=len(objects), codebook_entry=code, confidence=float(entry_probs[indices, code].mean()),
            centroid=pts.mean(axis=0), box_center=center, box_size=size, box_rotation=rotation,
            aabb_min=aabb_min, aabb_max=aabb_max, num_gaussians=int(len(indices)),
            mean_color=colors[indices].mean(axis=0).astype(np.float64), gaussian_indices=indices.astype(np.int64)))
    return objects


def _merge_overlapping(groups: list[tuple[int, np.ndarray]], means: np.ndarray, std: np.ndarray,
                       config: ObjectConfig) -> list[tuple[int, np.ndarray]]:
    """Merge ``(entry, indices)`` components of *different* entries whose boxes (trimmed,
    sigma-widened AABBs) reach a 3D IoU of ``merge_iou`` (transitively); a merged group takes the
    entry most of its Gaussians carry. Same-entry components are never merged here: connectivity already decided
    that they are separate objects."""
    if len(groups) < 2:
        return groups
    boxes = [Box3D.from_aabb(*trimmed_bounds(means[idx], std[idx], config.box_trim)) for _, idx in groups]
    rows, cols = [], []
    for i in range(len(groups)):
        for j in range(i + 1, len(groups)):
            if groups[i][0] == groups[j][0]:
                continue
            if box_iou_3d(boxes[i], boxes[j]) >= config.merge_iou:
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
