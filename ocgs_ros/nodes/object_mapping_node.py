"""object_mapping_node: camera + LiDAR -> the online object-aware Gaussian map and its objects.

Inputs (sensor-data QoS, time-synchronised): ``Image``, ``CameraInfo``, ``PointCloud2`` and, when
``depth_topic`` is set, a depth ``Image`` registered to the colour camera (same frame and
intrinsics; ``16UC1`` mm or ``32FC1`` m, REP 118); poses and extrinsics from TF (``map`` <- camera /
LiDAR frame at the frame's stamp). Each synchronised frame goes to a newest-wins worker thread
(callbacks never block; a frame that arrives while the map is still busy replaces the waiting one
and is counted as dropped), which runs GOCL, integrates the frame into the Gaussian map, updates
the object tracker and publishes:

* ``~/objects`` (``ObjectInstanceArray``, latched), ``~/object_markers`` (``MarkerArray``, latched),
* ``~/gaussians`` (``PointCloud2``: x y z rgb opacity scale instance; throttled),
* ``~/identity_image`` (rendered instance image from the current camera; off by default),
* services ``~/query_objects`` (QueryObjects), ``~/save_map`` (SaveMap), ``~/reset_map`` (Trigger),
* node health on ``/diagnostics``.

All numerical work is in :mod:`ocgs_ros.ocl` and :mod:`ocgs_ros.gaussians`; this file converts
messages, validates input and schedules work.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from ocgs_ros.latest_worker import LatestWorker
from ocgs_ros.ros import conversions, qos
from ocgs_ros.ros.diagnostics import NodeDiagnostics
from ocgs_ros.ros.frame_rejects import FrameRejects
from ocgs_ros.ros.node_main import run_node
from ocgs_ros.ros.params import Param, declare_and_read, non_negative, positive
from ocgs_ros.ros.sensor_frames import (FrameError, camera_from_messages, cloud_points, depth_from_message, in_view,
                                        lookup, subsample_points, transform_points)
from ocgs_ros.ros.sync import make_synchronizer
from ocgs_ros.ros.tf import make_tf_buffer, make_transform_listener


def _gocl_checkpoint(value: str) -> str | None:
    if value in ("", "shipped", "none"):
        return None
    return None if Path(value).is_file() else f"file {value!r} not found"


def _unit_interval(value) -> str | None:
    return None if 0.0 <= value <= 1.0 else f"must be in [0, 1], got {value}"


PARAMS = {
    "image_topic": Param("/camera/image_raw", "Camera image topic (sensor_msgs/Image)."),
    "camera_info_topic": Param("/camera/camera_info", "CameraInfo topic of that camera."),
    "points_topic": Param("/lidar/points", "LiDAR point cloud topic (sensor_msgs/PointCloud2)."),
    "depth_topic": Param("", "Depth image registered to the camera (16UC1 mm / 32FC1 m); '' = no depth camera. "
                             "Its pixels grow and supervise the map like LiDAR returns."),
    "map_frame": Param("map", "World frame of the map; poses come from TF map <- sensor frames."),
    "sync_queue_size": Param(10, "Messages kept per input by the approximate-time synchronizer.", positive),
    "sync_slop_s": Param(0.05, "Largest stamp difference within one synchronised frame (s).", non_negative),
    "tf_timeout_s": Param(0.2, "How long the worker waits for TF at a frame's stamp (s).", non_negative),
    "max_input_age_s": Param(0.0, "Drop frames older than this vs the node clock (s; 0 = no age check). "
                                  "Use with use_sim_time when replaying bags.", non_negative),
    "process_width": Param(160, "Image width the map is built at (0 = camera resolution).", non_negative),
    "process_height": Param(120, "Image height the map is built at (0 = camera resolution).", non_negative),
    "max_points": Param(6000, "LiDAR points per frame inside the camera view (random subset; 0 = all).",
                        non_negative),
    "gocl_checkpoint": Param("shipped", "GOCL checkpoint: a path, 'shipped' (ocgs_ros.models.GOCL_TABLETOP), "
                                        "or 'none' (map without identities).", _gocl_checkpoint),
    "num_codebook_entries": Param(32, "Codebook size when gocl_checkpoint is 'none' (else the model's).", positive),
    "gocl_mask_temperature": Param(0.5, "GOCL soft-mask temperature (below 1 sharpens; see ocl/segment.py).",
                                   positive),
    "gocl_flip_average": Param(True, "Average GOCL's per-pixel distributions with those of the mirror image "
                                     "(a second GOCL pass; steadier identities, see ocl/segment.py)."),
    "iterations_per_frame": Param(8, "Map optimisation iterations per integrated frame.", positive),
    "keyframe_window": Param(4, "Recent keyframes optimised together.", positive),
    "max_keyframes": Param(48, "Keyframes kept at most (memory bound; the most redundant older one is "
                               "dropped beyond it). Must exceed keyframe_window.", positive),
    "grow_max_points": Param(2000, "New Gaussians per frame at most.", positive),
    "max_gaussians": Param(60000, "Hard cap on the map size.", positive),
    "min_object_confidence": Param(0.0, "Publish objects with at least this confidence.", _unit_interval),
    "object_min_opacity": Param(0.1, "Fainter Gaussians do not define objects.", _unit_interval),
    "object_link_radius": Param(0.02, "Gaussians of one codebook entry closer than this (m) form one object.",
                                positive),
    "object_min_gaussians": Param(20, "Smaller groups of Gaussians are noise, not objects.", positive),
    "object_support_snap_m": Param(0.02, "Object box bottoms below the support surface (table) or less than "
                                         "this above it are moved onto it (m; 0 = off).", non_negative),
    "object_min_rise_m": Param(0.02, "Instances rising less than this above the support (m) are patches of the "
                                     "support, not objects (0 = keep flat objects).", non_negative),
    "object_ground_clearance_m": Param(0.01, "Gaussians of an object less than this above the support (m) are at "
                                             "ground level: they neither join two objects nor widen a box "
                                             "(0 = off).", non_negative),
    "publish_gaussians_period_s": Param(2.0, "Period of ~/gaussians (0 = after every frame).", non_negative),
    "max_published_gaussians": Param(20000, "Points in ~/gaussians at most (random subset).", positive),
    "publish_identity_image": Param(False, "Publish ~/identity_image (renders the map once more per frame)."),
    "default_map_path": Param("runs/maps/object_map", "Where ~/save_map writes when the request path is empty."),
    "torch_threads": Param(1, "Threads torch may use in the worker.", positive),
    "seed": Param(0, "Seed of the mapper and of point subsampling.", non_negative),
    "diagnostics_period_s": Param(2.0, "Period of the /diagnostics status (s).", positive),
    "expected_rate_hz": Param(5.0, "Input frame rate the diagnostics expect (warn below half of it).", positive),
}


@dataclass
class SensorFrame:
    image: Image
    info: CameraInfo
    cloud: PointCloud2
    stamp_ns: int
    received_s: float
    depth: Image | None = None


def load_segmenter(value: str, mask_temperature: float, flip_average: bool):
    """GoclSegmenter for a checkpoint parameter value (and the node's GOCL parameters), or None for 'none'."""
    if value == "none":
        return None
    from ocgs_ros import models
    from ocgs_ros.ocl.checkpoint import load_checkpoint
    from ocgs_ros.ocl.segment import GoclSegmenter

    path = models.shipped_checkpoint("gocl") if value in ("", "shipped") else Path(value)
    model, _config, _meta = load_checkpoint(path)
    model.eval()
    return GoclSegmenter(model, mask_temperature=mask_temperature, flip_average=flip_average)


class ObjectMappingNode(Node):
    def __init__(self, **node_kwargs):
        super().__init__("object_mapping_node", **node_kwargs)
        self.params = p = declare_and_read(self, PARAMS)
        if bool(p["process_width"]) != bool(p["process_height"]):
            raise ValueError("object_mapping_node: set both process_width and process_height, or neither (0)")
        import torch

        torch.set_num_threads(p["torch_threads"])
        try:
            self.segmenter = load_segmenter(p["gocl_checkpoint"], p["gocl_mask_temperature"],
                                            p["gocl_flip_average"])
        except Exception as exc:  # noqa: BLE001 - any unusable checkpoint is a start-up error
            raise ValueError(f"object_mapping_node: gocl_checkpoint {p['gocl_checkpoint']!r}: {exc}") from exc
        self.num_entries = (self.segmenter.model.config.codebook_size if self.segmenter is not None
                            else p["num_codebook_entries"])
        self._rng = np.random.default_rng(p["seed"])
        self._map_lock = threading.Lock()  # mapper + tracker state: worker vs services
        self._new_map()

        self.tf_buffer = make_tf_buffer(cache_time_s=30.0)
        self.tf_listener = make_transform_listener(self.tf_buffer, self)
        self.pub_objects = self.create_publisher(self._msg("ObjectInstanceArray"), "~/objects", qos.LATCHED)
        self.pub_markers = self.create_publisher(_marker_array(), "~/object_markers", qos.LATCHED)
        self.pub_gaussians = self.create_publisher(PointCloud2, "~/gaussians", qos.LATCHED)
        self.pub_identity = (self.create_publisher(Image, "~/identity_image", qos.RELIABLE)
                             if p["publish_identity_image"] else None)
        from ocgs_ros_interfaces.srv import QueryObjects, SaveMap
        from std_srvs.srv import Trigger

        self.srv_query = self.create_service(QueryObjects, "~/query_objects", self._on_query)
        self.srv_save = self.create_service(SaveMap, "~/save_map", self._on_save)
        self.srv_reset = self.create_service(Trigger, "~/reset_map", self._on_reset)

        self.diagnostics = NodeDiagnostics(self, "object map", period_s=p["diagnostics_period_s"],
                                           expected_rates_hz={name: p["expected_rate_hz"] for name in
                                                              ("image", "camera_info", "points", "frames")
                                                              + (("depth",) if p["depth_topic"] else ())})
        self.rejects = FrameRejects(self.get_logger(), self.diagnostics)
        self.published = 0
        self.latencies_s: list[float] = []
        self._last_gaussians_s = -1e9
        self.worker = LatestWorker(self._process, self.rejects.on_worker_error, name="object_mapping_worker")
        inputs = [(Image, p["image_topic"], qos.SENSOR_DATA), (CameraInfo, p["camera_info_topic"], qos.SENSOR_DATA),
                  (PointCloud2, p["points_topic"], qos.SENSOR_DATA)]
        input_names = ["image", "camera_info", "points"]
        if p["depth_topic"]:
            inputs.append((Image, p["depth_topic"], qos.SENSOR_DATA))
            input_names.append("depth")
        self._subscribers, self.sync = make_synchronizer(self, inputs, p["sync_queue_size"], p["sync_slop_s"])
        for sub, name in zip(self._subscribers, input_names):
            sub.registerCallback(lambda _msg, n=name: self.diagnostics.tick(n))
        self.sync.registerCallback(self.on_frame)
        self.get_logger().info(
            f"mapping {p['image_topic']} + {p['points_topic']} into {p['map_frame']!r} at "
            f"{p['process_width'] or 'camera'}x{p['process_height'] or 'camera'}; GOCL "
            f"{'off' if self.segmenter is None else p['gocl_checkpoint']} ({self.num_entries} entries)")

    @staticmethod
    def _msg(name: str):
        import ocgs_ros_interfaces.msg as msgs

        return getattr(msgs, name)

    # -- map state ---------------------------------------------------------------------------
    def _new_map(self) -> None:
        from ocgs_ros.gaussians.map import GaussianMapConfig
        from ocgs_ros.gaussians.mapper import MapperConfig, OnlineMapper
        from ocgs_ros.gaussians.objects import ObjectConfig, ObjectTracker

        p = self.params
        map_config = GaussianMapConfig(num_codebook_entries=self.num_entries, max_gaussians=p["max_gaussians"])
        mapper_config = MapperConfig(iterations_per_frame=p["iterations_per_frame"], window=p["keyframe_window"],
                                     max_keyframes=p["max_keyframes"], grow_max_points=p["grow_max_points"], seed=p["seed"])
        self.mapper = OnlineMapper(map_config, mapper_config)
        self.tracker = ObjectTracker(ObjectConfig(min_opacity=p["object_min_opacity"],
                                                  link_radius=p["object_link_radius"],
                                                  min_gaussians=p["object_min_gaussians"],
                                                  support_snap=p["object_support_snap_m"],
                                                  min_rise=p["object_min_rise_m"],
                                                  ground_clearance=p["object_ground_clearance_m"]))
        self.objects: list = []
        self.frames_integrated = 0

    # -- input -------------------------------------------------------------------------------
    @property
    def rejected(self) -> dict[str, int]:
        """Dropped input frames by reason (tf, encoding, pointcloud, stale, ...)."""
        return self.rejects.counts

    def on_frame(self, image: Image, info: CameraInfo, cloud: PointCloud2, depth: Image | None = None) -> None:
        """Synchronised frame (executor thread): cheap checks, then hand to the worker. ``depth``
        comes with it when ``depth_topic`` is set."""
        stamp_ns = conversions.stamp_to_ns(image.header.stamp)
        self.diagnostics.tick("frames")
        if self.rejects.reject_if_stale(self.get_clock().now().nanoseconds, stamp_ns,
                                        self.params["max_input_age_s"]):
            return
        kept = self.worker.submit(SensorFrame(image, info, cloud, stamp_ns, time.monotonic(), depth))
        self.diagnostics.frame(dropped=not kept)

    # -- worker ------------------------------------------------------------------------------
    def _process(self, frame: SensorFrame) -> None:
        p = self.params
        camera = camera_from_messages(frame.image, frame.info, p["process_width"], p["process_height"])
        points = cloud_points(frame.cloud)
        T_world_cam = lookup(self.tf_buffer, p["map_frame"], camera.frame_id, frame.stamp_ns, p["tf_timeout_s"])
        T_world_lidar = lookup(self.tf_buffer, p["map_frame"], frame.cloud.header.frame_id, frame.stamp_ns,
                               p["tf_timeout_s"])
        # Only returns the camera sees can become (coloured) Gaussians: crop to the view before the
        # per-frame point budget, or most of a 360-degree sweep's budget is spent behind the camera.
        height, width = camera.rgb.shape[:2]
        visible = in_view(transform_points(np.linalg.inv(T_world_cam) @ T_world_lidar, points), camera.K, width, height)
        points = points[visible]
        if len(points) == 0:
            raise FrameError("empty_cloud", "no LiDAR return falls inside the camera image")
        points = subsample_points(points, p["max_points"], self._rng)
        points_world = transform_points(T_world_lidar, points)
        depth = None if frame.depth is None else depth_from_message(frame.depth, frame.image, camera)
        logits = self._segment(camera.rgb)
        with self._map_lock:
            self.mapper.integrate(camera.rgb, camera.K, T_world_cam, points_world, logits, depth=depth)
            self.objects = [o for o in self.tracker.update(self.mapper.map)
                            if o.confidence >= p["min_object_confidence"]]
            self.frames_integrated += 1
            objects = list(self.objects)
        self._publish(frame, objects, camera, T_world_cam)

    def _segment(self, rgb: np.ndarray):
        if self.segmenter is None:
            return None
        import torch

        images = torch.from_numpy(rgb).permute(2, 0, 1)[None].float().div_(255.0)
        return self.segmenter.segment(images).pixel_codebook_logits[0]

    def _publish(self, frame: SensorFrame, objects: list, camera, T_world_cam: np.ndarray) -> None:
        p = self.params
        stamp = frame.image.header.stamp
        self.pub_objects.publish(conversions.map_objects_to_msg(objects, p["map_frame"], stamp))
        self.pub_markers.publish(conversions.object_markers(objects, p["map_frame"], stamp))
        now = time.monotonic()
        if now - self._last_gaussians_s >= p["publish_gaussians_period_s"]:
            self._last_gaussians_s = now
            self.pub_gaussians.publish(self.gaussians_cloud(stamp))
        if self.pub_identity is not None:
            self.pub_identity.publish(self.identity_image(objects, camera, T_world_cam, stamp))
        latency_s = (self.get_clock().now().nanoseconds - frame.stamp_ns) * 1e-9
        self.latencies_s.append(latency_s)
        self.diagnostics.latency(latency_s)
        self.published += 1
        self.diagnostics.set("objects", len(objects))
        self.diagnostics.set("gaussians", self.mapper.map.num_gaussians)
        self.diagnostics.set("frames_integrated", self.frames_integrated)

    def gaussians_cloud(self, stamp) -> PointCloud2:
        """Gaussian centres with rgb, opacity, scale (largest axis, m) and instance id (0 = none)."""
        with self._map_lock:
            gmap = self.mapper.map
            n = gmap.num_gaussians
            instance = np.zeros(n, dtype=np.uint32)
            for obj in self.objects:
                idx = np.asarray(obj.gaussian_indices, dtype=np.int64)
                instance[idx[(idx >= 0) & (idx < n)]] = int(obj.id)
            import torch

            with torch.no_grad():
                means = gmap.params["means"].detach().numpy().copy()
                colors = gmap.colors().numpy().copy()
                opacity = gmap.opacities_act().numpy().copy()
                scale = gmap.scales_act().amax(dim=1).numpy().copy()
        limit = self.params["max_published_gaussians"]
        if n > limit:
            keep = np.sort(self._rng.choice(n, limit, replace=False))
            means, colors, opacity, scale, instance = means[keep], colors[keep], opacity[keep], scale[keep], instance[keep]
        return conversions.points_to_pointcloud2(means, self.params["map_frame"], stamp, rgb=colors,
                                                 opacity=opacity, scale=scale, instance=instance)

    def identity_image(self, objects: list, camera, T_world_cam: np.ndarray, stamp) -> Image:
        """The map's instance mask rendered from the current camera, coloured by codebook entry."""
        from ocgs_ros.gaussians.objects import render_instance_mask

        height, width = camera.rgb.shape[:2]
        with self._map_lock:
            mask = render_instance_mask(self.mapper, objects, np.linalg.inv(T_world_cam), camera.K, width, height)
        rgb = np.zeros((height, width, 3), np.uint8)
        for obj in objects:
            rgb[mask == int(obj.id)] = np.rint(conversions.codebook_color(int(obj.codebook_entry)) * 255).astype(np.uint8)
        return conversions.rgb_to_image_msg(rgb, camera.frame_id, stamp)

    # -- services ----------------------------------------------------------------------------
    def _to_map_frame(self, frame_id: str, points: np.ndarray) -> np.ndarray:
        if not frame_id or frame_id == self.params["map_frame"]:
            return points
        T = lookup(self.tf_buffer, self.params["map_frame"], frame_id, 0, self.params["tf_timeout_s"])
        return transform_points(T, points)

    def _on_query(self, request, response):
        from ocgs_ros_interfaces.srv import QueryObjects

        response.header.frame_id = self.params["map_frame"]
        response.header.stamp = self.get_clock().now().to_msg()
        try:
            with self._map_lock:
                if request.mode == QueryObjects.Request.ALL:
                    found = list(self.objects)
                elif request.mode == QueryObjects.Request.BY_CODEBOOK_ENTRY:
                    found = self.tracker.query_by_codebook(int(request.codebook_entry))
                elif request.mode == QueryObjects.Request.BY_POINT_RADIUS:
                    if not (np.isfinite(request.radius) and request.radius >= 0):
                        raise ValueError(f"radius must be finite and >= 0, got {request.radius}")
                    point = self._to_map_frame(request.frame_id, np.array(
                        [[request.point.x, request.point.y, request.point.z]]))[0]
                    found = self.tracker.query_by_point(point, float(request.radius))
                elif request.mode == QueryObjects.Request.BY_BOX:
                    corners = self._to_map_frame(request.frame_id, np.array(
                        [[request.box_min.x, request.box_min.y, request.box_min.z],
                         [request.box_max.x, request.box_max.y, request.box_max.z]]))
                    low, high = corners.min(axis=0), corners.max(axis=0)
                    found = self.tracker.query_by_box((low + high) / 2.0, high - low)
                else:
                    raise ValueError(f"unknown query mode {request.mode} (0 entry, 1 point+radius, 2 box, 3 all)")
            response.objects = [conversions.map_object_to_msg(o) for o in found]
            response.success = True
            response.message = f"{len(found)} object(s)"
        except (FrameError, ValueError) as exc:
            response.success, response.message = False, str(exc)
        return response

    def _on_save(self, request, response):
        from ocgs_ros.gaussians.persistence import save_map

        path = Path(request.path or self.params["default_map_path"])
        base = path.with_suffix("") if path.suffix in (".ply", ".json") else path
        try:
            base.parent.mkdir(parents=True, exist_ok=True)
            with self._map_lock:
                written = save_map(base, self.mapper.map, self.tracker)
            ply, objects = _saved_paths(written, base)
            response.success, response.ply_path, response.objects_path = True, str(ply), str(objects)
            response.message = f"saved {self.mapper.map.num_gaussians} Gaussians, {len(self.objects)} objects"
            self.get_logger().info(f"{response.message} to {ply}")
        except Exception as exc:  # noqa: BLE001 - a failed save is reported to the caller, not fatal
            response.success, response.message = False, f"save_map to {base} failed: {exc}"
            self.get_logger().error(response.message)
        return response

    def _on_reset(self, request, response):
        with self._map_lock:
            self._new_map()
        response.success, response.message = True, "map cleared"
        self.get_logger().info("map reset")
        return response

    # -- figures and shutdown ----------------------------------------------------------------
    def stats(self) -> dict:
        return {
            **self.rejects.frame_stats(self.worker, self.sync, self.latencies_s),
            "dropped_stale_sync": int(getattr(self.sync, "dropped_stale", 0)),
            "process_ms_mean": round(self.worker.stats.mean_duration_s * 1e3, 1), "objects": len(self.objects),
            "gaussians": self.mapper.map.num_gaussians,
        }

    def destroy_node(self):
        # Finish the frame in hand (it holds the map lock) before the publishers go away.
        worker = getattr(self, "worker", None)  # None when the constructor failed part-way
        if worker is not None:
            worker.stop(timeout_s=30.0)
        return super().destroy_node()


def _saved_paths(written, base: Path) -> tuple[Path, Path]:
    """(PLY, objects JSON) from whatever save_map returned (a pair, a dict or a path)."""
    if isinstance(written, (tuple, list)) and len(written) == 2:
        return Path(written[0]), Path(written[1])
    if isinstance(written, dict):
        return Path(written.get("ply", base.with_suffix(".ply"))), Path(written.get("objects", base.with_suffix(".objects.json")))
    ply = Path(written) if written is not None else base.with_suffix(".ply")
    return ply, ply.with_name(ply.stem + ".objects.json")


def _marker_array():
    from visualization_msgs.msg import MarkerArray

    return MarkerArray


def main(args=None) -> None:
    run_node(ObjectMappingNode, "object_mapping_node", args)


if __name__ == "__main__":
    main()
