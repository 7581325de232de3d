"""Typed outputs of the mapping and BEV nodes: map objects -> ``ObjectInstance[Array]``, BEV boxes ->
``Detection3D[Array]``, and both back to numpy (for tests, tools and downstream nodes).

Map objects are duck-typed: anything with the attributes of ``ocgs_ros.gaussians.objects.MapObject``
(``id, codebook_entry, confidence, box_center [3], box_size [3], box_rotation [3, 3], num_gaussians,
mean_color [3]``, optionally ``nearest_codebook_entry, nearest_codebook_distance``) converts, so this
module does not import the map library (only the shared codebook palette, ``ocgs_ros.mapping.palette``).
``codebook_entry`` -1 is an object of unknown kind (found by geometry; the nearest entry is a hint).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
from geometry_msgs.msg import Vector3
from ocgs_ros_interfaces.msg import Detection3D, Detection3DArray, ObjectInstance, ObjectInstanceArray
from std_msgs.msg import ColorRGBA

from ocgs_ros.mapping.palette import codebook_color  # noqa: F401 (one palette; re-exported)
from ocgs_ros.ros.conversions.builders import boxes_to_marker_array
from ocgs_ros.ros.conversions.transforms import (
    make_transform,
    matrix_to_pose,
    pose_to_matrix,
    to_stamp,
)


def _vec3(values, what: str) -> np.ndarray:
    out = np.asarray(values, dtype=np.float64).reshape(-1)
    if out.shape != (3,) or not np.all(np.isfinite(out)):
        raise ValueError(f"{what} must be 3 finite numbers, got {values!r}")
    return out


def _rotation(values) -> np.ndarray:
    R = np.eye(3) if values is None else np.asarray(values, dtype=np.float64)
    if R.shape != (3, 3) or not np.all(np.isfinite(R)):
        raise ValueError(f"box_rotation must be a finite [3, 3] matrix, got shape {np.shape(values)}")
    # Boxes fitted by PCA may come out as reflections; a pose needs a proper rotation.
    if np.linalg.det(R) < 0:
        R = R.copy()
        R[:, 2] *= -1.0
    return R


def map_object_to_msg(obj):
    """One map object -> ``ocgs_ros_interfaces/ObjectInstance`` (pose = box centre + orientation)."""
    confidence = float(obj.confidence)
    if not (math.isfinite(confidence) and 0.0 <= confidence <= 1.0 + 1e-6):
        raise ValueError(f"object {obj.id}: confidence must be in [0, 1], got {confidence}")
    size = _vec3(obj.box_size, f"object {obj.id} box_size")
    if np.any(size < 0):
        raise ValueError(f"object {obj.id}: box_size must be non-negative, got {size}")
    color = np.clip(_vec3(obj.mean_color, f"object {obj.id} mean_color"), 0.0, 1.0)
    msg = ObjectInstance()
    msg.id = int(obj.id)
    msg.codebook_entry = int(obj.codebook_entry)
    msg.confidence = min(confidence, 1.0)
    msg.pose = matrix_to_pose(make_transform(_rotation(getattr(obj, "box_rotation", None)),
                                             _vec3(obj.box_center, f"object {obj.id} box_center")))
    msg.size = Vector3(x=float(size[0]), y=float(size[1]), z=float(size[2]))
    msg.gaussian_count = int(obj.num_gaussians)
    msg.mean_color = ColorRGBA(r=float(color[0]), g=float(color[1]), b=float(color[2]), a=1.0)
    # without the hint fields (an identified object from elsewhere): its own entry, 1 - confidence
    msg.nearest_codebook_entry = int(getattr(obj, "nearest_codebook_entry", msg.codebook_entry))
    distance = float(getattr(obj, "nearest_codebook_distance", 1.0 - msg.confidence if msg.codebook_entry >= 0
                             else 1.0))
    if not (math.isfinite(distance) and -1e-6 <= distance <= 1.0 + 1e-6):
        raise ValueError(f"object {obj.id}: nearest_codebook_distance must be in [0, 1], got {distance}")
    # float32 as the wire carries it: an in-process message equals the one a subscriber receives
    msg.nearest_codebook_distance = float(np.float32(min(max(distance, 0.0), 1.0)))
    return msg


def map_objects_to_msg(objects: Iterable, frame_id: str, stamp):
    """Map objects -> ``ObjectInstanceArray`` in ``frame_id`` (the map frame)."""
    msg = ObjectInstanceArray()
    msg.header.frame_id = frame_id
    msg.header.stamp = to_stamp(stamp)
    msg.objects = [map_object_to_msg(o) for o in objects]
    return msg


@dataclass
class InstanceBoxes:
    """``ObjectInstance[]`` as arrays: ids [N], codebook entries [N] (-1 = unknown kind), confidences
    [N], centres [N, 3], sizes [N, 3], rotations [N, 3, 3], Gaussian counts [N], mean colours [N, 3],
    nearest codebook entries [N] and their distances [N]."""

    ids: np.ndarray
    codebook_entries: np.ndarray
    confidences: np.ndarray
    centers: np.ndarray
    sizes: np.ndarray
    rotations: np.ndarray
    gaussian_counts: np.ndarray
    mean_colors: np.ndarray
    nearest_entries: np.ndarray
    nearest_distances: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)


def instances_to_boxes(instances: Sequence) -> InstanceBoxes:
    """``ObjectInstance[]`` (e.g. ``ObjectInstanceArray.objects`` or a QueryObjects response) -> arrays."""
    poses = [pose_to_matrix(o.pose) for o in instances]
    return InstanceBoxes(
        ids=np.array([o.id for o in instances], dtype=np.int64),
        codebook_entries=np.array([o.codebook_entry for o in instances], dtype=np.int64),
        confidences=np.array([o.confidence for o in instances], dtype=np.float64),
        centers=np.array([T[:3, 3] for T in poses], dtype=np.float64).reshape(-1, 3),
        sizes=np.array([[o.size.x, o.size.y, o.size.z] for o in instances], dtype=np.float64).reshape(-1, 3),
        rotations=np.array([T[:3, :3] for T in poses], dtype=np.float64).reshape(-1, 3, 3),
        gaussian_counts=np.array([o.gaussian_count for o in instances], dtype=np.int64),
        mean_colors=np.array([[o.mean_color.r, o.mean_color.g, o.mean_color.b] for o in instances],
                             dtype=np.float64).reshape(-1, 3),
        nearest_entries=np.array([o.nearest_codebook_entry for o in instances], dtype=np.int64),
        nearest_distances=np.array([o.nearest_codebook_distance for o in instances], dtype=np.float64),
    )


def object_markers(objects: Sequence, frame_id: str, stamp, alpha: float = 0.35):
    """Map objects -> MarkerArray (boxes coloured by codebook entry + ``#id entry conf`` labels)."""
    return instance_markers([map_object_to_msg(o) for o in objects], frame_id, stamp, alpha)


def instance_markers(msgs: Sequence, frame_id: str, stamp, alpha: float = 0.35):
    """:func:`object_markers` of ``ObjectInstance`` messages already built (the node's ``~/objects``):
    each object is converted once per frame, not once per topic."""
    msgs = list(msgs)
    boxes = instances_to_boxes(msgs)
    quats = np.array([[m.pose.orientation.x, m.pose.orientation.y, m.pose.orientation.z, m.pose.orientation.w]
                      for m in msgs]).reshape(-1, 4)
    labels = [f"#{m.id} c{m.codebook_entry} {m.confidence:.2f}" if m.codebook_entry >= 0
              else f"#{m.id} unknown (~c{m.nearest_codebook_entry} {m.nearest_codebook_distance:.2f})" for m in msgs]
    colors = np.array([codebook_color(m.codebook_entry) for m in msgs]).reshape(-1, 3)
    text_height = float(np.clip(np.median(boxes.sizes[:, 2]) if len(msgs) else 0.05, 0.02, 0.5))
    return boxes_to_marker_array(boxes.centers, boxes.sizes, quats, labels, colors, frame_id, stamp,
                                 ns="objects", style="cube", alpha=alpha, text_height=text_height)


# --------------------------------------------------------------------------------------------
# BEV detections
# --------------------------------------------------------------------------------------------
def check_bev_boxes(boxes, scores, labels, class_names) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """BEV model output -> (boxes float64 [D, 9], scores [D], labels int64 [D]); ValueError naming
    the first problem (shape, NaN/inf, label outside ``class_names``)."""
    boxes = np.asarray(boxes, dtype=np.float64)
    n = boxes.shape[0] if boxes.ndim == 2 else -1
    if boxes.shape != (n, 9):
        raise ValueError(f"BEV boxes must be [D, 9] (x, y, z, l, w, h, yaw, vx, vy), got {boxes.shape}")
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels).reshape(-1)
    if scores.shape != (n,) or labels.shape != (n,):
        raise ValueError(f"scores and labels must be [{n}], got {scores.shape} and {labels.shape}")
    if not (np.all(np.isfinite(boxes)) and np.all(np.isfinite(scores))):
        raise ValueError("BEV boxes/scores contain NaN or inf")
    if n and (labels.min() < 0 or labels.max() >= len(class_names)):
        raise ValueError(f"labels must index class_names ({len(class_names)} classes), got {labels.min()}..{labels.max()}")
    return boxes, scores, labels.astype(np.int64)


def yaw_pose(x: float, y: float, z: float, yaw: float):
    """``geometry_msgs/Pose`` at (x, y, z) turned by ``yaw`` about +z."""
    c, s = math.cos(yaw), math.sin(yaw)
    return matrix_to_pose(make_transform(np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]), [x, y, z]))


def bev_to_detection_array(boxes, scores, labels, class_names: Sequence[str], frame_id: str, stamp):
    """BEV boxes ``[D, 9]`` (x, y, z, l, w, h, yaw, vx, vy; ego frame), scores [D], labels [D] ->
    ``ocgs_ros_interfaces/Detection3DArray``."""
    boxes, scores, labels = check_bev_boxes(boxes, scores, labels, class_names)
    msg = Detection3DArray()
    msg.header.frame_id = frame_id
    msg.header.stamp = to_stamp(stamp)
    for box, score, label in zip(boxes, scores, labels):
        d = Detection3D()
        d.class_id = int(label)
        d.class_name = str(class_names[label])
        d.score = float(np.clip(score, 0.0, 1.0))
        d.pose = yaw_pose(box[0], box[1], box[2], box[6])
        d.size = Vector3(x=float(box[3]), y=float(box[4]), z=float(box[5]))
        d.velocity = Vector3(x=float(box[7]), y=float(box[8]), z=0.0)
        msg.detections.append(d)
    return msg


def detection_array_to_bev(msg) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """``Detection3DArray`` -> (boxes [D, 9], scores [D], labels [D], class names [D]); inverse of
    :func:`bev_to_detection_array` (yaw from the pose's rotation about z)."""
    boxes, scores, labels, names = [], [], [], []
    for d in msg.detections:
        T = pose_to_matrix(d.pose)
        yaw = math.atan2(T[1, 0], T[0, 0])
        boxes.append([*T[:3, 3], d.size.x, d.size.y, d.size.z, yaw, d.velocity.x, d.velocity.y])
        scores.append(d.score)
        labels.append(d.class_id)
        names.append(d.class_name)
    return (np.array(boxes, dtype=np.float64).reshape(-1, 9), np.array(scores, dtype=np.float64),
            np.array(labels, dtype=np.int64), names)


#: box class -> marker colour (RGB in [0, 1])
_CLASS_COLORS = {"car": (0.2, 0.6, 1.0), "truck": (1.0, 0.6, 0.1), "pedestrian": (1.0, 0.2, 0.3),
                 "cyclist": (0.3, 1.0, 0.3)}


def detection_markers(boxes, scores, labels, class_names: Sequence[str], frame_id: str, stamp):
    """BEV boxes -> wireframe MarkerArray with ``class score`` labels, coloured by class."""
    boxes, scores, labels = check_bev_boxes(boxes, scores, labels, class_names)
    names = [str(class_names[i]) for i in labels]
    colors = np.array([_CLASS_COLORS.get(n, codebook_color(int(i))) for n, i in zip(names, labels)]).reshape(-1, 3)
    text = [f"{n} {s:.2f}" for n, s in zip(names, scores)]
    return boxes_to_marker_array(boxes[:, :3], np.abs(boxes[:, 3:6]), boxes[:, 6], text, colors, frame_id, stamp,
                                 ns="detections", style="wireframe", line_width=0.1, text_height=0.8)
