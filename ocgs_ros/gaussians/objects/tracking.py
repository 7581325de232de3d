"""ObjectTracker: stable object ids while the map grows, queries, and the objects JSON.

Stable ids (:class:`ObjectTracker`): each update matches the new instances to the previous ones of
the *same entry* by Hungarian assignment on centroid distance (pairs further than
``match_max_distance`` apart and with disjoint boxes are not allowed); matched instances keep their
id, the rest get fresh ids. Ids are never reused. An object of unknown kind (entry -1) may match an
object of any entry, either way: when later views give it an entry, it keeps its id and gains the
entry (and an identified object the map stops naming keeps its id too).
"""
from __future__ import annotations

import dataclasses

import numpy as np
from scipy.optimize import linear_sum_assignment

from ocgs_ros.gaussians.map import GaussianMap

from .boxes import aabbs_overlap
from .config import ObjectConfig
from .evidence import PointEvidence
from .extraction import extract_instances
from .ground import PlaneWarmStart
from .map_object import UNKNOWN_ENTRY, MapObject, as_vector

OBJECTS_FORMAT = "ocgs_ros.objects"
OBJECTS_FORMAT_VERSION = 1


class ObjectTracker:
    """Keeps object ids stable between calls to :meth:`update` (see module docstring)."""

    def __init__(self, config: ObjectConfig | None = None):
        self.config = config or ObjectConfig()
        # range returns of every frame, for the geometric path (not saved: a loaded map starts afresh)
        self.evidence = PointEvidence(self.config.unknown_voxel, self.config.unknown_max_voxels)
        self.objects: list[MapObject] = []
        # unknown-kind objects extracted by fewer than unknown_confirm_updates updates: they
        # take part in matching (and keep their ids) but are not among the objects yet
        self._tentative: list[MapObject] = []
        self._sightings: dict[int, int] = {}  # id -> updates it was extracted in
        self.next_id = 1  # 0 is the background label of rendered instance masks
        self.updates = 0
        self._plane_warm_start = PlaneWarmStart()  # live updates' support plane, for the next one

    def add_evidence(self, points: np.ndarray) -> None:
        """Accumulate one frame's range returns ``points [N, 3+]`` (map frame) as geometric evidence
        for objects of unknown kind (:mod:`.unknown`); call it for every frame, whether or not
        :meth:`update` follows."""
        if not self.config.unknown_objects:
            return
        wanted = (self.config.unknown_voxel, self.config.unknown_max_voxels)
        if (self.evidence.voxel, self.evidence.max_voxels) != wanted:
            # the config was replaced (a pipeline loading a saved map applies its own): start afresh
            self.evidence = PointEvidence(*wanted)
        self.evidence.add(points)

    def update(self, gmap: GaussianMap, live: bool = False) -> list[MapObject]:
        """Extract the instances of ``gmap`` and give them ids matched to the previous update.
        ``live``: a live map's update, whose support plane fit starts from the previous live
        update's (:mod:`.ground`); offline updates fit from scratch, so their objects depend only on
        the map."""
        current = extract_instances(gmap, self.config, self.evidence.centres(self.config.unknown_min_hits),
                                    self._plane_warm_start if live else None)
        previous = self.objects + self._tentative
        ids: list[int | None] = [None] * len(current)
        if previous and current:
            big = 1e9
            cost = np.full((len(current), len(previous)), big)
            for i, obj in enumerate(current):
                for j, old in enumerate(previous):
                    if obj.codebook_entry != old.codebook_entry and UNKNOWN_ENTRY not in (obj.codebook_entry,
                                                                                          old.codebook_entry):
                        continue
                    distance = float(np.linalg.norm(obj.centroid - old.centroid))
                    if distance <= self.config.match_max_distance or aabbs_overlap(obj.aabb_min, obj.aabb_max,
                                                                                   old.aabb_min, old.aabb_max):
                        cost[i, j] = distance
            rows, cols = linear_sum_assignment(cost)
            for i, j in zip(rows, cols):
                if cost[i, j] < big:
                    ids[i] = previous[j].id
        for i, obj in enumerate(current):
            if ids[i] is None:
                ids[i] = self.next_id
                self.next_id += 1
            obj.id = ids[i]
            self._sightings[obj.id] = self._sightings.get(obj.id, 0) + 1
        # an unknown-kind object is published once unknown_confirm_updates updates have extracted it
        # (then whenever it is extracted): the part of a known object not yet named in the first
        # frames is a one-update cluster, while a small real object may be missed by an update now
        # and then, so updates are counted, not required in a row; identified objects are published
        # at once, as always
        published = {o.id for o in self.objects}  # (a loaded map's objects count as confirmed)
        confirmed, self._tentative = [], []
        for obj in current:
            if not obj.unknown_kind or obj.id in published \
                    or self._sightings[obj.id] >= self.config.unknown_confirm_updates:
                confirmed.append(obj)
            else:
                self._tentative.append(obj)
        self.objects = sorted(confirmed, key=lambda o: o.id)
        self.updates += 1
        return self.objects

    # -- queries ------------------------------------------------------------------------------
    def get(self, object_id: int) -> MapObject | None:
        return next((o for o in self.objects if o.id == object_id), None)

    def query_by_codebook(self, entry: int) -> list[MapObject]:
        """Objects whose codebook entry is ``entry``."""
        return [o for o in self.objects if o.codebook_entry == int(entry)]

    def query_by_point(self, point, radius: float) -> list[MapObject]:
        """Objects whose oriented box comes within ``radius`` of ``point``, nearest first."""
        point = as_vector(point, 3)
        if radius < 0:
            raise ValueError(f"query_by_point: radius must be >= 0, got {radius}")
        hits = [(o.distance_to(point), o) for o in self.objects]
        return [o for d, o in sorted(hits, key=lambda t: (t[0], t[1].id)) if d <= radius]

    def query_by_box(self, center, size, rotation=None) -> list[MapObject]:
        """Objects whose centroid lies inside the box ``center [3]``, ``size [3]`` (full extents),
        ``rotation [3,3]`` (box axes as columns; identity when None)."""
        center, size = as_vector(center, 3), as_vector(size, 3)
        if np.any(size < 0):
            raise ValueError(f"query_by_box: size must be >= 0, got {size.tolist()}")
        rotation = np.eye(3) if rotation is None else np.asarray(rotation, dtype=np.float64).reshape(3, 3)
        inside = []
        for o in self.objects:
            local = (o.centroid - center) @ rotation
            if np.all(np.abs(local) <= size / 2):
                inside.append(o)
        return inside

    # -- persistence --------------------------------------------------------------------------
    def to_json(self) -> dict:
        config = dataclasses.asdict(self.config)
        config["up_axis"] = None if self.config.up_axis is None else list(self.config.up_axis)
        return {"format": OBJECTS_FORMAT, "format_version": OBJECTS_FORMAT_VERSION, "config": config,
                "next_id": self.next_id, "updates": self.updates, "objects": [o.to_json() for o in self.objects]}

    @classmethod
    def from_json(cls, data: dict) -> "ObjectTracker":
        if not isinstance(data, dict) or data.get("format") != OBJECTS_FORMAT:
            raise ValueError(f"not an objects JSON (format must be {OBJECTS_FORMAT!r})")
        if int(data.get("format_version", -1)) > OBJECTS_FORMAT_VERSION:
            raise ValueError(f"objects JSON format_version {data['format_version']} is newer than "
                             f"{OBJECTS_FORMAT_VERSION}")
        tracker = cls(ObjectConfig.from_dict(data["config"]))
        tracker.objects = [MapObject.from_json(o) for o in data["objects"]]
        tracker.next_id = int(data["next_id"])
        tracker.updates = int(data.get("updates", 0))
        if tracker.objects and tracker.next_id <= max(o.id for o in tracker.objects):
            raise ValueError("objects JSON: next_id must exceed every object id")
        return tracker
