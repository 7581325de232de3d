"""Ground-truth consistency between the simulated LiDAR and camera: the check that extrinsics,
intrinsics, poses and labels all agree (used by tests, the benchmark and the demo)."""
from __future__ import annotations

import numpy as np


def project_to_pixels(points_cam: np.ndarray, K: np.ndarray, width: int, height: int):
    """Nearest pixel (u, v), z-depth and input index of camera-frame points in front of the camera
    that land inside the image."""
    z = points_cam[:, 2]
    front = np.flatnonzero(z > 1e-6)
    uvw = points_cam[front] @ K.T
    u = np.round(uvw[:, 0] / uvw[:, 2]).astype(np.int64)
    v = np.round(uvw[:, 1] / uvw[:, 2]).astype(np.int64)
    inside = (u >= 0) & (u < width) & (v >= 0) & (v < height)
    return u[inside], v[inside], z[front][inside], front[inside]


def lidar_camera_instance_agreement(points_lidar: np.ndarray, point_instance: np.ndarray,
                                    T_cam_lidar: np.ndarray, K: np.ndarray, depth: np.ndarray,
                                    instance_image: np.ndarray, depth_tolerance: float = 0.03) -> tuple[int, int]:
    """(agreeing, visible): LiDAR points that project into the image and whose z is within
    ``depth_tolerance`` of the rendered depth there are *visible*; of those, how many carry the
    instance id of the pixel they land on."""
    points_cam = points_lidar.astype(np.float64) @ T_cam_lidar[:3, :3].T + T_cam_lidar[:3, 3]
    height, width = depth.shape
    u, v, z, index = project_to_pixels(points_cam, K, width, height)
    seen = np.abs(depth[v, u] - z) < depth_tolerance
    agreeing = int((instance_image[v[seen], u[seen]] == point_instance[index[seen]]).sum())
    return agreeing, int(seen.sum())
