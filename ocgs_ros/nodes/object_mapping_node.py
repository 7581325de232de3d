"""object_mapping_node: camera + LiDAR -> the online object-aware Gaussian map and its objects.

Inputs (sensor-data QoS, time-synchronised): ``Image``, ``CameraInfo``, ``PointCloud2`` and, when
``depth_topic`` is set, a depth ``Image`` registered to the colour camera (same frame and
intrinsics; ``16UC1`` mm or ``32FC1`` m, REP 118); poses and extrinsics from TF (``map`` <- camera /
LiDAR frame at the frame's stamp). Each synchronised frame goes to a newest-wins worker
(:mod:`ocgs_ros.ros.perception_node`), which hands it to the
:class:`~ocgs_ros.mapping.pipeline.ObjectMappingPipeline` and publishes:

* ``~/objects`` (``ObjectInstanceArray``, latched; after every integrated frame, stamped with it,
  carrying the newest objects: extracted after the frame, or in the background every
  ``objects_period_s`` when that is > 0),
  ``~/object_markers`` (``MarkerArray``, latched; when new objects arrived),
* ``~/gaussians`` (``PointCloud2``: x y z rgb opacity scale instance; throttled),
* ``~/identity_image`` (rendered instance image from the current camera; off by default),
* services ``~/query_objects`` (QueryObjects), ``~/save_map`` (SaveMap), ``~/reset_map`` (Trigger),
* node health on ``/diagnostics``.

Parameters: the node's own (:class:`~ocgs_ros.ros.node_settings.MappingNodeSettings`) and the
pipeline's (:class:`~ocgs_ros.mapping.config.MappingConfig`, dotted: ``view.process_width``,
``mapper.iterations_per_frame``, ``gocl.checkpoint``, ``objects.link_radius``, ...). This file
converts messages, schedules and publishes; the pipeline does the mapping, in a process of its own
(``pipeline_process``, :mod:`ocgs_ros.mapping.process`) so the node's Python never holds it up.
"""
from __future__ import annotations

import time

import numpy as np
from ocgs_ros_interfaces.msg import ObjectInstanceArray
from ocgs_ros_interfaces.srv import QueryObjects, SaveMap
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_srvs.srv import Trigger
from visualization_msgs.msg import MarkerArray

from ocgs_ros.mapping.config import MappingConfig
from ocgs_ros.mapping.frames import transform_points
from ocgs_ros.mapping.pipeline import MappingFrame, MappingUpdate, ObjectMappingPipeline
from ocgs_ros.mapping.process import PipelineProcess, PipelineProcessError
from ocgs_ros.ros import conversions, qos
from ocgs_ros.ros.node_main import SHUTDOWN_GRACE_S, run_node
from ocgs_ros.ros.node_settings import MappingNodeSettings
from ocgs_ros.ros.perception_node import PerceptionNode, SensorInput, SyncedFrame
from ocgs_ros.ros.sensor_frames import FrameError, camera_from_messages, cloud_points, depth_from_message


class ObjectMappingNode(PerceptionNode):
    CONFIG_CLASSES = (MappingNodeSettings, MappingConfig)

    def __init__(self, **node_kwargs):
        super().__init__("object_mapping_node", **node_kwargs)
        s: MappingNodeSettings = self.settings
        self.config: MappingConfig = self.configs[1]
        try:
            self.pipeline = (PipelineProcess(self.config, s.torch_threads) if s.pipeline_process
                             else ObjectMappingPipeline(self.config))
        except ValueError as exc:  # an unusable checkpoint: one line naming it
            raise ValueError(f"object_mapping_node: {exc}") from exc
        self._last_gaussians_s = -float("inf")

        self.pub_objects = self.create_publisher(ObjectInstanceArray, "~/objects", qos.LATCHED)
        self.pub_markers = self.create_publisher(MarkerArray, "~/object_markers", qos.LATCHED)
        self.pub_gaussians = self.create_publisher(PointCloud2, "~/gaussians", qos.LATCHED)
        self.pub_identity = (self.create_publisher(Image, "~/identity_image", qos.RELIABLE)
                             if s.publish_identity_image else None)
        self.srv_query = self.create_service(QueryObjects, "~/query_objects", self._on_query)
        self.srv_save = self.create_service(SaveMap, "~/save_map", self._on_save)
        self.srv_reset = self.create_service(Trigger, "~/reset_map", self._on_reset)

        inputs = [SensorInput("image", Image, s.image_topic),
                  SensorInput("camera_info", CameraInfo, s.camera_info_topic),
                  SensorInput("points", PointCloud2, s.points_topic)]
        if s.depth_topic:
            inputs.append(SensorInput("depth", Image, s.depth_topic))
        self.start_inputs(inputs, "object map", {name: s.expected_rate_hz
                                                  for name in [i.name for i in inputs] + ["frames"]})
        view, gocl = self.config.view, self.config.gocl
        self.get_logger().info(
            f"mapping {s.image_topic} + {s.points_topic} into {s.map_frame!r} at "
            f"{view.process_width or 'camera'}x{view.process_height or 'camera'}; GOCL "
            f"{gocl.checkpoint if self.pipeline.has_identity else 'off'} ({self.pipeline.num_entries} entries)"
            f"{'; pipeline in process ' + str(self.pipeline.pid) if s.pipeline_process else ''}")

    @property
    def objects(self) -> list:
        """The map's current objects (confidence filter applied)."""
        return self.pipeline.objects()

    # -- frames ------------------------------------------------------------------------------
    def frame_stamp_ns(self, msgs: tuple) -> int:
        return conversions.stamp_to_ns(msgs[0].header.stamp)  # the image's: outputs are for that view

    def process(self, frame: SyncedFrame) -> None:
        image, info, cloud, *depth = frame.msgs
        map_frame = self.settings.map_frame
        camera = camera_from_messages(image, info)  # at the camera's resolution: the pipeline resizes
        points = cloud_points(cloud)
        T_world_cam = self.lookup(map_frame, camera.frame_id, frame.stamp_ns)
        T_world_lidar = self.lookup(map_frame, cloud.header.frame_id, frame.stamp_ns)
        depth_m = depth_from_message(depth[0], image, camera) if depth else None
        # live: the time budget and the objects' own cadence apply (ObjectMappingPipeline.process)
        update = self.pipeline.process(MappingFrame(camera.rgb, camera.K, T_world_cam, points, T_world_lidar,
                                                    frame.stamp_ns, depth_m), live=True)
        self._publish(frame, update, camera.frame_id, T_world_cam)

    def _publish(self, frame: SyncedFrame, update: MappingUpdate, camera_frame: str, T_world_cam: np.ndarray) -> None:
        s = self.settings
        stamp = frame.msgs[0].header.stamp
        # after every frame, stamped with it: the newest finished extraction (live frames extract in
        # the background every objects_period_s); the latched markers change only with the objects
        objects = conversions.map_objects_to_msg(update.objects, s.map_frame, stamp)
        self.pub_objects.publish(objects)
        if update.objects_updated:
            self.pub_markers.publish(conversions.instance_markers(objects.objects, s.map_frame, stamp))
        now = time.monotonic()
        if now - self._last_gaussians_s >= s.publish_gaussians_period_s:
            self._last_gaussians_s = now
            self.pub_gaussians.publish(self.gaussians_cloud(stamp))
        if self.pub_identity is not None:
            height, width = update.rgb.shape[:2]
            rgb = self.pipeline.render_identity(update.K, T_world_cam, width, height)
            self.pub_identity.publish(conversions.rgb_to_image_msg(rgb, camera_frame, stamp))
        self.frame_published(frame)
        self.diagnostics.set("objects", len(update.objects))
        self.diagnostics.set("gaussians", update.num_gaussians)
        self.diagnostics.set("frames_integrated", update.frames_integrated)

    def gaussians_cloud(self, stamp) -> PointCloud2:
        """Gaussian centres with rgb, opacity, scale (largest axis, m) and instance id (0 = none)."""
        snap = self.pipeline.snapshot(self.settings.max_published_gaussians)
        return conversions.points_to_pointcloud2(snap.means, self.settings.map_frame, stamp, rgb=snap.colors,
                                                 opacity=snap.opacity, scale=snap.scale, instance=snap.instance)

    # -- services ----------------------------------------------------------------------------
    def _to_map_frame(self, frame_id: str, points: np.ndarray) -> np.ndarray:
        if not frame_id or frame_id == self.settings.map_frame:
            return points
        return transform_points(self.lookup(self.settings.map_frame, frame_id, 0), points)

    def _on_query(self, request, response):
        response.header.frame_id = self.settings.map_frame
        response.header.stamp = self.get_clock().now().to_msg()
        try:
            found = self._query(request)
            response.objects = [conversions.map_object_to_msg(o) for o in found]
            response.success, response.message = True, f"{len(found)} object(s)"
        except (FrameError, ValueError, PipelineProcessError) as exc:
            response.success, response.message = False, str(exc)
        return response

    def _query(self, request) -> list:
        modes = QueryObjects.Request
        if request.mode == modes.ALL:
            return self.pipeline.objects()
        if request.mode == modes.BY_CODEBOOK_ENTRY:
            return self.pipeline.query_by_codebook(int(request.codebook_entry))
        if request.mode == modes.BY_POINT_RADIUS:
            if not (np.isfinite(request.radius) and request.radius >= 0):
                raise ValueError(f"radius must be finite and >= 0, got {request.radius}")
            point = self._to_map_frame(request.frame_id, np.array([[request.point.x, request.point.y,
                                                                     request.point.z]]))[0]
            return self.pipeline.query_by_point(point, float(request.radius))
        if request.mode == modes.BY_BOX:
            corners = self._to_map_frame(request.frame_id, np.array(
                [[request.box_min.x, request.box_min.y, request.box_min.z],
                 [request.box_max.x, request.box_max.y, request.box_max.z]]))
            low, high = corners.min(axis=0), corners.max(axis=0)
            return self.pipeline.query_by_box((low + high) / 2.0, high - low)
        raise ValueError(f"unknown query mode {request.mode} (0 entry, 1 point+radius, 2 box, 3 all)")

    def _on_save(self, request, response):
        target = request.path or self.settings.default_map_path
        try:
            paths = self.pipeline.save(target)
            stats = self.pipeline.stats()
            response.success, response.ply_path, response.objects_path = True, str(paths["ply"]), str(paths["objects"])
            response.message = f"saved {stats['gaussians']} Gaussians, {stats['objects']} objects"
            self.get_logger().info(f"{response.message} to {paths['ply']}")
        except Exception as exc:  # noqa: BLE001 - a failed save is reported to the caller, not fatal
            response.success, response.message = False, f"save_map to {target} failed: {exc}"
            self.get_logger().error(response.message)
        return response

    def _on_reset(self, request, response):
        try:
            self.pipeline.reset()
        except PipelineProcessError as exc:  # a service answers; it never takes the node down
            response.success, response.message = False, str(exc)
            return response
        response.success, response.message = True, "map cleared"
        self.get_logger().info("map reset")
        return response

    def destroy_node(self):
        result = super().destroy_node()  # the worker first: no frame starts another extraction
        pipeline = getattr(self, "pipeline", None)  # None: the constructor failed before making it
        if pipeline is not None and not pipeline.close(timeout_s=SHUTDOWN_GRACE_S):
            self.get_logger().warning("object extraction still running at shutdown; abandoned")
        return result

    def stats(self) -> dict:
        try:
            pipeline = self.pipeline.stats()
        except PipelineProcessError as exc:  # the frames' own figures still stand
            return {**super().stats(), "pipeline_error": str(exc)}
        return {**super().stats(), "objects": pipeline["objects"], "gaussians": pipeline["gaussians"]}


def main(args=None) -> None:
    run_node(ObjectMappingNode, "object_mapping_node", args)


if __name__ == "__main__":
    main()
