"""Evaluation shared by every report (no ROS): 3D boxes, their IoU and one-to-one matching.

* :mod:`.boxes` — :class:`Box3D`, :func:`box_iou_3d`, :func:`iou_matrix`, :func:`match_boxes`
  (thresholds are always the caller's argument).
* :mod:`.objects` — published map objects vs the simulator's ground-truth objects (recall,
  precision, best IoU per object).
"""
from .boxes import Box3D, BoxMatch, box_iou_3d, iou_matrix, match_boxes
from .objects import GroundTruthObject, ground_truth_boxes, match_objects

__all__ = ["Box3D", "BoxMatch", "GroundTruthObject", "box_iou_3d", "ground_truth_boxes", "iou_matrix",
           "match_boxes", "match_objects"]
