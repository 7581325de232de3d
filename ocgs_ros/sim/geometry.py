"""Small SE(3) and pinhole helpers for the simulator (float64, conventions in docs/conventions.md)."""
from __future__ import annotations

import numpy as np


def make_pose(R: np.ndarray, t) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = t
    return T


def rot_z(yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def rot_y(pitch: float) -> np.ndarray:
    c, s = np.cos(pitch), np.sin(pitch)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


#: Rotation from a REP-103 body frame (x fwd, y left, z up) to the camera optical frame axes:
#: columns are the optical x (right), y (down), z (forward) axes expressed in the body frame.
R_BODY_OPTICAL = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


def optical_pose_in_body(position, pitch_down: float = 0.0, yaw: float = 0.0) -> np.ndarray:
    """``T_body_optical`` for a camera at ``position`` looking along body +x turned by ``yaw``,
    tilted down by ``pitch_down`` radians."""
    return make_pose(rot_z(yaw) @ rot_y(pitch_down) @ R_BODY_OPTICAL, position)


def intrinsics(width: int, height: int, hfov_deg: float) -> np.ndarray:
    """Square-pixel pinhole K with the principal point at the image centre (pixel centres at integers)."""
    fx = (width / 2.0) / np.tan(np.radians(hfov_deg) / 2.0)
    return np.array([[fx, 0.0, (width - 1) / 2.0], [0.0, fx, (height - 1) / 2.0], [0.0, 0.0, 1.0]])


def camera_rays(K: np.ndarray, width: int, height: int, T_world_cam: np.ndarray):
    """World-frame ray origin and per-pixel directions whose camera-frame z is 1, so a hit distance
    along them is the z-depth. Directions are row-major ``[height * width, 3]``."""
    u, v = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    d_cam = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], axis=-1).reshape(-1, 3)
    return T_world_cam[:3, 3], d_cam @ T_world_cam[:3, :3].T


def lidar_directions(beams: int, azimuth_steps: int, fov_down_deg: float, fov_up_deg: float):
    """Unit directions in the LiDAR frame ``[beams * azimuth_steps, 3]`` (beam-major), with the ring
    index and azimuth (rad, counter-clockwise from +x) of each."""
    elevation = np.radians(np.linspace(fov_down_deg, fov_up_deg, beams))
    azimuth = np.arange(azimuth_steps) * (2 * np.pi / azimuth_steps)
    el, az = np.meshgrid(elevation, azimuth, indexing="ij")
    dirs = np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], axis=-1).reshape(-1, 3)
    ring = np.repeat(np.arange(beams, dtype=np.uint16), azimuth_steps)
    return dirs, ring, az.reshape(-1)
