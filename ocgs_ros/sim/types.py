"""Configurations and per-frame outputs of the simulated worlds (plain numpy data, no ROS)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np


def _from_dict(cls, values: dict[str, Any] | None):
    """Build dataclass ``cls`` from a (YAML-style) dict; nested dataclasses and lists of them too.
    Unknown keys raise ValueError so typos in configs do not pass silently."""
    values = dict(values or {})
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown option(s) {unknown}; known: {sorted(known)}")
    kwargs = {}
    defaults = cls()
    for name, value in values.items():
        current = getattr(defaults, name)
        if dataclasses.is_dataclass(current) and isinstance(value, dict):
            value = _from_dict(type(current), {**dataclasses.asdict(current), **value})
        elif isinstance(current, list) and current and dataclasses.is_dataclass(current[0]):
            value = [_from_dict(type(current[0]), {**dataclasses.asdict(current[0]), **v}) for v in value]
        elif isinstance(current, tuple):
            value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)


@dataclass
class CameraConfig:
    width: int = 320
    height: int = 240
    hfov_deg: float = 70.0

    def __post_init__(self):
        if self.width <= 0 or self.height <= 0 or not 1.0 < self.hfov_deg < 179.0:
            raise ValueError(f"invalid camera config {self}")


@dataclass
class LidarConfig:
    beams: int = 32
    azimuth_steps: int = 1024
    fov_down_deg: float = -30.0
    fov_up_deg: float = 10.0
    range_noise_std: float = 0.01
    dropout: float = 0.02
    max_range: float = 70.0
    min_range: float = 0.2
    sweep_period_s: float = 0.1

    def __post_init__(self):
        if self.beams <= 0 or self.azimuth_steps <= 0 or not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"invalid LiDAR config {self}")


@dataclass
class TabletopConfig:
    camera: CameraConfig = field(default_factory=lambda: CameraConfig(hfov_deg=60.0))
    lidar: LidarConfig = field(default_factory=lambda: LidarConfig(
        fov_down_deg=-40.0, fov_up_deg=5.0, range_noise_std=0.003, max_range=6.0, min_range=0.1))
    min_objects: int = 3
    max_objects: int = 12
    kinds: tuple[int, ...] = ()  # restrict to these kind ids (empty = whole catalogue)
    placement_radius: float = 0.38  # objects lie within this distance of the table centre
    orbit_radius: float = 0.95
    orbit_radius_variation: float = 0.12
    camera_height: float = 0.55
    camera_height_variation: float = 0.08
    lidar_height: float = 0.35
    frames_per_orbit: int = 120
    frame_period_s: float = 0.2

    def __post_init__(self):
        if not 1 <= self.min_objects <= self.max_objects:
            raise ValueError(f"need 1 <= min_objects <= max_objects, got {self.min_objects}, {self.max_objects}")

    @classmethod
    def from_dict(cls, values):
        return _from_dict(cls, values)


@dataclass
class BevGrid:
    x_min: float = -50.0
    x_max: float = 50.0
    y_min: float = -50.0
    y_max: float = 50.0
    resolution: float = 0.5

    @property
    def shape(self) -> tuple[int, int]:
        return (int(round((self.x_max - self.x_min) / self.resolution)),
                int(round((self.y_max - self.y_min) / self.resolution)))


@dataclass
class DrivingConfig:
    cameras: list[CameraConfig] = field(default_factory=lambda: [CameraConfig(width=352, height=128, hfov_deg=70.0)])
    lidar: LidarConfig = field(default_factory=LidarConfig)
    bev_grid: BevGrid = field(default_factory=BevGrid)
    num_moving_vehicles: int = 14
    num_parked_cars: int = 8
    num_pedestrians: int = 14
    num_cyclists: int = 4
    ego_speed: float = 8.0
    frame_period_s: float = 0.1
    default_num_frames: int = 100

    @classmethod
    def from_dict(cls, values):
        return _from_dict(cls, values)


@dataclass
class ObjectInfo:
    """Ground truth of one tabletop object (world frame)."""

    instance_id: int
    kind_id: int
    kind_name: str
    shape: str
    colour: tuple[float, float, float]
    texture: str
    size_class: str
    center: np.ndarray  # box centre [3]
    size: np.ndarray  # box extents l, w, h [3]
    yaw: float


@dataclass
class CameraFrame:
    rgb: np.ndarray  # uint8 [H, W, 3]
    depth: np.ndarray  # float32 [H, W], z-depth in metres, 0 = no hit
    instance: np.ndarray  # int32 [H, W], 0 = background
    kind: np.ndarray  # int32 [H, W], -1 = background (driving: box class)
    K: np.ndarray  # [3, 3]
    T_world_cam: np.ndarray  # [4, 4]
    stamp_ns: int
    width: int
    height: int
    T_ego_cam: np.ndarray | None = None  # driving only


@dataclass
class LidarSweep:
    points: np.ndarray  # float32 [N, 3], LiDAR frame
    intensity: np.ndarray  # float32 [N]
    ring: np.ndarray  # uint16 [N]
    time: np.ndarray  # float32 [N], seconds from sweep start
    instance: np.ndarray  # int32 [N], 0 = background
    T_world_lidar: np.ndarray
    stamp_ns: int
    cls: np.ndarray | None = None  # int32 [N], driving: box class, -1 = background
    T_ego_lidar: np.ndarray | None = None  # driving only


@dataclass
class TabletopFrame:
    index: int
    stamp_ns: int
    T_world_base: np.ndarray
    T_base_camera: np.ndarray
    T_base_lidar: np.ndarray
    camera: CameraFrame
    lidar: LidarSweep


@dataclass
class DrivingFrame:
    index: int
    stamp_ns: int
    T_world_ego: np.ndarray
    cameras: list[CameraFrame]
    lidar: LidarSweep
    boxes: np.ndarray  # float32 [M, 9] ego frame: x y z l w h yaw vx vy
    box_classes: np.ndarray  # int32 [M]
    box_instance_ids: np.ndarray  # int32 [M]
    box_num_points: np.ndarray  # int32 [M], LiDAR points on each box
    map_layers: np.ndarray  # bool [6, H, W] ego-frame BEV
    bev_grid: BevGrid
