"""Object instances of the Gaussian map: extraction, stable ids, queries, rendered instance masks.

* :mod:`.config` — :class:`ObjectConfig` (user-facing fields are ``setting()`` fields).
* :mod:`.extraction` — :func:`extract_instances`: identity + connectivity, merging of components
  whose Gaussians disagree on the entry.
* :mod:`.boxes` — oriented / axis-aligned boxes over Gaussians, their covariances.
* :mod:`.support` — the support surface: box bottoms snapped onto it, ground-level Gaussians.
* :mod:`.unknown` — the geometric path: objects no codebook entry names (entry -1).
* :mod:`.tracking` — :class:`ObjectTracker`: stable ids, queries, the objects JSON.
* :mod:`.map_object` — :class:`MapObject`; ``obj.box()`` / ``obj.aabb_box()`` give
  :class:`~ocgs_ros.evaluation.Box3D` for IoU and matching (:mod:`ocgs_ros.evaluation`).
* :mod:`.render` — :func:`render_instance_mask`.
"""
from .boxes import axis_std, oriented_box, world_covariance
from .config import ObjectConfig
from .extraction import extract_instances
from .map_object import UNKNOWN_ENTRY, MapObject
from .render import render_instance_mask
from .tracking import OBJECTS_FORMAT, OBJECTS_FORMAT_VERSION, ObjectTracker

__all__ = ["OBJECTS_FORMAT", "OBJECTS_FORMAT_VERSION", "UNKNOWN_ENTRY", "MapObject", "ObjectConfig", "ObjectTracker",
           "axis_std", "extract_instances", "oriented_box", "render_instance_mask", "world_covariance"]
