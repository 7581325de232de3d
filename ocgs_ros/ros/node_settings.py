"""Settings of the perception nodes themselves: topics, frames, scheduling and publishing.

What the nodes *compute* is configured elsewhere, in one place each: the mapping pipeline by
:class:`ocgs_ros.mapping.config.MappingConfig` (declared on the mapping node too, at dotted names
such as ``view.process_width``), the BEV model by its checkpoint. Every field declared with
:func:`~ocgs_ros.settings.setting` is a ROS parameter of the same name (``declare_config``) and a
key of the node's section in ``config/ocgs.yaml``; the defaults here are the only ones.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ocgs_ros.settings import non_negative, positive, setting

#: ``bev_checkpoint`` value naming the checkpoint shipped with the package
SHIPPED_CHECKPOINT = "shipped"
#: ``bev_checkpoint`` value naming the six-camera surround checkpoint (``ocgs_ros.models.BEV_SURROUND``)
SHIPPED_SURROUND_CHECKPOINT = "shipped_surround"


def _bev_checkpoint_exists(value: str) -> str | None:
    if value in ("", SHIPPED_CHECKPOINT, SHIPPED_SURROUND_CHECKPOINT):
        return None
    return None if Path(value).is_file() else f"file {value!r} not found"


def _topic_list(value) -> str | None:
    if not value or any(not isinstance(topic, str) or not topic for topic in value):
        return f"must be a non-empty list of topic names, got {list(value)!r}"
    return None


@dataclass(frozen=True)
class PerceptionSettings:
    """What both perception nodes share: input synchronisation, TF, staleness, threads, health."""

    sync_queue_size: int = setting(10, "Messages kept per input by the approximate-time synchronizer.", positive)
    sync_slop_s: float = setting(0.05, "Largest stamp difference within one synchronised frame (s).", non_negative)
    tf_timeout_s: float = setting(0.2, "How long the worker waits for TF at a frame's stamp (s).", non_negative)
    max_input_age_s: float = setting(0.0, "Drop frames older than this vs the node clock (s; 0 = no age check). "
                                          "Use with use_sim_time when replaying bags.", non_negative)
    torch_threads: int = setting(1, "Threads torch may use in the worker.", positive)
    diagnostics_period_s: float = setting(2.0, "Period of the /diagnostics status (s).", positive)
    expected_rate_hz: float = setting(5.0, "Input frame rate the diagnostics expect (warn below half of it).",
                                      positive)


@dataclass(frozen=True)
class MappingNodeSettings(PerceptionSettings):
    """object_mapping_node's own settings (the pipeline's are ``MappingConfig``)."""

    image_topic: str = setting("/camera/image_raw", "Camera image topic (sensor_msgs/Image).")
    camera_info_topic: str = setting("/camera/camera_info", "CameraInfo topic of that camera.")
    points_topic: str = setting("/lidar/points", "LiDAR point cloud topic (sensor_msgs/PointCloud2).")
    depth_topic: str = setting("", "Depth image registered to the camera (16UC1 mm / 32FC1 m); '' = no depth "
                                   "camera. Its pixels grow and supervise the map like LiDAR returns.")
    map_frame: str = setting("map", "World frame of the map; poses come from TF map <- sensor frames.")
    publish_gaussians_period_s: float = setting(2.0, "Period of ~/gaussians (0 = after every frame).", non_negative)
    max_published_gaussians: int = setting(20000, "Points in ~/gaussians at most (random subset).", positive)
    publish_identity_image: bool = setting(False, "Publish ~/identity_image (renders the map once more per frame).")
    default_map_path: str = setting("runs/maps/object_map", "Where ~/save_map writes when the request path is empty.")
    # its own GIL and core: beside the executor, the conversions and (in the one-process bring-up)
    # the simulator, the mapper's Python waited for the GIL (ocgs_ros.mapping.process)
    pipeline_process: bool = setting(True, "Run the mapping pipeline in a process of its own (false: in the "
                                           "node's process, as tests that reach into it need).")


@dataclass(frozen=True)
class BevNodeSettings(PerceptionSettings):
    """bev_perception_node's settings (the model's own live in its checkpoint)."""

    image_topics: tuple[str, ...] = setting(("/camera/image_raw",), "Camera image topics, one per camera, in the "
                                                                    "model's camera order.", _topic_list)
    camera_info_topics: tuple[str, ...] = setting(("/camera/camera_info",), "CameraInfo topics, same order as "
                                                                            "image_topics.", _topic_list)
    points_topic: str = setting("/lidar/points", "LiDAR point cloud topic (sensor_msgs/PointCloud2).")
    ego_frame: str = setting("base_link", "Ego frame (x forward, y left, z up): outputs are in it.")
    bev_checkpoint: str = setting(SHIPPED_CHECKPOINT, "BEV checkpoint: a path, 'shipped' "
                                                      "(ocgs_ros.models.BEV_DRIVING, one front camera) or "
                                                      "'shipped_surround' (ocgs_ros.models.BEV_SURROUND, six "
                                                      "cameras).", _bev_checkpoint_exists)
    min_score: float = setting(0.2, "Publish detections with at least this score.", non_negative)
    # drivers disagree on intensity: Velodyne/nuScenes 0-255, KITTI and our simulator 0-1, Ouster
    # up to 65535; the model was trained on 0-1, so a 0-255 driver wants 1/255 = 0.00392156862745098
    lidar_intensity_scale: float = setting(1.0, "Factor applied to the LiDAR intensity field before the model "
                                                "(the shipped models expect 0-1: 0.00392156862745098 for a "
                                                "0-255 driver).", positive)
    # a driving LiDAR spins at 10-20 Hz, and the BEV node follows the LiDAR
    expected_rate_hz: float = setting(10.0, "Input frame rate the diagnostics expect (warn below half of it).",
                                      positive)

    def __post_init__(self):
        if len(self.image_topics) != len(self.camera_info_topics):
            raise ValueError(f"BevNodeSettings: {len(self.image_topics)} image_topics but "
                             f"{len(self.camera_info_topics)} camera_info_topics (one CameraInfo per camera)")
