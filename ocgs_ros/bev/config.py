"""Configuration of the camera+LiDAR BEV multi-task model.

All sizes are explicit so a preset can be scaled without touching the model code. Grids follow
docs/conventions.md: ``[row, col]`` with row = x bin and col = y bin over ``[min, max)``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from ..sim.classes import BOX_CLASSES, MAP_CLASSES

TASKS: tuple[str, ...] = ("detection", "map")
REGRESSION_CHANNELS = 10  # offset x/y, z, log l/w/h, sin/cos yaw, vx, vy


@dataclass(frozen=True)
class GridSpec:
    """A BEV grid over ``x in [x_min, x_max)``, ``y in [y_min, y_max)`` at ``resolution`` m."""

    x_min: float
    x_max: float
    y_min: float
    y_max: float
    resolution: float

    def __post_init__(self) -> None:
        if self.resolution <= 0:
            raise ValueError(f"GridSpec.resolution must be > 0, got {self.resolution}")
        for lo, hi, name in ((self.x_min, self.x_max, "x"), (self.y_min, self.y_max, "y")):
            if hi <= lo:
                raise ValueError(f"GridSpec {name} range is empty: [{lo}, {hi})")
            cells = (hi - lo) / self.resolution
            if abs(cells - round(cells)) > 1e-6:
                raise ValueError(
                    f"GridSpec {name} extent {hi - lo} m is not a whole number of "
                    f"{self.resolution} m cells"
                )

    @property
    def rows(self) -> int:
        """Number of x bins."""
        return int(round((self.x_max - self.x_min) / self.resolution))

    @property
    def cols(self) -> int:
        """Number of y bins."""
        return int(round((self.y_max - self.y_min) / self.resolution))

    @property
    def shape(self) -> tuple[int, int]:
        return (self.rows, self.cols)


@dataclass(frozen=True)
class BevConfig:
    """Everything that sizes the model, its targets and its decoder.

    ``det_grid`` is the grid of the LiDAR/camera BEV features, the shared decoder output and the
    detection head. ``map_grid`` is the map-segmentation output grid; when it differs from
    ``det_grid`` the map head resamples the shared feature with ``grid_sample``.
    """

    det_grid: GridSpec = GridSpec(-51.2, 51.2, -51.2, 51.2, 0.8)
    map_grid: GridSpec = GridSpec(-50.0, 50.0, -50.0, 50.0, 0.5)
    z_min: float = -3.0  # points / frustum samples outside [z_min, z_max) are dropped
    z_max: float = 5.0
    num_cameras: int = 1
    image_height: int = 128
    image_width: int = 352
    image_stride: int = 8  # image backbone output stride (power of two)
    depth_min: float = 1.0
    depth_max: float = 52.0
    depth_bins: int = 32
    image_channels: tuple[int, ...] = (16, 32, 48)  # one stride-2 stage each
    camera_bev_channels: int = 32
    lidar_point_channels: int = 32
    lidar_bev_channels: int = 32
    fused_channels: int = 32
    shared_channels: int = 32
    head_channels: int = 32
    box_classes: tuple[str, ...] = BOX_CLASSES
    map_classes: tuple[str, ...] = MAP_CLASSES
    # detection targets / decoding
    gaussian_overlap: float = 0.1
    min_gaussian_radius: int = 2
    max_detections: int = 100
    score_threshold: float = 0.1
    nms_radius: tuple[float, ...] = (2.0, 3.0, 0.5, 0.8)  # metres, per box class
    # loss weights
    heatmap_weight: float = 1.0
    regression_weight: float = 0.25
    regression_code_weights: tuple[float, ...] = (1.0,) * 8 + (0.2, 0.2)
    map_weight: float = 1.0
    map_focal_alpha: float = 0.25
    map_focal_gamma: float = 2.0

    def __post_init__(self) -> None:
        if self.num_cameras < 1:
            raise ValueError(f"num_cameras must be >= 1, got {self.num_cameras}")
        stride = 2 ** len(self.image_channels)
        if stride != self.image_stride:
            raise ValueError(
                f"image_stride {self.image_stride} does not match {len(self.image_channels)} "
                f"stride-2 stages (= {stride})"
            )
        if self.image_height % stride or self.image_width % stride:
            raise ValueError(
                f"image size {self.image_height}x{self.image_width} is not divisible by the "
                f"backbone stride {stride}"
            )
        if not 0 < self.depth_min < self.depth_max:
            raise ValueError(f"need 0 < depth_min < depth_max, got {self.depth_min}, {self.depth_max}")
        if self.depth_bins < 2:
            raise ValueError(f"depth_bins must be >= 2, got {self.depth_bins}")
        if self.z_max <= self.z_min:
            raise ValueError(f"need z_min < z_max, got {self.z_min}, {self.z_max}")
        if len(self.nms_radius) != len(self.box_classes):
            raise ValueError(
                f"nms_radius has {len(self.nms_radius)} entries for {len(self.box_classes)} box classes"
            )
        if len(self.regression_code_weights) != REGRESSION_CHANNELS:
            raise ValueError(
                f"regression_code_weights needs {REGRESSION_CHANNELS} entries, "
                f"got {len(self.regression_code_weights)}"
            )

    @property
    def num_box_classes(self) -> int:
        return len(self.box_classes)

    @property
    def num_map_classes(self) -> int:
        return len(self.map_classes)

    @property
    def feature_height(self) -> int:
        return self.image_height // self.image_stride

    @property
    def feature_width(self) -> int:
        return self.image_width // self.image_stride

    def depth_bin_centres(self) -> list[float]:
        """Uniform depth bin centres in metres between ``depth_min`` and ``depth_max``."""
        step = (self.depth_max - self.depth_min) / self.depth_bins
        return [self.depth_min + (i + 0.5) * step for i in range(self.depth_bins)]

    @staticmethod
    def tiny(**overrides: Any) -> "BevConfig":
        """A few-thousand-cell model for unit tests (seconds per step on one core)."""
        base = BevConfig(
            det_grid=GridSpec(-12.8, 12.8, -12.8, 12.8, 0.8),
            map_grid=GridSpec(-12.0, 12.0, -12.0, 12.0, 0.6),
            image_height=32,
            image_width=64,
            image_stride=4,
            image_channels=(8, 16),
            depth_min=1.0,
            depth_max=17.0,
            depth_bins=8,
            camera_bev_channels=8,
            lidar_point_channels=8,
            lidar_bev_channels=8,
            fused_channels=16,
            shared_channels=16,
            head_channels=8,
            max_detections=50,
        )
        return dataclasses.replace(base, **overrides)

    @staticmethod
    def small(**overrides: Any) -> "BevConfig":
        """Ablation / shipped-model preset: 51.2 m x 51.2 m at 0.8 m (64 x 64 cells), a 64 x 176
        camera, map on the simulator's 0.5 m grid cropped to 50 m x 50 m (100 x 100 cells).

        Sized so that 18 ablation runs fit an hour on one CPU core (docs/bev.md)."""
        base = BevConfig(
            det_grid=GridSpec(-25.6, 25.6, -25.6, 25.6, 0.8),
            map_grid=GridSpec(-25.0, 25.0, -25.0, 25.0, 0.5),
            image_height=64,
            image_width=176,
            image_stride=8,
            image_channels=(16, 24, 32),
            depth_min=1.0,
            depth_max=37.0,
            depth_bins=24,
            camera_bev_channels=24,
            lidar_point_channels=24,
            lidar_bev_channels=24,
            fused_channels=32,
            shared_channels=32,
            head_channels=24,
            max_detections=80,
        )
        return dataclasses.replace(base, **overrides)

    @staticmethod
    def surround(**overrides: Any) -> "BevConfig":
        """Six-camera surround rig (nuScenes layout, ``ocgs_ros.sim.driving.SURROUND_RIG``) over
        ±51.2 m at 0.8 m (128 x 128 cells), map on the simulator's 0.5 m grid (200 x 200 cells).

        Each camera enters at 256 x 144 (16:9, like nuScenes' 1600 x 900); channel widths follow
        ``small`` so that one CPU thread runs a frame within 150 ms (benchmarks/bev_bench.py)."""
        # the small preset's channel widths (they keep one CPU thread within budget), with six
        # cameras at 16:9, the wider grids and the depth range they need
        surround = dict(det_grid=GridSpec(-51.2, 51.2, -51.2, 51.2, 0.8), map_grid=GridSpec(-50.0, 50.0, -50.0, 50.0, 0.5),
                        num_cameras=6, image_height=144, image_width=256, depth_max=61.0, depth_bins=30,
                        max_detections=150)
        return BevConfig.small(**{**surround, **overrides})

    @staticmethod
    def preset(name: str, **overrides: Any) -> "BevConfig":
        """``tiny``, ``small``, ``surround`` or ``default`` with field overrides."""
        builders = {"tiny": BevConfig.tiny, "small": BevConfig.small, "surround": BevConfig.surround,
                    "default": BevConfig.default}
        if name not in builders:
            raise ValueError(f"unknown BevConfig preset {name!r}; choose from {sorted(builders)}")
        return builders[name](**overrides)

    @staticmethod
    def default(**overrides: Any) -> "BevConfig":
        """CPU-trainable preset: 102.4 m x 102.4 m at 0.8 m (128 x 128 cells), one camera."""
        return dataclasses.replace(BevConfig(), **overrides)

    @staticmethod
    def from_dict(values: Mapping[str, Any]) -> "BevConfig":
        """Build from a plain mapping (e.g. YAML); grids may be given as mappings or 5-sequences."""
        known = {f.name for f in dataclasses.fields(BevConfig)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown BevConfig keys: {unknown}")
        kwargs: dict[str, Any] = {}
        for key, value in values.items():
            if key in ("det_grid", "map_grid"):
                kwargs[key] = _grid_from(value, key)
            elif isinstance(value, list):
                kwargs[key] = tuple(value)
            else:
                kwargs[key] = value
        return BevConfig(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form that ``from_dict`` reads back."""
        return dataclasses.asdict(self)



def _grid_from(value: Any, key: str) -> GridSpec:
    if isinstance(value, GridSpec):
        return value
    if isinstance(value, Mapping):
        return GridSpec(**value)
    if isinstance(value, (list, tuple)) and len(value) == 5:
        return GridSpec(*map(float, value))
    raise ValueError(f"{key} must be a GridSpec, a mapping or [x_min, x_max, y_min, y_max, res]; got {value!r}")

