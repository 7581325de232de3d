"""Published map objects vs the simulator's ground truth: recall and precision of one-to-one box
matches (:func:`~ocgs_ros.evaluation.boxes.match_boxes`, the one ruler).

The ground truth is the simulator's objects (:meth:`GroundTruthObject.from_sim`) or the
``/sim/objects`` JSON payload (``{"objects": [{instance_id, kind_name, center, size, yaw}]}``),
upright boxes either way; the predictions are any object with ``ids [N]``,
``centers [N, 3]``, ``sizes [N, 3]`` and ``rotations [N, 3, 3]`` arrays (the published
``ObjectInstance`` boxes as arrays). No ROS here.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from ocgs_ros.sim.types import ObjectInfo

from .boxes import Box3D, match_boxes


@dataclass(frozen=True)
class GroundTruthObject:
    instance_id: int
    kind_name: str
    box: Box3D

    @classmethod
    def from_sim(cls, info: ObjectInfo) -> "GroundTruthObject":
        """A simulator object (``world.objects``), without the JSON round trip."""
        return cls(int(info.instance_id), str(info.kind_name), Box3D.from_yaw(info.center, info.size, info.yaw))

    @property
    def label(self) -> str:
        return f"{self.kind_name}#{self.instance_id}"


def ground_truth_boxes(objects_json: str | dict) -> list[GroundTruthObject]:
    """``/sim/objects`` payload (JSON text or its dict) -> one :class:`GroundTruthObject` per object.

    Raises ValueError on a payload without that shape."""
    try:
        data = json.loads(objects_json) if isinstance(objects_json, str) else objects_json
        return [GroundTruthObject(int(o["instance_id"]), str(o["kind_name"]),
                                  Box3D.from_yaw(o["center"], o["size"], float(o["yaw"]))) for o in data["objects"]]
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not a /sim/objects payload: {exc!r}") from exc


def match_objects(ground_truth: list[GroundTruthObject], boxes, iou_threshold: float = 0.25) -> dict:
    """Recall / precision of the predicted ``boxes`` against ``ground_truth`` at ``iou_threshold``
    (one-to-one), with the best IoU each object reached and the matched pairs."""
    predicted = [Box3D(center, size, rotation) for center, size, rotation in zip(boxes.centers, boxes.sizes,
                                                                                   boxes.rotations)]
    match = match_boxes([g.box for g in ground_truth], predicted, iou_threshold)
    return {
        "ground_truth_objects": match.num_gt,
        "predicted_objects": match.num_pred,
        "matched": match.matched,
        "recall": match.recall,
        "precision": match.precision,
        "iou_threshold": iou_threshold,
        "best_iou_per_object": {g.label: round(float(best), 3) for g, best in zip(ground_truth, match.best_iou_per_gt())},
        "matches": [{"instance_id": ground_truth[r].instance_id, "object_id": int(boxes.ids[c]), "iou": round(v, 3)}
                    for r, c, v in match.pairs],
    }
