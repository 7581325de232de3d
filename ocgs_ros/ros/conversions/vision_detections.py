"""BEV boxes -> ``vision_msgs/Detection3DArray``, the standard 3D detection message that downstream
ROS stacks (trackers, planners) and RViz plugins take.

One ``Detection3D`` per box: a single hypothesis (class name as ``class_id``, score) whose pose is
the box centre and heading, the same pose and the box extent in ``bbox``. vision_msgs has no
velocity field; the BEV model's velocity stays in ``ocgs_ros_interfaces/Detection3D``. In a
pip-only install ``vision_msgs`` is the stand-in built by ``scripts/build_interfaces.sh``
(same definitions as the real package, so the type hash on the wire is the real one).
"""
from __future__ import annotations

from typing import Sequence

from geometry_msgs.msg import Vector3
from std_msgs.msg import Header
from vision_msgs.msg import Detection3D, Detection3DArray, ObjectHypothesisWithPose

from ocgs_ros.ros.conversions.objects import check_bev_boxes, yaw_pose
from ocgs_ros.ros.conversions.transforms import to_stamp


def bev_to_vision_detections(boxes, scores, labels, class_names: Sequence[str], frame_id: str,
                             stamp) -> Detection3DArray:
    """BEV boxes ``[D, 9]`` (x, y, z, l, w, h, yaw, vx, vy; ``frame_id``), scores [D], labels [D]
    (indices into ``class_names``) -> ``vision_msgs/Detection3DArray``.

    Every detection carries the array's header (vision_msgs lets them differ; ours never do), an
    empty ``id`` (the model does not track) and a zero pose covariance (the model gives none).
    Raises ``ValueError`` for malformed boxes, NaN/inf, or labels outside ``class_names``.
    """
    boxes, scores, labels = check_bev_boxes(boxes, scores, labels, class_names)
    msg = Detection3DArray()
    msg.header.frame_id = frame_id
    msg.header.stamp = to_stamp(stamp)
    for box, score, label in zip(boxes, scores, labels):
        # Fresh sub-messages per field: rclpy messages are mutable, a shared one would alias.
        detection = Detection3D()
        detection.header = Header(frame_id=frame_id, stamp=msg.header.stamp)
        hypothesis = ObjectHypothesisWithPose()
        hypothesis.hypothesis.class_id = str(class_names[label])
        hypothesis.hypothesis.score = min(max(float(score), 0.0), 1.0)
        hypothesis.pose.pose = yaw_pose(box[0], box[1], box[2], box[6])
        detection.results = [hypothesis]
        detection.bbox.center = yaw_pose(box[0], box[1], box[2], box[6])
        detection.bbox.size = Vector3(x=float(box[3]), y=float(box[4]), z=float(box[5]))
        msg.detections.append(detection)
    return msg
