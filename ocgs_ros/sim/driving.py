"""Driving scenes: an ego vehicle on a procedural road network among cars, trucks, pedestrians and
cyclists, with a roof LiDAR, camera(s), 3D boxes and BEV map layers as ground truth.

Camera rigs follow from the number of cameras in ``DrivingConfig.cameras`` (:func:`camera_mounts`):
one camera looks forward; six form the nuScenes surround rig (:data:`SURROUND_RIG`,
:func:`surround_config`); any other count is spread evenly in yaw.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from .classes import MAP_CLASSES
from .geometry import intrinsics, make_pose, optical_pose_in_body
from .raycast import Hits, Plane, Scene, YawBox
from .roadmap import CROSS_HALF_WIDTH, LANE_WIDTH, MAIN_HALF_WIDTH, WALKWAY_WIDTH, RoadMap
from .sensors import RayCastWorld
from .types import CameraConfig, DrivingConfig, DrivingFrame

CLASS_SIZE = {0: (4.5, 1.9, 1.6), 1: (8.0, 2.5, 3.2), 2: (0.7, 0.7, 1.75), 3: (1.8, 0.6, 1.7)}
CLASS_RGB = {1: (0.95, 0.55, 0.10), 2: (0.85, 0.25, 0.25), 3: (0.55, 0.25, 0.80)}
CAR_PALETTE = np.array([(0.8, 0.8, 0.82), (0.15, 0.15, 0.18), (0.7, 0.1, 0.1), (0.15, 0.3, 0.7), (0.9, 0.9, 0.9)])
GROUND_RGB = {  # painted in this order, later wins
    "grass": (0.30, 0.48, 0.22), "drivable_area": (0.30, 0.30, 0.32), "carpark_area": (0.45, 0.46, 0.50),
    "walkway": (0.68, 0.66, 0.62), "ped_crossing": (0.92, 0.92, 0.92), "stop_line": (0.95, 0.95, 0.95),
    "divider": (0.95, 0.95, 0.90),
}
BUILDING_RGB = (0.62, 0.58, 0.55)
EGO_LANE_Y = -LANE_WIDTH / 2
EGO_START_X = -60.0
CAMERA_PITCH_DOWN = 0.03  # rad: a slight downward tilt shows more road near the car


@dataclass(frozen=True)
class CameraMount:
    """Where one camera sits on the car and when it fires.

    ``name`` is the nuScenes channel name; ``trigger_delay_s`` is the camera's exposure time after
    the LiDAR's frame stamp when the rig is staggered (nuScenes cameras fire as the spinning LiDAR
    sweeps past their axis, so each image has its own stamp).
    """

    name: str
    position: tuple[float, float, float]  # ego frame, metres
    yaw_deg: float  # counter-clockwise from ego +x
    hfov_deg: float
    trigger_delay_s: float = 0.0


#: nuScenes-like surround rig, counter-clockwise from forward (the order of
#: ``bev.nuscenes.CAMERA_CHANNELS_6``): ~70 deg cameras 55 deg apart at the front and sides and a
#: wider back camera, so neighbouring views overlap. Delays spread the six exposures over the
#: 50 ms sweep of a 20 Hz LiDAR, within the BEV node's default synchronisation slop.
SURROUND_RIG: tuple[CameraMount, ...] = (
    CameraMount("CAM_FRONT", (1.70, 0.00, 1.55), 0.0, 70.0, 0.0),
    CameraMount("CAM_FRONT_LEFT", (1.52, 0.49, 1.55), 55.0, 70.0, 0.008),
    CameraMount("CAM_BACK_LEFT", (1.03, 0.48, 1.55), 110.0, 70.0, 0.017),
    CameraMount("CAM_BACK", (0.03, 0.00, 1.60), 180.0, 110.0, 0.025),
    CameraMount("CAM_BACK_RIGHT", (1.03, -0.48, 1.55), -110.0, 70.0, 0.033),
    CameraMount("CAM_FRONT_RIGHT", (1.52, -0.49, 1.55), -55.0, 70.0, 0.042),
)


def camera_mounts(configs: list[CameraConfig]) -> list[CameraMount]:
    """The rig for these cameras: one forward camera, the :data:`SURROUND_RIG` for six (each
    config's own ``hfov_deg`` kept), or cameras spread evenly in yaw from forward."""
    n = len(configs)
    if n == len(SURROUND_RIG):
        return [dataclasses.replace(m, hfov_deg=c.hfov_deg) for m, c in zip(SURROUND_RIG, configs)]
    names = ["CAM_FRONT"] if n == 1 else [f"CAM_{k}" for k in range(n)]
    return [CameraMount(names[k], (1.5, 0.0, 1.6), 360.0 * k / n, c.hfov_deg) for k, c in enumerate(configs)]


def surround_config(width: int = 256, height: int = 144, **overrides) -> DrivingConfig:
    """A :class:`DrivingConfig` with the six :data:`SURROUND_RIG` cameras at ``width x height``."""
    cameras = [CameraConfig(width=int(width), height=int(height), hfov_deg=m.hfov_deg) for m in SURROUND_RIG]
    return DrivingConfig(cameras=cameras, **overrides)


class DrivingWorld(RayCastWorld):
    """``staggered_cameras``: each camera renders and is stamped at its mount's trigger delay after
    the frame time (ego and agents where they are then) instead of with the LiDAR."""

    def __init__(self, config: DrivingConfig | None = None, seed: int = 0, staggered_cameras: bool = False):
        self.config = config or DrivingConfig()
        self.seed = int(seed)
        rng = np.random.default_rng(self.seed)
        self.roadmap = RoadMap(rng)
        self.default_num_frames = self.config.default_num_frames
        self.T_ego_lidar = make_pose(np.eye(3), [1.0, 0.0, 1.9])
        self.camera_mounts = camera_mounts(list(self.config.cameras))
        self.camera_names = tuple(m.name for m in self.camera_mounts)
        self.T_ego_cams = [optical_pose_in_body(list(m.position), pitch_down=CAMERA_PITCH_DOWN,
                                                yaw=np.radians(m.yaw_deg)) for m in self.camera_mounts]
        self.Ks = [intrinsics(c.width, c.height, c.hfov_deg) for c in self.config.cameras]
        self.camera_delays_s = [m.trigger_delay_s if staggered_cameras else 0.0 for m in self.camera_mounts]
        self._spawn_agents(rng)
        self._buildings = self._spawn_buildings(rng)

    # -- scene content ------------------------------------------------------------------------
    def _add(self, cls: int, center_xy, yaw: float, velocity_xy, rng, rgb=None) -> None:
        size = np.array(CLASS_SIZE[cls]) * rng.uniform(0.9, 1.1)
        self._centers.append(np.array([center_xy[0], center_xy[1], size[2] / 2]))
        self._sizes.append(size)
        self._yaws.append(float(yaw))
        self._velocities.append(np.asarray(velocity_xy, float))
        self._classes.append(cls)
        self._rgbs.append(rgb if rgb is not None else (CAR_PALETTE[rng.integers(len(CAR_PALETTE))]
                                                       if cls == 0 else CLASS_RGB[cls]))

    def _free(self, xy, radius: float) -> bool:
        for center, size in zip(self._centers, self._sizes):
            if np.hypot(*(np.asarray(xy) - center[:2])) < radius + np.hypot(size[0], size[1]) / 2:
                return False
        return True

    def _spawn_agents(self, rng) -> None:
        cfg = self.config
        self._centers, self._sizes, self._yaws, self._velocities, self._classes, self._rgbs = [], [], [], [], [], []
        lanes = self.roadmap.lanes()
        lane_speed = [cfg.ego_speed if abs(l.origin[1] - EGO_LANE_Y) < 0.1 and l.direction[0] > 0
                      else rng.uniform(5.0, 11.0) for l in lanes]
        ego_xy = np.array([EGO_START_X, EGO_LANE_Y])
        for _ in range(cfg.num_moving_vehicles):
            for _attempt in range(100):
                k = int(rng.integers(len(lanes)))
                lane = lanes[k]
                along_x = lane.direction[0] != 0
                s = rng.uniform(-100.0, 180.0) if along_x else rng.uniform(-70.0, 70.0)
                xy = lane.origin + s * np.abs(lane.direction) if along_x else lane.origin + [0.0, s]
                if self._free(xy, 4.0) and np.hypot(*(xy - ego_xy)) > 12.0:
                    cls = 1 if rng.random() < 0.2 else 0
                    self._add(cls, xy, lane.yaw, lane.direction * lane_speed[k], rng)
                    break
        for _ in range(cfg.num_parked_cars):
            x0, x1, y0, y1 = self.roadmap.carparks[int(rng.integers(len(self.roadmap.carparks)))]
            for _attempt in range(50):
                xy = np.array([rng.uniform(x0 + 2, x1 - 2), rng.uniform(y0 + 3, y1 - 3)])
                if self._free(xy, 1.5):
                    self._add(0, xy, np.pi / 2 + rng.normal(0, 0.05), (0.0, 0.0), rng)
                    break
        walk = MAIN_HALF_WIDTH + WALKWAY_WIDTH / 2
        for _ in range(cfg.num_pedestrians):
            for _attempt in range(50):
                heading = rng.choice([0.0, np.pi])
                xy = np.array([rng.uniform(-100.0, 180.0), walk * rng.choice([-1.0, 1.0])])
                if rng.random() < 0.3:  # on a crossing, walking across the main road
                    cx = self.roadmap.cross_streets[int(rng.integers(2))]
                    xy = np.array([cx - CROSS_HALF_WIDTH - 2.0, rng.uniform(-MAIN_HALF_WIDTH, MAIN_HALF_WIDTH)])
                    heading = rng.choice([np.pi / 2, -np.pi / 2])
                if self._free(xy, 0.5):
                    speed = rng.uniform(1.0, 1.5)
                    self._add(2, xy, heading, speed * np.array([np.cos(heading), np.sin(heading)]), rng)
                    break
        for _ in range(cfg.num_cyclists):
            for _attempt in range(50):
                side = rng.choice([-1.0, 1.0])
                xy = np.array([rng.uniform(-100.0, 180.0), side * (MAIN_HALF_WIDTH - 0.8)])
                heading = 0.0 if side < 0 else np.pi
                if self._free(xy, 1.0) and np.hypot(*(xy - ego_xy)) > 10.0:
                    self._add(3, xy, heading, rng.uniform(4.0, 6.0) * np.array([np.cos(heading), 0.0]), rng)
                    break
        self._centers = np.array(self._centers).reshape(-1, 3)
        self._sizes = np.array(self._sizes).reshape(-1, 3)
        self._yaws = np.array(self._yaws)
        self._velocities = np.array(self._velocities).reshape(-1, 2)
        self._classes = np.array(self._classes, dtype=np.int32)
        self._rgbs = np.array(self._rgbs).reshape(-1, 3)

    def _spawn_buildings(self, rng) -> list[YawBox]:
        buildings = []
        for side in (1.0, -1.0):
            x = RoadMap.X_RANGE[0] + 10.0
            while x < RoadMap.X_RANGE[1] - 10.0:
                length = rng.uniform(10.0, 25.0)
                cx = x + length / 2
                near_cross = any(abs(cx - c) < CROSS_HALF_WIDTH + WALKWAY_WIDTH + length / 2 + 2
                                 for c in self.roadmap.cross_streets)
                near_park = any(p[0] - length / 2 - 2 < cx < p[1] + length / 2 + 2 and np.sign(p[2]) == side
                                for p in self.roadmap.carparks)
                if not near_cross and not near_park:
                    depth, height = rng.uniform(8.0, 15.0), rng.uniform(6.0, 15.0)
                    y = side * (MAIN_HALF_WIDTH + WALKWAY_WIDTH + 2.0 + depth / 2)
                    buildings.append(YawBox(np.array([cx, y, height / 2]), np.array([length, depth, height]), 0.0))
                x += length + rng.uniform(2.0, 8.0)
        return buildings

    # -- state at a time ----------------------------------------------------------------------
    def _time(self, index: int) -> float:
        return index * self.config.frame_period_s

    def ego_pose(self, index: int) -> np.ndarray:
        return self._ego_pose_at(self._time(index))

    def _ego_pose_at(self, time_s: float) -> np.ndarray:
        x = EGO_START_X + self.config.ego_speed * time_s
        return make_pose(np.eye(3), [x, EGO_LANE_Y, 0.0])

    def agent_centers(self, index: int) -> np.ndarray:
        return self._agent_centers_at(self._time(index))

    def _agent_centers_at(self, time_s: float) -> np.ndarray:
        centers = self._centers.copy()
        centers[:, :2] += self._velocities * time_s
        return centers

    def _set_scene(self, index: int) -> np.ndarray:
        return self._set_scene_at(self._time(index))

    def _set_scene_at(self, time_s: float) -> np.ndarray:
        centers = self._agent_centers_at(time_s)
        agents = [YawBox(c, s, y) for c, s, y in zip(centers, self._sizes, self._yaws)]
        self.scene = Scene(agents + self._buildings, ground=Plane(0.0))
        n = len(agents)
        self.primitive_instance = np.concatenate([np.arange(1, n + 1), np.zeros(len(self._buildings))]).astype(np.int32)
        self.primitive_label = np.concatenate([self._classes, -np.ones(len(self._buildings))]).astype(np.int32)
        return centers

    def albedo(self, hits: Hits, rows: np.ndarray) -> np.ndarray:
        prim = hits.primitive[rows]
        out = np.empty((len(rows), 3))
        ground = prim < 0
        layers = self.roadmap.sample(hits.point[rows][ground, :2])
        colour = np.tile(GROUND_RGB["grass"], (int(ground.sum()), 1))
        for name in ("drivable_area", "carpark_area", "walkway", "ped_crossing", "stop_line", "divider"):
            colour[layers[MAP_CLASSES.index(name)]] = GROUND_RGB[name]
        out[ground] = colour
        n_agents = len(self._classes)
        agent = (prim >= 0) & (prim < n_agents)
        out[agent] = self._rgbs[prim[agent]]
        out[prim >= n_agents] = BUILDING_RGB
        return out

    def map_layers(self, T_world_ego: np.ndarray) -> np.ndarray:
        """BEV map layers ``bool [6, H, W]`` in the ego frame (row = x bin, column = y bin)."""
        g = self.config.bev_grid
        rows, cols = g.shape
        x = g.x_min + (np.arange(rows) + 0.5) * g.resolution
        y = g.y_min + (np.arange(cols) + 0.5) * g.resolution
        xx, yy = np.meshgrid(x, y, indexing="ij")
        ego_xy = np.stack([xx.ravel(), yy.ravel()], axis=1)
        world_xy = ego_xy @ T_world_ego[:2, :2].T + T_world_ego[:2, 3]
        return self.roadmap.sample(world_xy).reshape(len(MAP_CLASSES), rows, cols)

    def boxes_in_ego(self, index: int, T_world_ego: np.ndarray) -> np.ndarray:
        """All agents as ``[N, 9]`` boxes (x y z l w h yaw vx vy) in the ego frame."""
        centers = self.agent_centers(index)
        T_ego_world = np.linalg.inv(T_world_ego)
        c_ego = centers @ T_ego_world[:3, :3].T + T_ego_world[:3, 3]
        ego_yaw = np.arctan2(T_world_ego[1, 0], T_world_ego[0, 0])
        yaw = (self._yaws - ego_yaw + np.pi) % (2 * np.pi) - np.pi
        v_ego = self._velocities @ T_ego_world[:2, :2].T
        return np.concatenate([c_ego, self._sizes, yaw[:, None], v_ego], axis=1)

    def frame(self, index: int) -> DrivingFrame:
        cfg = self.config
        time_s = self._time(index)
        stamp_ns = int(round(time_s * 1e9))
        T_world_ego = self.ego_pose(index)
        cameras = []
        for cam_cfg, K, T_ego_cam, delay_s in zip(cfg.cameras, self.Ks, self.T_ego_cams, self.camera_delays_s):
            # A staggered camera sees the ego and the agents where they are at its own exposure.
            self._set_scene_at(time_s + delay_s)
            frame = self.render_camera(self._ego_pose_at(time_s + delay_s) @ T_ego_cam, K, cam_cfg.width,
                                       cam_cfg.height, stamp_ns + int(round(delay_s * 1e9)))
            frame.T_ego_cam = T_ego_cam
            cameras.append(frame)
        self._set_scene(index)
        lidar = self.scan_lidar(T_world_ego @ self.T_ego_lidar, cfg.lidar, stamp_ns,
                                rng=np.random.default_rng([self.seed, index]))
        lidar.T_ego_lidar = self.T_ego_lidar
        boxes = self.boxes_in_ego(index, T_world_ego)
        g = cfg.bev_grid
        in_range = (boxes[:, 0] >= g.x_min) & (boxes[:, 0] < g.x_max) & (boxes[:, 1] >= g.y_min) & (boxes[:, 1] < g.y_max)
        ids = np.flatnonzero(in_range) + 1
        counts = np.bincount(lidar.instance, minlength=len(self._classes) + 1)
        return DrivingFrame(
            index=index, stamp_ns=stamp_ns, T_world_ego=T_world_ego, cameras=cameras, lidar=lidar,
            boxes=boxes[in_range].astype(np.float32), box_classes=self._classes[in_range],
            box_instance_ids=ids.astype(np.int32), box_num_points=counts[ids].astype(np.int32),
            map_layers=self.map_layers(T_world_ego), bev_grid=g)
