"""Tabletop scenes: 3–12 catalogue objects on a table, seen by a camera + LiDAR rig orbiting it."""
from __future__ import annotations

import numpy as np

from .catalogue import ObjectKind, default_catalogue, texture_factor
from .geometry import intrinsics, make_pose, optical_pose_in_body, rot_z
from .raycast import Cone, Cylinder, Hits, Plane, Scene, Sphere, YawBox
from .sensors import RayCastWorld
from .types import ObjectInfo, TabletopConfig, TabletopFrame

TABLE_HALF_SIZE = 0.6  # metres; beyond it the floor (both are background)
TABLE_RGB = np.array([0.62, 0.50, 0.38])
FLOOR_RGB = np.array([0.45, 0.45, 0.47])


def _shape_geometry(shape: str, diameter: float):
    """Box extents (l, w, h) and footprint radius of a shape of characteristic ``diameter``."""
    if shape == "sphere":
        return np.array([diameter] * 3), diameter / 2
    if shape == "box":
        size = np.array([diameter, 0.8 * diameter, 0.9 * diameter])
        return size, float(np.hypot(size[0], size[1]) / 2)
    if shape == "cylinder":
        return np.array([0.8 * diameter, 0.8 * diameter, 1.2 * diameter]), 0.4 * diameter
    if shape == "cone":
        return np.array([diameter, diameter, 1.3 * diameter]), diameter / 2
    raise ValueError(f"unknown shape {shape!r}")


def _primitive(shape: str, xy: np.ndarray, size: np.ndarray, yaw: float):
    base = np.array([xy[0], xy[1], 0.0])
    if shape == "sphere":
        return Sphere(base + [0, 0, size[2] / 2], size[0] / 2)
    if shape == "box":
        return YawBox(base + [0, 0, size[2] / 2], size, yaw)
    if shape == "cylinder":
        return Cylinder(base, size[0] / 2, size[2])
    return Cone(base, size[0] / 2, size[2])


class TabletopWorld(RayCastWorld):
    """A seeded tabletop scene. ``frame(i)`` is deterministic for (seed, i), in any call order."""

    def __init__(self, config: TabletopConfig | None = None, seed: int = 0,
                 catalogue: list[ObjectKind] | None = None):
        """``catalogue``: the object kinds to draw from (kind ids = list positions); None = the
        default catalogue GOCL is trained on (``sim/novel.py`` extends it with kinds it never saw)."""
        self.config = config or TabletopConfig()
        self.seed = int(seed)
        self.catalogue: list[ObjectKind] = default_catalogue() if catalogue is None else list(catalogue)
        allowed = list(self.config.kinds) or [k.kind_id for k in self.catalogue]
        unknown = [k for k in allowed if not 0 <= k < len(self.catalogue)]
        if unknown:
            raise ValueError(f"unknown kind ids {unknown}; the catalogue has {len(self.catalogue)} kinds")
        rng = np.random.default_rng(self.seed)
        self.objects: list[ObjectInfo] = []
        self._diameters: list[float] = []
        primitives = []
        footprints: list[tuple[np.ndarray, float]] = []
        for _ in range(int(rng.integers(self.config.min_objects, self.config.max_objects + 1))):
            kind = self.catalogue[int(rng.choice(allowed))]
            diameter = kind.diameter * rng.uniform(0.9, 1.1)
            size, footprint = _shape_geometry(kind.shape, diameter)
            for _attempt in range(200):
                radius = self.config.placement_radius * np.sqrt(rng.random())
                angle = rng.uniform(0, 2 * np.pi)
                xy = radius * np.array([np.cos(angle), np.sin(angle)])
                if all(np.linalg.norm(xy - other) > footprint + r + 0.02 for other, r in footprints):
                    break
            else:
                continue  # the table is full: fewer objects rather than overlapping ones
            yaw = float(rng.uniform(-np.pi, np.pi)) if kind.shape == "box" else 0.0
            footprints.append((xy, footprint))
            primitives.append(_primitive(kind.shape, xy, size, yaw))
            self._diameters.append(diameter)
            self.objects.append(ObjectInfo(
                instance_id=len(self.objects) + 1, kind_id=kind.kind_id, kind_name=kind.name, shape=kind.shape,
                colour=kind.colour, texture=kind.texture, size_class=kind.size_class,
                center=np.array([xy[0], xy[1], size[2] / 2]), size=size, yaw=yaw))
        self.scene = Scene(primitives, ground=Plane(0.0))
        self.primitive_instance = np.array([o.instance_id for o in self.objects], dtype=np.int32)
        self.primitive_label = np.array([o.kind_id for o in self.objects], dtype=np.int32)
        self._albedo = np.array([o.colour for o in self.objects]).reshape(-1, 3)
        self._phase = float(rng.uniform(0, 2 * np.pi))

        cfg = self.config
        pitch = float(np.arctan2(cfg.camera_height, cfg.orbit_radius))
        self.T_base_camera = optical_pose_in_body([0.0, 0.0, cfg.camera_height], pitch_down=pitch)
        self.T_base_lidar = make_pose(np.eye(3), [0.0, 0.0, cfg.lidar_height])
        self.K = intrinsics(cfg.camera.width, cfg.camera.height, cfg.camera.hfov_deg)
        self.default_num_frames = cfg.frames_per_orbit

    # -- surfaces -----------------------------------------------------------------------------
    def albedo(self, hits: Hits, rows: np.ndarray) -> np.ndarray:
        out = np.empty((len(rows), 3))
        prim = hits.primitive[rows]
        point = hits.point[rows]
        ground = prim < 0
        on_table = (np.abs(point[:, 0]) < TABLE_HALF_SIZE) & (np.abs(point[:, 1]) < TABLE_HALF_SIZE)
        checker = (np.floor(point[:, 0] / 0.1).astype(int) + np.floor(point[:, 1] / 0.1).astype(int)) % 2
        base = np.where(on_table[:, None], TABLE_RGB, FLOOR_RGB) * np.where(checker == 0, 1.0, 0.9)[:, None]
        out[ground] = base[ground]
        for index in np.unique(prim[~ground]):
            sel = prim == index
            obj = self.objects[index]
            local = point[sel] - [obj.center[0], obj.center[1], 0.0]
            local = local @ rot_z(obj.yaw)  # texture fixed to the object, whatever its heading
            out[sel] = self._albedo[index] * texture_factor(obj.texture, local, self._diameters[index])[:, None]
        return out

    # -- rig and frames -----------------------------------------------------------------------
    def pose(self, index: int) -> np.ndarray:
        """``T_world_base`` of frame ``index``: an orbit around the table with radius/height wobble."""
        cfg = self.config
        theta = self._phase + 2 * np.pi * index / cfg.frames_per_orbit
        radius = cfg.orbit_radius + cfg.orbit_radius_variation * np.sin(3 * theta)
        height = cfg.camera_height_variation * np.sin(2 * theta)
        return make_pose(rot_z(theta + np.pi), [radius * np.cos(theta), radius * np.sin(theta), height])

    def frame(self, index: int) -> TabletopFrame:
        cfg = self.config
        stamp_ns = int(round(index * cfg.frame_period_s * 1e9))
        T_world_base = self.pose(index)
        camera = self.render_camera(T_world_base @ self.T_base_camera, self.K, cfg.camera.width,
                                    cfg.camera.height, stamp_ns)
        lidar = self.scan_lidar(T_world_base @ self.T_base_lidar, cfg.lidar, stamp_ns,
                                rng=np.random.default_rng([self.seed, index]))
        return TabletopFrame(index, stamp_ns, T_world_base, self.T_base_camera, self.T_base_lidar, camera, lidar)
