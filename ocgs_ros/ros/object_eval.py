"""Published objects vs the simulator's ground truth: 3D IoU of gravity-aligned boxes and recall.

Both sides are boxes with a centre, extents (l, w, h) and a yaw about +z: the simulator's objects
(``/sim/objects`` JSON) and the map's oriented boxes (``ObjectInstance`` poses, whose rotation is
about z because the tracker fits gravity-aligned boxes). The IoU is the exact intersection of the
two footprints (``cv2.intersectConvexConvex``) times the overlap in z, over the union of the volumes.
Matching is one-to-one (Hungarian on IoU), so one large blob cannot claim several objects.
"""
from __future__ import annotations

import json
import math

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment


def footprint(center, size, yaw: float) -> np.ndarray:
    """Counter-clockwise corners [4, 2] of a box's footprint."""
    c, s = math.cos(yaw), math.sin(yaw)
    half = np.array([[1, 1], [-1, 1], [-1, -1], [1, -1]], dtype=np.float64) * (np.asarray(size[:2]) / 2.0)
    return half @ np.array([[c, s], [-s, c]]) + np.asarray(center[:2], dtype=np.float64)


def footprint_overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Area of the intersection of two convex footprints (OpenCV's convex-polygon intersection)."""
    area, _ = cv2.intersectConvexConvex(a.astype(np.float32), b.astype(np.float32))
    return max(0.0, float(area))


def box_iou_3d(center_a, size_a, yaw_a: float, center_b, size_b, yaw_b: float) -> float:
    """IoU of two boxes that rotate about z only (``center`` is the box centre, ``size`` l, w, h)."""
    size_a, size_b = np.abs(np.asarray(size_a, dtype=np.float64)), np.abs(np.asarray(size_b, dtype=np.float64))
    inter_xy = footprint_overlap(footprint(center_a, size_a, yaw_a), footprint(center_b, size_b, yaw_b))
    za, zb = float(center_a[2]), float(center_b[2])
    inter_z = max(0.0, min(za + size_a[2] / 2, zb + size_b[2] / 2) - max(za - size_a[2] / 2, zb - size_b[2] / 2))
    inter = inter_xy * inter_z
    union = float(np.prod(size_a) + np.prod(size_b)) - inter
    return inter / union if union > 0 else 0.0


def yaw_of(rotation: np.ndarray) -> float:
    return math.atan2(float(rotation[1, 0]), float(rotation[0, 0]))


def ground_truth_boxes(objects_json: str | dict) -> list[dict]:
    """``/sim/objects`` payload -> [{instance_id, kind_name, center, size, yaw}]."""
    data = json.loads(objects_json) if isinstance(objects_json, str) else objects_json
    return [{"instance_id": int(o["instance_id"]), "kind_name": o["kind_name"], "center": np.asarray(o["center"], float),
             "size": np.asarray(o["size"], float), "yaw": float(o["yaw"])} for o in data["objects"]]


def match_objects(ground_truth: list[dict], boxes, iou_threshold: float = 0.25) -> dict:
    """Recall / precision of predicted ``boxes`` (:class:`~ocgs_ros.ros.conversions.InstanceBoxes`)
    against ``ground_truth`` at ``iou_threshold``, with one-to-one matching."""
    n_gt, n_pred = len(ground_truth), len(boxes)
    iou = np.zeros((n_gt, n_pred))
    for i, gt in enumerate(ground_truth):
        for j in range(n_pred):
            iou[i, j] = box_iou_3d(gt["center"], gt["size"], gt["yaw"], boxes.centers[j], boxes.sizes[j],
                                   yaw_of(boxes.rotations[j]))
    matched: list[tuple[int, int, float]] = []
    if n_gt and n_pred:
        rows, cols = linear_sum_assignment(-iou)
        matched = [(int(r), int(c), float(iou[r, c])) for r, c in zip(rows, cols) if iou[r, c] >= iou_threshold]
    best = iou.max(axis=1) if n_pred else np.zeros(n_gt)
    return {
        "ground_truth_objects": n_gt,
        "predicted_objects": n_pred,
        "matched": len(matched),
        "recall": len(matched) / n_gt if n_gt else float("nan"),
        "precision": len(matched) / n_pred if n_pred else float("nan"),
        "iou_threshold": iou_threshold,
        "best_iou_per_object": {ground_truth[i]["kind_name"] + f"#{ground_truth[i]['instance_id']}": round(float(b), 3)
                                for i, b in enumerate(best)},
        "matches": [{"instance_id": ground_truth[r]["instance_id"], "object_id": int(boxes.ids[c]), "iou": round(v, 3)}
                    for r, c, v in matched],
    }
