"""Synthetic BEV batches with a valid camera rig, for shape tests and timing (not for training).

Real training data comes from ``ocgs_ros.sim``; this module only produces correctly-shaped,
geometrically consistent inputs (cameras looking outwards around the ego, points in range).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..sim.driving import CAMERA_PITCH_DOWN, SURROUND_RIG
from ..sim.geometry import intrinsics as pinhole_intrinsics
from ..sim.geometry import optical_pose_in_body
from .config import BevConfig
from .model import BevInputs

# Optical frame (x right, y down, z forward) -> ego (x forward, y left, z up) for a camera
# looking along ego +x.
R_EGO_CAM_FORWARD = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


def camera_rig(cfg: BevConfig, mount_height: float = 1.6, fov_deg: float = 70.0) -> tuple[np.ndarray, np.ndarray]:
    """``cfg.num_cameras`` cameras evenly spread in yaw (first one looking forward); six cameras are
    the simulator's surround rig (:func:`surround_rig`).

    Returns ``K [N, 3, 3]`` and ``T_ego_cam [N, 4, 4]`` (float64).
    """
    if cfg.num_cameras == len(SURROUND_RIG):
        return surround_rig(cfg)
    focal = cfg.image_width / 2 / math.tan(math.radians(fov_deg) / 2)
    k = np.array([[focal, 0.0, (cfg.image_width - 1) / 2], [0.0, focal, (cfg.image_height - 1) / 2], [0.0, 0.0, 1.0]])
    intrinsics, poses = [], []
    for i in range(cfg.num_cameras):
        yaw = 2 * math.pi * i / cfg.num_cameras
        rot_z = np.array([[math.cos(yaw), -math.sin(yaw), 0.0], [math.sin(yaw), math.cos(yaw), 0.0], [0.0, 0.0, 1.0]])
        pose = np.eye(4)
        pose[:3, :3] = rot_z @ R_EGO_CAM_FORWARD
        pose[:3, 3] = rot_z @ np.array([1.0, 0.0, mount_height])
        intrinsics.append(k)
        poses.append(pose)
    return np.stack(intrinsics), np.stack(poses)


def random_inputs(cfg: BevConfig, batch: int = 1, points_per_sample: int | list[int] = 2000, seed: int = 0) -> BevInputs:
    """Random images and LiDAR points (inside the grid) on the ``camera_rig``."""
    gen = torch.Generator().manual_seed(seed)
    counts = [points_per_sample] * batch if isinstance(points_per_sample, int) else list(points_per_sample)
    if len(counts) != batch:
        raise ValueError(f"points_per_sample has {len(counts)} entries for a batch of {batch}")
    k, pose = camera_rig(cfg)
    grid = cfg.det_grid
    points = []
    for n in counts:
        p = torch.rand(n, 4, generator=gen)
        p[:, 0] = grid.x_min + p[:, 0] * (grid.x_max - grid.x_min)
        p[:, 1] = grid.y_min + p[:, 1] * (grid.y_max - grid.y_min)
        p[:, 2] = cfg.z_min + p[:, 2] * (cfg.z_max - cfg.z_min)
        points.append(p)
    return BevInputs(
        images=torch.rand(batch, cfg.num_cameras, 3, cfg.image_height, cfg.image_width, generator=gen),
        intrinsics=torch.as_tensor(k, dtype=torch.float32).expand(batch, -1, -1, -1).clone(),
        cam_to_ego=torch.as_tensor(pose, dtype=torch.float32).expand(batch, -1, -1, -1).clone(),
        points=points,
    )


def surround_rig(cfg: BevConfig) -> tuple[np.ndarray, np.ndarray]:
    """The simulator's six-camera surround rig (``sim.driving.SURROUND_RIG``: its mounts and each
    camera's own field of view, so the back camera's ``K`` differs) at the model's input size."""
    ks = [pinhole_intrinsics(cfg.image_width, cfg.image_height, m.hfov_deg) for m in SURROUND_RIG]
    poses = [optical_pose_in_body(list(m.position), pitch_down=CAMERA_PITCH_DOWN, yaw=math.radians(m.yaw_deg))
             for m in SURROUND_RIG]
    return np.stack(ks), np.stack(poses)
