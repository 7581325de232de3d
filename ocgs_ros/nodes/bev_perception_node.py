"""bev_perception_node: camera(s) + LiDAR -> fused BEV 3D detections and BEV map layers.

Inputs (sensor-data QoS, time-synchronised): one ``Image`` + ``CameraInfo`` per camera (any number
that matches the model, e.g. the six of a surround rig) and a ``PointCloud2``; extrinsics from TF
(ego frame <- each camera's frame at that image's own stamp, ego <- LiDAR at the LiDAR's). A camera
frame missing from TF rejects the frame with the ``tf_*`` reason, naming the camera and its frame.
The gradient-calibrated BEV model (:mod:`ocgs_ros.bev`) runs on a newest-wins worker
(:mod:`ocgs_ros.ros.perception_node`) and the node publishes, in the ego frame and with the LiDAR's
stamp:

* ``~/detections`` (``ocgs_ros_interfaces/Detection3DArray``: class, score, box, velocity),
* ``~/vision_detections`` (``vision_msgs/Detection3DArray``, what downstream ROS stacks and RViz
  plugins take; no velocity field there),
* ``~/detection_markers`` (``MarkerArray``),
* ``~/map/<layer>`` (``nav_msgs/OccupancyGrid``, probability x 100, latched) per map class,
* node health on ``/diagnostics``.

Parameters: :class:`~ocgs_ros.ros.node_settings.BevNodeSettings` (the model's settings travel in
its checkpoint).
"""
from __future__ import annotations

import collections
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from nav_msgs.msg import OccupancyGrid
from ocgs_ros_interfaces.msg import Detection3DArray
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from vision_msgs.msg import Detection3DArray as VisionDetection3DArray
from visualization_msgs.msg import MarkerArray

from ocgs_ros import models
from ocgs_ros.bev.inference import BevPredictor
from ocgs_ros.ros import conversions, qos
from ocgs_ros.ros.node_main import run_node
from ocgs_ros.ros.node_settings import SHIPPED_CHECKPOINT, SHIPPED_SURROUND_CHECKPOINT, BevNodeSettings
from ocgs_ros.ros.diagnostics import latency_window
from ocgs_ros.ros.perception_node import PerceptionNode, SensorInput, SyncedFrame
from ocgs_ros.mapping.frames import transform_points
from ocgs_ros.ros.sensor_frames import FrameError, camera_from_messages, cloud_points


@dataclass
class Detections:
    """One frame's detections above ``min_score`` (ego frame) with the model's class names."""

    boxes: np.ndarray  # [D, 9]: x, y, z, l, w, h, yaw, vx, vy
    scores: np.ndarray  # [D]
    labels: np.ndarray  # [D] indices into class_names
    class_names: list[str]


def load_predictor(checkpoint: str) -> BevPredictor:
    """The BEV predictor of a ``bev_checkpoint`` value; ValueError (one line) if it cannot be used."""
    shipped = {"": "bev", SHIPPED_CHECKPOINT: "bev", SHIPPED_SURROUND_CHECKPOINT: "bev_surround"}
    try:
        path = models.shipped_checkpoint(shipped[checkpoint]) if checkpoint in shipped else Path(checkpoint)
        return BevPredictor.from_checkpoint(path)
    except Exception as exc:  # noqa: BLE001 - any unusable checkpoint is a start-up error
        raise ValueError(f"bev_perception_node: bev_checkpoint {checkpoint!r}: {exc}") from exc


class BevPerceptionNode(PerceptionNode):
    CONFIG_CLASSES = (BevNodeSettings,)

    def __init__(self, **node_kwargs):
        super().__init__("bev_perception_node", **node_kwargs)
        s: BevNodeSettings = self.settings
        self.predictor = load_predictor(s.bev_checkpoint)
        self.cameras = len(s.image_topics)
        if self.predictor.num_cameras != self.cameras:
            raise ValueError(f"bev_perception_node: the model expects {self.predictor.num_cameras} camera(s), "
                             f"image_topics lists {self.cameras}")
        self.model_ms: collections.deque[float] = latency_window()
        self.last_prediction = None  # (stamp_ns, prediction), for tools in the same process (the demo's report)

        self.pub_detections = self.create_publisher(Detection3DArray, "~/detections", qos.RELIABLE)
        self.pub_vision = self.create_publisher(VisionDetection3DArray, "~/vision_detections", qos.RELIABLE)
        self.pub_markers = self.create_publisher(MarkerArray, "~/detection_markers", qos.RELIABLE)
        self.pub_layers: dict[str, object] = {}  # created on the first prediction (layer names come from the model)

        inputs = [SensorInput(f"image_{k}", Image, topic) for k, topic in enumerate(s.image_topics)]
        inputs += [SensorInput(f"camera_info_{k}", CameraInfo, topic) for k, topic in enumerate(s.camera_info_topics)]
        inputs.append(SensorInput("points", PointCloud2, s.points_topic))
        # Every camera's rate is watched too, so a silent camera (which stalls synchronisation) is named.
        expected = {"frames": s.expected_rate_hz, **{f"image_{k}": s.expected_rate_hz for k in range(self.cameras)}}
        self.start_inputs(inputs, "BEV perception", expected)
        # Resolved names (after remapping and namespacing): what a user debugging remaps needs to see.
        self.input_topics = [subscriber.sub.topic_name for subscriber in self._subscribers]
        self.get_logger().info(f"BEV perception with {self.cameras} camera(s) in {s.ego_frame!r}, inputs: "
                               + ", ".join(f"{i.name}={topic}" for i, topic in zip(inputs, self.input_topics)))

    # -- frames ------------------------------------------------------------------------------
    def frame_stamp_ns(self, msgs: tuple) -> int:
        return conversions.stamp_to_ns(msgs[-1].header.stamp)  # the LiDAR's, as Autoware's BEV node

    def process(self, frame: SyncedFrame) -> None:
        n, ego = self.cameras, self.settings.ego_frame
        images, infos, cloud = frame.msgs[:n], frame.msgs[n:2 * n], frame.msgs[2 * n]
        cams = [camera_from_messages(image, info) for image, info in zip(images, infos)]
        if len({c.rgb.shape for c in cams}) != 1:
            raise FrameError("camera_info_size_mismatch", f"cameras differ in size: {[c.rgb.shape for c in cams]}")
        T_ego_cam = np.stack([self._camera_extrinsics(k, cam, image)
                              for k, (cam, image) in enumerate(zip(cams, images))])
        T_ego_lidar = self.lookup(ego, cloud.header.frame_id, frame.stamp_ns)
        points = transform_points(T_ego_lidar, cloud_points(cloud, with_intensity=True))
        points[:, 3] *= self.settings.lidar_intensity_scale
        try:
            pred = self.predictor.predict(np.stack([c.rgb for c in cams]), np.stack([c.K for c in cams]),
                                          T_ego_cam, points.astype(np.float32))
        except ValueError as exc:
            raise FrameError("model_input", f"BEV model rejected the frame: {exc}") from exc
        self.model_ms.append(float(pred.latency_ms))
        self.last_prediction = (frame.stamp_ns, pred)
        keep = np.asarray(pred.scores) >= self.settings.min_score
        detections = Detections(np.asarray(pred.boxes)[keep], np.asarray(pred.scores)[keep],
                                np.asarray(pred.labels)[keep], list(pred.class_names))
        self._publish(frame, cloud.header.stamp, detections, pred)

    def _camera_extrinsics(self, index: int, camera, image_msg) -> np.ndarray:
        """``T_ego_cam`` at the image's own stamp (cameras of a real rig fire at their own times);
        a failed lookup keeps its ``tf_*`` reason and names the camera."""
        try:
            stamp_ns = conversions.stamp_to_ns(image_msg.header.stamp)
            return self.lookup(self.settings.ego_frame, camera.frame_id, stamp_ns)
        except FrameError as exc:
            raise FrameError(exc.reason, f"camera {index} ({self.input_topics[index]}, frame "
                                         f"{camera.frame_id!r}): {exc}") from exc

    def _publish(self, frame: SyncedFrame, stamp, detections: Detections, pred) -> None:
        ego = self.settings.ego_frame
        d = detections
        self.pub_detections.publish(conversions.bev_to_detection_array(d.boxes, d.scores, d.labels, d.class_names,
                                                                       ego, stamp))
        self.pub_markers.publish(conversions.detection_markers(d.boxes, d.scores, d.labels, d.class_names, ego, stamp))
        self.pub_vision.publish(conversions.bev_to_vision_detections(d.boxes, d.scores, d.labels, d.class_names,
                                                                     ego, stamp))
        self._publish_map_layers(pred, stamp)
        self.frame_published(frame)
        self.diagnostics.set("detections", len(d.boxes))
        self.diagnostics.set("model_ms", round(float(pred.latency_ms), 1))

    def _publish_map_layers(self, pred, stamp) -> None:
        ego, grid = self.settings.ego_frame, pred.grid
        for name, probs in zip(pred.map_classes, np.asarray(pred.map_probs)):
            pub = self.pub_layers.get(name)
            if pub is None:
                pub = self.pub_layers[name] = self.create_publisher(OccupancyGrid, f"~/map/{name}", qos.LATCHED)
            pub.publish(conversions.grid_to_occupancy_grid(np.clip(probs, 0.0, 1.0).astype(np.float32),
                                                           grid.resolution, (grid.x_min, grid.y_min), ego, stamp))

    def stats(self) -> dict:
        return {**super().stats(),
                "model_ms_median": round(float(np.median(self.model_ms)), 1) if self.model_ms else None}


def main(args=None) -> None:
    run_node(BevPerceptionNode, "bev_perception_node", args)


if __name__ == "__main__":
    main()
