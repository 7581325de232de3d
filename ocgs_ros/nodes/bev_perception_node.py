"""bev_perception_node: camera(s) + LiDAR -> fused BEV 3D detections and BEV map layers.

Inputs (sensor-data QoS, time-synchronised): one ``Image`` + ``CameraInfo`` per camera and a
``PointCloud2``; extrinsics from TF (ego frame <- camera / LiDAR frames). The gradient-calibrated
BEV model (:mod:`ocgs_ros.bev`) runs on a newest-wins worker thread and the node publishes, in the
ego frame:

* ``~/detections`` (``ocgs_ros_interfaces/Detection3DArray``: class, score, box, velocity),
* ``~/detection_markers`` (``MarkerArray``),
* ``~/map/<layer>`` (``nav_msgs/OccupancyGrid``, probability x 100, latched) per map class,
* node health on ``/diagnostics``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from nav_msgs.msg import OccupancyGrid
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from visualization_msgs.msg import MarkerArray

from ocgs_ros.latest_worker import LatestWorker
from ocgs_ros.ros import conversions, qos
from ocgs_ros.ros.diagnostics import NodeDiagnostics
from ocgs_ros.ros.frame_rejects import FrameRejects
from ocgs_ros.ros.node_main import run_node
from ocgs_ros.ros.params import Param, declare_and_read, non_negative, positive
from ocgs_ros.ros.sensor_frames import FrameError, camera_from_messages, cloud_points, lookup, transform_points
from ocgs_ros.ros.sync import make_synchronizer
from ocgs_ros.ros.tf import make_tf_buffer, make_transform_listener


def _bev_checkpoint(value: str) -> str | None:
    if value in ("", "shipped"):
        return None
    return None if Path(value).is_file() else f"file {value!r} not found"


def _topic_list(value) -> str | None:
    if not value or any(not isinstance(t, str) or not t for t in value):
        return f"must be a non-empty list of topic names, got {value!r}"
    return None


PARAMS = {
    "image_topics": Param(["/camera/image_raw"], "Camera image topics, one per camera, in the model's camera order.",
                          _topic_list, type=Parameter.Type.STRING_ARRAY),
    "camera_info_topics": Param(["/camera/camera_info"], "CameraInfo topics, same order as image_topics.",
                                _topic_list, type=Parameter.Type.STRING_ARRAY),
    "points_topic": Param("/lidar/points", "LiDAR point cloud topic (sensor_msgs/PointCloud2)."),
    "ego_frame": Param("base_link", "Ego frame (x forward, y left, z up): outputs are in it."),
    "bev_checkpoint": Param("shipped", "BEV checkpoint: a path or 'shipped' (ocgs_ros.models.BEV_DRIVING).",
                            _bev_checkpoint),
    "sync_queue_size": Param(10, "Messages kept per input by the approximate-time synchronizer.", positive),
    "sync_slop_s": Param(0.05, "Largest stamp difference within one synchronised frame (s).", non_negative),
    "tf_timeout_s": Param(0.2, "How long the worker waits for TF at a frame's stamp (s).", non_negative),
    "max_input_age_s": Param(0.0, "Drop frames older than this vs the node clock (s; 0 = no age check).",
                             non_negative),
    "min_score": Param(0.2, "Publish detections with at least this score.", non_negative),
    "torch_threads": Param(1, "Threads torch may use in the worker.", positive),
    "diagnostics_period_s": Param(2.0, "Period of the /diagnostics status (s).", positive),
    "expected_rate_hz": Param(10.0, "Input frame rate the diagnostics expect (warn below half of it).", positive),
}


@dataclass
class BevFrame:
    images: list[Image]
    infos: list[CameraInfo]
    cloud: PointCloud2
    stamp_ns: int


def load_predictor(value: str):
    from ocgs_ros import models
    from ocgs_ros.bev.inference import BevPredictor

    path = models.shipped_checkpoint("bev") if value in ("", "shipped") else Path(value)
    return BevPredictor.from_checkpoint(path)


class BevPerceptionNode(Node):
    def __init__(self, **node_kwargs):
        super().__init__("bev_perception_node", **node_kwargs)
        self.params = p = declare_and_read(self, PARAMS)
        if len(p["image_topics"]) != len(p["camera_info_topics"]):
            raise ValueError(f"bev_perception_node: {len(p['image_topics'])} image_topics but "
                             f"{len(p['camera_info_topics'])} camera_info_topics")
        import torch

        torch.set_num_threads(p["torch_threads"])
        try:
            self.predictor = load_predictor(p["bev_checkpoint"])
        except Exception as exc:  # noqa: BLE001 - any unusable checkpoint is a start-up error
            raise ValueError(f"bev_perception_node: bev_checkpoint {p['bev_checkpoint']!r}: {exc}") from exc
        if self.predictor.num_cameras != len(p["image_topics"]):
            raise ValueError(f"bev_perception_node: the model expects {self.predictor.num_cameras} camera(s), "
                             f"image_topics lists {len(p['image_topics'])}")
        self.cameras = len(p["image_topics"])

        self.tf_buffer = make_tf_buffer(cache_time_s=30.0)
        self.tf_listener = make_transform_listener(self.tf_buffer, self)
        from ocgs_ros_interfaces.msg import Detection3DArray

        self.pub_detections = self.create_publisher(Detection3DArray, "~/detections", qos.RELIABLE)
        self.pub_markers = self.create_publisher(MarkerArray, "~/detection_markers", qos.RELIABLE)
        self.pub_layers: dict[str, object] = {}  # created on the first prediction (layer names come from the model)
        self.diagnostics = NodeDiagnostics(self, "BEV perception", period_s=p["diagnostics_period_s"],
                                           expected_rates_hz={"frames": p["expected_rate_hz"]})
        self.rejects = FrameRejects(self.get_logger(), self.diagnostics)
        self.published = 0
        self.latencies_s: list[float] = []
        self.model_ms: list[float] = []
        self.last_prediction = None
        self.worker = LatestWorker(self._process, self.rejects.on_worker_error, name="bev_worker")
        inputs = [(Image, t, qos.SENSOR_DATA) for t in p["image_topics"]]
        inputs += [(CameraInfo, t, qos.SENSOR_DATA) for t in p["camera_info_topics"]]
        inputs.append((PointCloud2, p["points_topic"], qos.SENSOR_DATA))
        self._subscribers, self.sync = make_synchronizer(self, inputs, p["sync_queue_size"], p["sync_slop_s"])
        self.sync.registerCallback(self.on_frame)
        self.get_logger().info(f"BEV perception on {p['image_topics']} + {p['points_topic']} in {p['ego_frame']!r}")

    @property
    def rejected(self) -> dict[str, int]:
        """Dropped input frames by reason (tf, encoding, pointcloud, stale, ...)."""
        return self.rejects.counts

    def on_frame(self, *msgs) -> None:
        n = self.cameras
        images, infos, cloud = list(msgs[:n]), list(msgs[n:2 * n]), msgs[2 * n]
        stamp_ns = conversions.stamp_to_ns(cloud.header.stamp)
        self.diagnostics.tick("frames")
        if self.rejects.reject_if_stale(self.get_clock().now().nanoseconds, stamp_ns,
                                        self.params["max_input_age_s"]):
            return
        kept = self.worker.submit(BevFrame(images, infos, cloud, stamp_ns))
        self.diagnostics.frame(dropped=not kept)

    def _process(self, frame: BevFrame) -> None:
        p = self.params
        ego = p["ego_frame"]
        cams = [camera_from_messages(img, info) for img, info in zip(frame.images, frame.infos)]
        if len({c.rgb.shape for c in cams}) != 1:
            raise FrameError("camera_info", f"cameras differ in size: {[c.rgb.shape for c in cams]}")
        T_ego_cam = np.stack([lookup(self.tf_buffer, ego, c.frame_id, frame.stamp_ns, p["tf_timeout_s"]) for c in cams])
        T_ego_lidar = lookup(self.tf_buffer, ego, frame.cloud.header.frame_id, frame.stamp_ns, p["tf_timeout_s"])
        points = transform_points(T_ego_lidar, cloud_points(frame.cloud, with_intensity=True))
        try:
            pred = self.predictor.predict(np.stack([c.rgb for c in cams]), np.stack([c.K for c in cams]),
                                          T_ego_cam, points.astype(np.float32))
        except ValueError as exc:
            raise FrameError("model_input", f"BEV model rejected the frame: {exc}") from exc
        self.model_ms.append(float(pred.latency_ms))
        self.last_prediction = (frame.stamp_ns, pred)  # for tools in the same process (the demo's report)
        self._publish(frame, pred)

    def _publish(self, frame: BevFrame, pred) -> None:
        ego = self.params["ego_frame"]
        stamp = frame.cloud.header.stamp
        keep = np.asarray(pred.scores) >= self.params["min_score"]
        boxes, scores, labels = np.asarray(pred.boxes)[keep], np.asarray(pred.scores)[keep], np.asarray(pred.labels)[keep]
        self.pub_detections.publish(conversions.bev_to_detection_array(boxes, scores, labels, pred.class_names, ego, stamp))
        self.pub_markers.publish(conversions.detection_markers(boxes, scores, labels, pred.class_names, ego, stamp))
        grid = pred.grid
        for name, probs in zip(pred.map_classes, np.asarray(pred.map_probs)):
            pub = self.pub_layers.get(name)
            if pub is None:
                pub = self.pub_layers[name] = self.create_publisher(OccupancyGrid, f"~/map/{name}", qos.LATCHED)
            pub.publish(conversions.grid_to_occupancy_grid(np.clip(probs, 0.0, 1.0).astype(np.float32),
                                                           grid.resolution, (grid.x_min, grid.y_min), ego, stamp))
        latency_s = (self.get_clock().now().nanoseconds - frame.stamp_ns) * 1e-9
        self.latencies_s.append(latency_s)
        self.diagnostics.latency(latency_s)
        self.diagnostics.set("detections", int(keep.sum()))
        self.diagnostics.set("model_ms", round(float(pred.latency_ms), 1))
        self.published += 1

    def stats(self) -> dict:
        return {
            **self.rejects.frame_stats(self.worker, self.sync, self.latencies_s),
            "model_ms_median": round(float(np.median(self.model_ms)), 1) if self.model_ms else None,
        }

    def destroy_node(self):
        worker = getattr(self, "worker", None)  # None when the constructor failed part-way
        if worker is not None:
            worker.stop(timeout_s=30.0)
        return super().destroy_node()


def main(args=None) -> None:
    run_node(BevPerceptionNode, "bev_perception_node", args)


if __name__ == "__main__":
    main()
