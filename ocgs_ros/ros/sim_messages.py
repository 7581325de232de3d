"""Simulator frames → ROS messages. Shared by the sim_publisher node (over DDS) and by
``sim_to_bag`` (straight into a bag), so both produce the same messages.

Sensor topics look like a real robot's; ground truth goes on ``/sim/...`` topics for evaluation only.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

import numpy as np
from std_msgs.msg import String
from tf2_msgs.msg import TFMessage

from ocgs_ros.ocl.data import gocl_tabletop_config
from ocgs_ros.ros import conversions, qos
from ocgs_ros.sim.classes import BOX_CLASSES, MAP_CLASSES
from ocgs_ros.sim.driving import DrivingWorld, surround_config
from ocgs_ros.sim.tabletop import TabletopWorld
from ocgs_ros.sim.types import DrivingConfig, TabletopConfig


@dataclass(frozen=True)
class FrameIds:
    world: str = "map"
    base: str = "base_link"
    camera: str = "camera_optical_frame"
    lidar: str = "lidar_link"

    def camera_frame(self, index: int) -> str:
        return self.camera if index == 0 else f"{self.camera}_{index}"


def topic_qos(topic: str):
    """QoS of each simulated topic: sensor streams best-effort like real drivers, TF as tf2 does,
    the ground-truth object list latched, everything else reliable."""
    if topic in ("/tf", "/tf_static"):
        return qos.qos_for_topic(topic)
    if topic.endswith(("/image_raw", "/points")) and not topic.startswith("/sim/"):
        return qos.SENSOR_DATA
    if topic == "/sim/objects":
        return qos.LATCHED
    return qos.RELIABLE


def camera_topic_prefix(index: int) -> str:
    """``camera`` for the first camera, ``camera_<i>`` for the others."""
    return "camera" if index == 0 else f"camera_{index}"


@dataclass(frozen=True)
class RigCamera:
    """How one simulated camera appears on ROS: ``/<prefix>/image_raw``, ``/<prefix>/camera_info``,
    ``/sim/<prefix>/...`` and its optical ``frame_id``."""

    prefix: str
    frame_id: str


def rig_cameras(world, ids: FrameIds) -> list[RigCamera]:
    """A one-camera rig keeps ``/camera`` and ``ids.camera``; a multi-camera driving rig uses its
    nuScenes channel names in lower case (``/cam_front/image_raw`` in ``cam_front_optical_frame``)."""
    names = getattr(world, "camera_names", ())
    if len(names) > 1:
        return [RigCamera(name.lower(), f"{name.lower()}_optical_frame") for name in names]
    return [RigCamera(camera_topic_prefix(0), ids.camera_frame(0))]


@dataclass
class TopicMessages:
    """(topic, message) pairs for one simulated tick, split by role."""

    sensors: list[tuple[str, object]] = field(default_factory=list)
    ground_truth: list[tuple[str, object]] = field(default_factory=list)

    def all(self, with_ground_truth: bool = True) -> list[tuple[str, object]]:
        return self.sensors + (self.ground_truth if with_ground_truth else [])


def _camera_messages(camera, prefix: str, frame_id: str, stamp) -> list[tuple[str, object]]:
    return [
        (f"/{prefix}/image_raw", conversions.rgb_to_image_msg(camera.rgb, frame_id, stamp)),
        (f"/{prefix}/camera_info", conversions.make_camera_info(camera.K, camera.width, camera.height, frame_id, stamp)),
    ]


def _camera_ground_truth(camera, prefix: str, frame_id: str, stamp) -> list[tuple[str, object]]:
    prefix = f"/sim/{prefix}"
    bridge = conversions.CvBridge()
    # instance ids (0 = background) and kind ids shifted by one (0 = background) fit mono16 and
    # survive every image tool, unlike signed 32-bit images.
    instance = bridge.cv2_to_imgmsg(camera.instance.astype(np.uint16), encoding="mono16")
    kind = bridge.cv2_to_imgmsg((camera.kind + 1).astype(np.uint16), encoding="mono16")
    depth = bridge.cv2_to_imgmsg(camera.depth.astype(np.float32), encoding="32FC1")
    out = []
    for name, msg in (("instance", instance), ("kind", kind), ("depth", depth)):
        msg.header.frame_id = frame_id
        msg.header.stamp = stamp
        out.append((f"{prefix}/{name}", msg))
    return out


def _lidar_messages(lidar, frame_id: str, stamp) -> tuple[tuple[str, object], tuple[str, object]]:
    sensor = conversions.xyz_to_pointcloud2(
        lidar.points, frame_id, stamp,
        intensity=lidar.intensity.astype(np.float32), ring=lidar.ring.astype(np.uint16),
        time=lidar.time.astype(np.float32),
    )
    labels = {"instance": lidar.instance.astype(np.int32)}
    if getattr(lidar, "cls", None) is not None:
        labels["cls"] = lidar.cls.astype(np.int32)
    labeled = conversions.xyz_to_pointcloud2(lidar.points, frame_id, stamp, **labels)
    return ("/lidar/points", sensor), ("/sim/lidar/labeled_points", labeled)


def static_transforms(ids: FrameIds, T_base_lidar: np.ndarray, T_base_cameras: list[np.ndarray], stamp,
                      camera_frames: list[str] | None = None) -> list:
    """The rig's extrinsics, published once on /tf_static (cameras in ``camera_frames``, by default
    ``ids.camera_frame(index)``)."""
    frames = camera_frames or [ids.camera_frame(index) for index in range(len(T_base_cameras))]
    out = [conversions.matrix_to_transform_stamped(T_base_lidar, ids.base, ids.lidar, stamp)]
    for frame_id, T in zip(frames, T_base_cameras, strict=True):
        out.append(conversions.matrix_to_transform_stamped(T, ids.base, frame_id, stamp))
    return out


def tabletop_messages(frame, ids: FrameIds, stamp) -> TopicMessages:
    out = TopicMessages()
    cam_frame, prefix = ids.camera_frame(0), camera_topic_prefix(0)
    out.sensors += _camera_messages(frame.camera, prefix, cam_frame, stamp)
    lidar, labeled = _lidar_messages(frame.lidar, ids.lidar, stamp)
    out.sensors.append(lidar)
    out.ground_truth += _camera_ground_truth(frame.camera, prefix, cam_frame, stamp)
    out.ground_truth.append(labeled)
    return out


def driving_messages(frame, ids: FrameIds, stamp, bev_grid, cameras: list[RigCamera] | None = None) -> TopicMessages:
    """``cameras``: topic prefix and frame of each camera (default: ``camera``, ``camera_<i>``). A
    camera that fired after the LiDAR (a staggered rig) keeps that delay on its own stamp."""
    out = TopicMessages()
    cameras = cameras or [RigCamera(camera_topic_prefix(k), ids.camera_frame(k)) for k in range(len(frame.cameras))]
    stamp_ns = conversions.stamp_to_ns(stamp)
    for rig, camera in zip(cameras, frame.cameras, strict=True):
        camera_stamp = conversions.ns_to_stamp(stamp_ns + camera.stamp_ns - frame.stamp_ns)
        out.sensors += _camera_messages(camera, rig.prefix, rig.frame_id, camera_stamp)
        out.ground_truth += _camera_ground_truth(camera, rig.prefix, rig.frame_id, camera_stamp)
    lidar, labeled = _lidar_messages(frame.lidar, ids.lidar, stamp)
    out.sensors.append(lidar)
    out.ground_truth.append(labeled)
    for layer, name in enumerate(MAP_CLASSES):
        grid = conversions.grid_to_occupancy_grid(
            frame.map_layers[layer].astype(np.float32), bev_grid.resolution,
            (bev_grid.x_min, bev_grid.y_min), ids.base, stamp,
        )
        out.ground_truth.append((f"/sim/map/{name}", grid))
    boxes = [
        {"instance_id": int(i), "class": BOX_CLASSES[int(c)], "box": [round(float(v), 4) for v in b],
         "num_points": int(n)}
        for b, c, i, n in zip(frame.boxes, frame.box_classes, frame.box_instance_ids, frame.box_num_points)
    ]
    out.ground_truth.append(("/sim/boxes", json_string({"frame": ids.base, "boxes": boxes})))
    return out


#: world kinds the simulator nodes and commands accept
WORLDS = ("tabletop", "tabletop_gocl", "driving")
#: camera rigs of the driving world: one forward camera, or six nuScenes-style surround cameras
CAMERA_RIGS = ("front", "surround")


def make_world(kind: str, seed: int, image_width: int, image_height: int, lidar_beams: int,
               lidar_azimuth_steps: int, cameras: str = "front", staggered_cameras: bool = False):
    """A simulated world from the few settings nodes and commands expose. ``cameras`` and
    ``staggered_cameras`` (each camera stamped at its own trigger time) apply to the driving world."""
    camera = {"width": int(image_width), "height": int(image_height)}
    lidar = {"beams": int(lidar_beams), "azimuth_steps": int(lidar_azimuth_steps)}
    if kind == "tabletop":
        return TabletopWorld(TabletopConfig.from_dict({"camera": camera, "lidar": lidar}), seed=int(seed))
    if kind == "tabletop_gocl":
        # The tabletop the shipped GOCL model is trained on (closer orbit, 40 deg FOV, 2-5 objects;
        # ocgs_ros.ocl.data), with this rig's LiDAR. World seeds are plain integers, training scenes
        # use SeedSequence([dataset seed, i]), so a run never replays a training scene.
        base = gocl_tabletop_config(int(image_width), int(image_height))
        config = dataclasses.replace(base, lidar=dataclasses.replace(base.lidar, **lidar))
        return TabletopWorld(config, seed=int(seed))
    if kind == "driving":
        if cameras not in CAMERA_RIGS:
            raise ValueError(f"unknown camera rig {cameras!r}; expected one of {list(CAMERA_RIGS)}")
        config = DrivingConfig.from_dict({"cameras": [camera], "lidar": lidar})
        if cameras == "surround":
            config = surround_config(int(image_width), int(image_height), lidar=config.lidar)
        return DrivingWorld(config, seed=int(seed), staggered_cameras=staggered_cameras)
    raise ValueError(f"unknown world {kind!r}; expected one of {list(WORLDS)}")


class SimStream:
    """A simulated world as a stream of ROS messages: what sim_publisher publishes and what
    sim_to_bag writes, frame by frame, from one place."""

    def __init__(self, world, ids: FrameIds = FrameIds()):
        self.world = world
        self.ids = ids
        self.is_driving = hasattr(world, "map_layers")
        self.cameras = rig_cameras(world, ids)

    def static_messages(self, stamp) -> list[tuple[str, object]]:
        """Latched once at start: rig extrinsics on /tf_static and (tabletop) the object list."""
        # The rig is fixed: read its extrinsics from the world instead of rendering a frame.
        if self.is_driving:
            transforms = static_transforms(self.ids, self.world.T_ego_lidar, self.world.T_ego_cams, stamp,
                                           [c.frame_id for c in self.cameras])
            return [("/tf_static", TFMessage(transforms=transforms))]
        transforms = static_transforms(self.ids, self.world.T_base_lidar, [self.world.T_base_camera], stamp)
        return [("/tf_static", TFMessage(transforms=transforms)),
                ("/sim/objects", tabletop_objects_message(self.world.objects))]

    def frame_messages(self, index: int, stamp) -> TopicMessages:
        """Sensor data, the body pose on /tf, and ground truth for frame ``index``."""
        frame = self.world.frame(index)
        if self.is_driving:
            out = driving_messages(frame, self.ids, stamp, self.world.config.bev_grid, self.cameras)
            T_world_base = frame.T_world_ego
        else:
            out = tabletop_messages(frame, self.ids, stamp)
            T_world_base = frame.T_world_base
        pose = conversions.matrix_to_transform_stamped(T_world_base, self.ids.world, self.ids.base, stamp)
        out.sensors.insert(0, ("/tf", TFMessage(transforms=[pose])))
        return out


def json_string(payload) -> object:
    return String(data=json.dumps(payload))


def tabletop_objects_message(objects) -> object:
    """Ground-truth objects (world frame) as JSON in std_msgs/String, for evaluation tools."""
    return json_string({
        "objects": [
            {
                "instance_id": int(o.instance_id), "kind_id": int(o.kind_id), "kind_name": o.kind_name,
                "shape": o.shape, "colour": [float(c) for c in np.asarray(o.colour).ravel()],
                "texture": o.texture, "size_class": o.size_class,
                "center": [float(v) for v in o.center], "size": [float(v) for v in o.size], "yaw": float(o.yaw),
            }
            for o in objects
        ]
    })
