"""sim_publisher: a seeded simulated camera+LiDAR rig on real ROS topics.

Publishes ``/camera/image_raw``, ``/camera/camera_info``, ``/lidar/points`` (sensor-data QoS),
``/tf`` (map → base_link) and ``/tf_static`` (rig extrinsics), ``/clock`` when ``publish_clock``,
and ground truth on ``/sim/...`` (instance/kind/depth images, labelled points, objects, map layers).
The driving world's ``cameras: surround`` rig publishes six cameras instead, ``/cam_front/...``,
``/cam_front_left/...``, ... in ``cam_*_optical_frame`` (nuScenes layout, ``sim.driving.SURROUND_RIG``).
Everything it publishes comes from :mod:`ocgs_ros.sim` through :mod:`ocgs_ros.ros.sim_messages`.
"""
from __future__ import annotations

import collections
import time
from dataclasses import dataclass

import numpy as np
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rosgraph_msgs.msg import Clock as ClockMsg

from ocgs_ros.ros import conversions, qos
from ocgs_ros.ros.node_main import run_node
from ocgs_ros.ros.params import declare_config
from ocgs_ros.ros.sim_messages import CAMERA_RIGS, WORLDS, FrameIds, SimStream, make_world, topic_qos
from ocgs_ros.settings import non_negative, one_of, positive, setting


@dataclass(frozen=True)
class SimPublisherSettings:
    """sim_publisher's ROS parameters (config/ocgs.yaml, section ``/**/sim_publisher``)."""

    world: str = setting("tabletop", "Simulated world: tabletop, tabletop_gocl (the tabletop the shipped GOCL model "
                                     "is trained on: closer orbit, 40 deg FOV, 2-5 objects) or driving.",
                         one_of(*WORLDS))
    seed: int = setting(0, "World seed: the same seed gives the same scene and sensor data.", non_negative)
    rate_hz: float = setting(5.0, "Sensor frame rate (camera and LiDAR fire together).", positive)
    num_frames: int = setting(0, "Frames before the trajectory starts over (0 = the world's default loop).",
                              non_negative)
    image_width: int = setting(320, "Camera image width in pixels.", positive)
    image_height: int = setting(240, "Camera image height in pixels.", positive)
    lidar_beams: int = setting(32, "LiDAR beams (rings).", positive)
    lidar_azimuth_steps: int = setting(1024, "LiDAR azimuth steps per sweep.", positive)
    publish_ground_truth: bool = setting(True, "Also publish ground truth on /sim/... topics.")
    publish_clock: bool = setting(False, "Publish /clock with the simulated time (for use_sim_time consumers).")
    stamp_source: str = setting("wall", "Frame stamps: 'simulated' (start + index / rate, exact even when rendering "
                                        "falls behind) or 'wall' (the wall clock at publication, as a live sensor "
                                        "driver stamps; what latency measurements need).",
                                one_of("simulated", "wall"))
    map_frame: str = setting("map", "World frame id.")
    base_frame: str = setting("base_link", "Robot/ego body frame id.")
    camera_frame: str = setting("camera_optical_frame", "Camera optical frame id (x right, y down, z forward).")
    lidar_frame: str = setting("lidar_link", "LiDAR frame id.")
    cameras: str = setting("front", "Driving camera rig: 'front' (one camera on /camera/...) or 'surround' (six "
                                    "nuScenes-style cameras of image_width x image_height on /cam_front/..., "
                                    "/cam_front_left/..., ..., frames cam_*_optical_frame).", one_of(*CAMERA_RIGS))
    staggered_cameras: bool = setting(False, "Driving: each camera fires and is stamped at its own trigger time "
                                             "after the LiDAR (as a nuScenes rig), not with it.")


class SimPublisher(Node):
    #: the settings dataclasses it declares (parameter-file checks read them)
    CONFIG_CLASSES = (SimPublisherSettings,)

    def __init__(self, **node_kwargs):
        super().__init__("sim_publisher", **node_kwargs)
        self._timer = None  # destroy_node runs even when construction fails part-way
        self.settings = s = declare_config(self, SimPublisherSettings)
        self.stream = SimStream(
            make_world(s.world, s.seed, s.image_width, s.image_height, s.lidar_beams, s.lidar_azimuth_steps,
                       s.cameras, s.staggered_cameras),
            FrameIds(s.map_frame, s.base_frame, s.camera_frame, s.lidar_frame),
        )
        self.period_ns = int(round(1e9 / s.rate_hz))
        # Simulated time starts at the wall clock so stamps look current to wall-time consumers.
        self.start_ns = time.time_ns()
        self.frame_index = 0
        #: recent render times for stats() (bounded: a simulator may run for days)
        self.render_ms: collections.deque[float] = collections.deque(maxlen=10_000)
        #: (stamp_ns, world frame index) of recent frames, for evaluation tools in the same process
        self.recent_frames: collections.deque[tuple[int, int]] = collections.deque(maxlen=1000)
        self.published_frames = 0
        self._topic_publishers: dict[str, object] = {}
        self._clock_pub = self.create_publisher(ClockMsg, "/clock", qos.CLOCK) if s.publish_clock else None
        for topic, msg in self.stream.static_messages(conversions.ns_to_stamp(self.start_ns)):
            self._publish(topic, msg)
        # A steady-clock timer: with use_sim_time this node would otherwise wait on the /clock it
        # publishes itself.
        self._timer = self.create_timer(self.period_ns / 1e9, self._tick, clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.get_logger().info(
            f"simulating a {s.world} world (seed {s.seed}) at {s.rate_hz} Hz, "
            f"camera {s.image_width}x{s.image_height}, LiDAR {s.lidar_beams}x{s.lidar_azimuth_steps}"
        )

    def _publish(self, topic: str, msg) -> None:
        pub = self._topic_publishers.get(topic)
        if pub is None:
            pub = self._topic_publishers[topic] = self.create_publisher(type(msg), topic, topic_qos(topic))
        pub.publish(msg)

    def _frame_count(self) -> int:
        return self.settings.num_frames or getattr(self.stream.world, "default_num_frames", 0) or 2**31

    def _tick(self) -> None:
        index = self.frame_index % self._frame_count()
        stamp_ns = (time.time_ns() if self.settings.stamp_source == "wall"
                    else self.start_ns + self.frame_index * self.period_ns)
        stamp = conversions.ns_to_stamp(stamp_ns)
        self.recent_frames.append((stamp_ns, index))
        self.frame_index += 1
        started = time.perf_counter()
        try:
            messages = self.stream.frame_messages(index, stamp)
        except Exception as exc:  # noqa: BLE001 - one failed render must not kill the node
            self.get_logger().error(f"simulating frame {index} failed: {exc}", throttle_duration_sec=5.0)
            return
        self.render_ms.append((time.perf_counter() - started) * 1e3)
        if self._clock_pub is not None:
            self._clock_pub.publish(ClockMsg(clock=stamp))
        for topic, msg in messages.all(self.settings.publish_ground_truth):
            self._publish(topic, msg)
        self.published_frames += 1

    def stats(self) -> dict:
        render = np.asarray(self.render_ms) if self.render_ms else np.zeros(1)
        return {
            "published_frames": self.published_frames,
            "render_ms_median": round(float(np.median(render)), 2),
            "render_ms_max": round(float(render.max()), 2),
        }

    def destroy_node(self):
        # No frame may start publishing while the publishers are being destroyed.
        if self._timer is not None:
            self._timer.cancel()
            self.destroy_timer(self._timer)
            self._timer = None
        return super().destroy_node()


def main(args=None) -> None:
    run_node(SimPublisher, "sim_publisher", args)


if __name__ == "__main__":
    main()
