"""Online mapper on a simulated tabletop scene: it grows from LiDAR, fits the images, and learns
identities from per-pixel codebook targets (here derived from ground truth, standing in for GOCL)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ocgs_ros.gaussians.map import GaussianMapConfig
from ocgs_ros.gaussians.mapper import MapperConfig, OnlineMapper, project_depth
from ocgs_ros.sim.tabletop import TabletopWorld
from ocgs_ros.sim.types import TabletopConfig

M = 24


def codebook_logits_from_kinds(kind: np.ndarray) -> np.ndarray:
    logits = np.full((M + 1, *kind.shape), -5.0, np.float32)
    logits[0][kind < 0] = 5.0
    ys, xs = np.nonzero(kind >= 0)
    logits[kind[ys, xs] + 1, ys, xs] = 5.0
    return logits


def test_mapper_fits_views_and_learns_identity():
    torch.manual_seed(0)  # identity head init and densify splits draw from torch's global RNG
    world = TabletopWorld(TabletopConfig.from_dict({"camera": {"width": 64, "height": 48},
                                                    "lidar": {"beams": 32, "azimuth_steps": 512}}), seed=3)
    mapper = OnlineMapper(GaussianMapConfig(num_codebook_entries=M, max_gaussians=6000),
                          MapperConfig(iterations_per_frame=30))
    stats = []
    for index in range(0, 60, 12):
        f = world.frame(index)
        T = f.T_world_base @ f.T_base_lidar
        points = f.lidar.points.astype(np.float64) @ T[:3, :3].T + T[:3, 3]
        stats.append(mapper.integrate(f.camera.rgb, f.camera.K, f.camera.T_world_cam, points,
                                      codebook_logits_from_kinds(f.camera.kind)))
    assert stats[0]["grown"] > 500 and mapper.map.num_gaussians <= 6000
    assert stats[-1]["grown"] < stats[0]["grown"]  # later frames are mostly explained already
    assert stats[-1]["photometric"] < 0.8 * stats[0]["photometric"]
    assert stats[-1]["identity"] < 0.5 * stats[0]["identity"]

    f = world.frame(25)  # between keyframes: not trained on
    view = torch.as_tensor(np.linalg.inv(f.camera.T_world_cam), dtype=torch.float32)
    with torch.no_grad():
        rgb, _, logits, alpha = mapper.render(view, torch.as_tensor(f.camera.K, dtype=torch.float32), 64, 48)
    mse = ((rgb - torch.as_tensor(f.camera.rgb / 255.0, dtype=torch.float32)) ** 2).mean().item()
    assert -10 * np.log10(mse) > 18.0
    predicted = logits.argmax(-1).numpy() - 1
    on_objects = f.camera.kind >= 0
    assert (predicted[on_objects] == f.camera.kind[on_objects]).mean() > 0.5
    assert (predicted[~on_objects] == -1).mean() > 0.9


def test_bad_frames_are_rejected_and_depth_projection():
    mapper = OnlineMapper(GaussianMapConfig(num_codebook_entries=4), MapperConfig(iterations_per_frame=1))
    K = np.array([[50.0, 0, 15.5], [0, 50.0, 11.5], [0, 0, 1]])
    with pytest.raises(ValueError, match="uint8"):
        mapper.integrate(np.zeros((24, 32, 3), np.float32), K, np.eye(4), np.zeros((1, 3)))
    with pytest.raises(ValueError, match="NaN"):
        mapper.integrate(np.zeros((24, 32, 3), np.uint8), K, np.eye(4), np.full((1, 3), np.nan))
    with pytest.raises(ValueError, match="pixel_codebook_logits"):  # M+1 = 5 channels expected
        mapper.integrate(np.zeros((24, 32, 3), np.uint8), K, np.eye(4), np.zeros((1, 3)), np.zeros((4, 24, 32)))
    with pytest.raises(ValueError, match="identity_targets"):
        MapperConfig(identity_targets="fuzzy")
    depth, u, v, inside = project_depth(np.array([[0.0, 0.0, 2.0], [0.0, 0.0, 1.0], [5.0, 0.0, -1.0]]),
                                        np.eye(4), K, 32, 24)
    assert inside.tolist() == [True, True, False]
    assert depth[12, 16] == 1.0 and (depth > 0).sum() == 1  # the nearer return wins the pixel
