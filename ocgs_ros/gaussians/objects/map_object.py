"""MapObject: one object instance of the Gaussian map (id, codebook entry, boxes, Gaussians) and
its JSON form.

An object of a kind the codebook does not name (found by the geometric path, :mod:`.unknown`) has
``codebook_entry`` :data:`UNKNOWN_ENTRY` (-1); its ``nearest_codebook_entry`` and
``nearest_codebook_distance`` say which known kind it resembles most, and how little."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ocgs_ros.evaluation import Box3D

#: ``codebook_entry`` of an object of unknown kind (no codebook entry names it)
UNKNOWN_ENTRY = -1
#: fields absent from objects JSON written before issue 19, and their values there
_OPTIONAL_FIELDS = {"nearest_codebook_entry": UNKNOWN_ENTRY, "nearest_codebook_distance": 1.0}


@dataclass
class MapObject:
    id: int  # stable across updates (an object keeps its id while the map grows)
    codebook_entry: int  # 0..M-1, or UNKNOWN_ENTRY (-1): a kind the codebook does not name
    # [0, 1]: mean probability of the entry over the instance's Gaussians (among the object
    # entries); for an unknown-kind object, the mean probability that its Gaussians are of no kind
    # the codebook knows (background): how sure the map is that the kind is unknown
    confidence: float
    centroid: np.ndarray  # [3] float64, map frame
    box_center: np.ndarray  # [3] oriented box centre
    box_size: np.ndarray  # [3] extents along the box axes
    box_rotation: np.ndarray  # [3, 3] rotation of the box axes (columns) in the map frame
    aabb_min: np.ndarray  # [3]
    aabb_max: np.ndarray  # [3]
    num_gaussians: int
    mean_color: np.ndarray  # [3] RGB in [0, 1]
    gaussian_indices: np.ndarray  # int64 indices into the map at extraction time
    # The codebook entry the object's Gaussians favour (the largest mean probability among the
    # object entries) and the total-variation distance between their mean entry distribution and
    # that entry, 1 - its mean probability: 0 = every Gaussian is sure of it, 1 - 1/M = no
    # preference at all. For an identified object it is its own entry and 1 - confidence; for an
    # unknown-kind object a hint at the known kind it resembles most (and how little).
    nearest_codebook_entry: int = UNKNOWN_ENTRY
    nearest_codebook_distance: float = 1.0

    @property
    def unknown_kind(self) -> bool:
        """Whether no codebook entry names this object (found by geometry alone)."""
        return self.codebook_entry == UNKNOWN_ENTRY

    def to_json(self) -> dict:
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.tolist() if isinstance(value, np.ndarray) else value
        return out

    @classmethod
    def from_json(cls, data: dict) -> "MapObject":
        missing = sorted({f.name for f in dataclasses.fields(cls)} - set(data) - set(_OPTIONAL_FIELDS))
        if missing:
            raise ValueError(f"MapObject.from_json: missing field(s) {missing}")
        return cls(
            id=int(data["id"]), codebook_entry=int(data["codebook_entry"]), confidence=float(data["confidence"]),
            centroid=as_vector(data["centroid"], 3), box_center=as_vector(data["box_center"], 3),
            box_size=as_vector(data["box_size"], 3),
            box_rotation=np.asarray(data["box_rotation"], dtype=np.float64).reshape(3, 3),
            aabb_min=as_vector(data["aabb_min"], 3), aabb_max=as_vector(data["aabb_max"], 3),
            num_gaussians=int(data["num_gaussians"]), mean_color=as_vector(data["mean_color"], 3),
            gaussian_indices=np.asarray(data["gaussian_indices"], dtype=np.int64).reshape(-1),
            nearest_codebook_entry=int(data.get("nearest_codebook_entry", _OPTIONAL_FIELDS["nearest_codebook_entry"])),
            nearest_codebook_distance=float(data.get("nearest_codebook_distance",
                                                     _OPTIONAL_FIELDS["nearest_codebook_distance"])))

    def box(self) -> Box3D:
        """The oriented box, for :mod:`ocgs_ros.evaluation` (IoU, matching)."""
        return Box3D(self.box_center, self.box_size, self.box_rotation)

    def aabb_box(self) -> Box3D:
        """The axis-aligned box, for :mod:`ocgs_ros.evaluation`."""
        return Box3D.from_aabb(self.aabb_min, self.aabb_max)

    def contains(self, points: np.ndarray, margin: float = 0.0) -> np.ndarray:
        """Which ``points [P,3]`` lie inside the oriented box grown by ``margin``."""
        local = (np.atleast_2d(points) - self.box_center) @ self.box_rotation
        return np.all(np.abs(local) <= self.box_size / 2 + margin, axis=1)

    def distance_to(self, point: np.ndarray) -> float:
        """Euclidean distance from ``point`` to the oriented box (0 inside)."""
        local = (np.asarray(point, dtype=np.float64) - self.box_center) @ self.box_rotation
        outside = np.maximum(np.abs(local) - self.box_size / 2, 0.0)
        return float(np.linalg.norm(outside))


def as_vector(value, n: int) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64).reshape(-1)
    if arr.shape != (n,):
        raise ValueError(f"expected {n} numbers, got {arr.shape[0]}")
    return arr
