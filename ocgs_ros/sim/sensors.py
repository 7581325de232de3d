"""Pinhole camera and spinning LiDAR models over a ray-cast scene, shared by both worlds."""
from __future__ import annotations

import numpy as np

from .geometry import camera_rays, lidar_directions
from .raycast import Hits, Scene
from .types import CameraFrame, LidarConfig, LidarSweep

#: Direction towards the (directional) light, world frame.
LIGHT_DIRECTION = np.array([0.45, 0.3, 1.0]) / np.linalg.norm([0.45, 0.3, 1.0])
AMBIENT = 0.35


class RayCastWorld:
    """What the sensors need from a world: a scene, per-primitive labels and surface colours.

    Subclasses fill ``scene``, ``primitive_instance`` (0 = background clutter) and
    ``primitive_label`` (kind id / box class, -1 = background), and implement ``albedo``.
    """

    scene: Scene
    primitive_instance: np.ndarray
    primitive_label: np.ndarray
    sky_rgb = np.array([0.80, 0.85, 0.92])

    def albedo(self, hits: Hits, rows: np.ndarray) -> np.ndarray:
        """Base colour ``[len(rows), 3]`` in [0, 1] of the surfaces hit by ``rows``."""
        raise NotImplementedError

    def _labels(self, primitive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        on_object = primitive >= 0
        instance = np.zeros(len(primitive), dtype=np.int32)
        label = np.full(len(primitive), -1, dtype=np.int32)
        instance[on_object] = self.primitive_instance[primitive[on_object]]
        label[on_object] = self.primitive_label[primitive[on_object]]
        return instance, label

    def render_camera(self, T_world_cam: np.ndarray, K: np.ndarray, width: int, height: int,
                      stamp_ns: int = 0) -> CameraFrame:
        origin, directions = camera_rays(K, width, height, T_world_cam)
        hits = self.scene.cast(origin[None], directions)
        hit = np.isfinite(hits.t)
        rows = np.flatnonzero(hit)
        rgb = np.empty((len(directions), 3))
        rgb[:] = self.sky_rgb
        lambert = np.clip(hits.normal[rows] @ LIGHT_DIRECTION, 0.0, 1.0)
        rgb[rows] = self.albedo(hits, rows) * (AMBIENT + (1 - AMBIENT) * lambert)[:, None]
        instance, label = self._labels(hits.primitive)
        depth = np.where(hit, hits.t, 0.0)
        shape = (height, width)
        return CameraFrame(
            rgb=(np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8).reshape(height, width, 3),
            depth=depth.astype(np.float32).reshape(shape), instance=instance.reshape(shape),
            kind=label.reshape(shape), K=np.asarray(K, float), T_world_cam=T_world_cam, stamp_ns=int(stamp_ns),
            width=int(width), height=int(height))

    def scan_lidar(self, T_world_lidar: np.ndarray, config: LidarConfig, stamp_ns: int = 0,
                   rng: np.random.Generator | None = None) -> LidarSweep:
        """One sweep. Motion during the sweep is not modelled (the rig is static for its duration);
        ``time`` still reports each return's azimuth-based firing time for consumers that use it."""
        rng = rng if rng is not None else np.random.default_rng(0)
        dirs_lidar, ring, azimuth = lidar_directions(config.beams, config.azimuth_steps,
                                                     config.fov_down_deg, config.fov_up_deg)
        hits = self.scene.cast(T_world_lidar[:3, 3][None], dirs_lidar @ T_world_lidar[:3, :3].T)
        rng_noise = rng.normal(0.0, config.range_noise_std, size=len(hits.t)) if config.range_noise_std > 0 else 0.0
        measured = hits.t + rng_noise
        keep = (np.isfinite(hits.t) & (measured >= config.min_range) & (measured <= config.max_range)
                & (rng.random(len(hits.t)) >= config.dropout))
        rows = np.flatnonzero(keep)
        # Intensity: surface brightness times the cosine of incidence, a common first-order model.
        incidence = np.abs((hits.normal[rows] * (dirs_lidar[rows] @ T_world_lidar[:3, :3].T)).sum(1))
        intensity = self.albedo(hits, rows).mean(1) * incidence
        instance, label = self._labels(hits.primitive[rows])
        return LidarSweep(
            points=(dirs_lidar[rows] * measured[rows, None]).astype(np.float32),
            intensity=intensity.astype(np.float32), ring=ring[rows],
            time=(azimuth[rows] / (2 * np.pi) * config.sweep_period_s).astype(np.float32),
            instance=instance, T_world_lidar=T_world_lidar, stamp_ns=int(stamp_ns), cls=label)
