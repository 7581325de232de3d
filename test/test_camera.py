"""Intrinsics follow an image resize under the pixel-centres-at-integers convention; depth images
back-project to the points they measured."""
from __future__ import annotations

import numpy as np
import pytest

from ocgs_ros.camera import resize_image, scale_intrinsics


def test_scaled_intrinsics_project_to_the_resized_pixel():
    K = np.array([[100.0, 0.0, 31.5], [0.0, 90.0, 23.5], [0.0, 0.0, 1.0]])
    point = np.array([0.3, -0.2, 2.0])
    u, v, _ = K @ point / point[2]
    sx, sy = 0.5, 0.25
    u2, v2, _ = scale_intrinsics(K, sx, sy) @ point / point[2]
    # pixel u covers [u - 0.5, u + 0.5]: its left edge scales with the image
    assert np.isclose(u2 + 0.5, (u + 0.5) * sx) and np.isclose(v2 + 0.5, (v + 0.5) * sy)
    batch = scale_intrinsics(np.stack([K, K]), sx, sy)
    assert batch.shape == (2, 3, 3) and np.allclose(batch[1], scale_intrinsics(K, sx, sy))


def test_resize_image_keeps_the_image_centre_at_the_principal_point():
    rgb = np.zeros((48, 64, 3), np.uint8)
    K = np.array([[50.0, 0.0, 31.5], [0.0, 50.0, 23.5], [0.0, 0.0, 1.0]])
    small, K_small = resize_image(rgb, K, 32, 24)
    assert small.shape == (24, 32, 3)
    assert np.allclose(K_small[:2, 2], [15.5, 11.5]) and np.allclose(np.diag(K_small)[:2], [25.0, 25.0])
    same, K_same = resize_image(rgb, K, 64, 48)
    assert same is rgb and np.array_equal(K_same, K)


def test_backproject_depth_inverts_the_projection():
    from ocgs_ros.camera import backproject_depth

    K = np.array([[40.0, 0.0, 15.5], [0.0, 42.0, 11.0], [0.0, 0.0, 1.0]])
    depth = np.full((24, 32), 2.0)
    depth[0, 0], depth[3, 5], depth[4, 6] = 0.0, np.nan, -1.0  # no return, REP 118 NaN, garbage
    depth[10, 20] = 0.5
    T_world_cam = np.eye(4)
    T_world_cam[:3, :3] = [[0, 0, 1], [-1, 0, 0], [0, -1, 0]]  # optical frame of a camera looking along +x
    T_world_cam[:3, 3] = [1.0, 2.0, 0.5]
    points, pixels = backproject_depth(depth, K, T_world_cam)
    assert len(points) == 24 * 32 - 3 and not np.isin([0, 3 * 32 + 5, 4 * 32 + 6], pixels).any()
    cam = (points - T_world_cam[:3, 3]) @ T_world_cam[:3, :3]  # back into the camera frame
    uvw = cam @ K.T
    v, u = np.divmod(pixels, 32)
    assert np.allclose(uvw[:, 0] / uvw[:, 2], u) and np.allclose(uvw[:, 1] / uvw[:, 2], v)
    assert np.allclose(cam[:, 2], depth.reshape(-1)[pixels])
    assert np.allclose(points[pixels == 10 * 32 + 20][0][0], 1.5)  # 0.5 m along +x from the camera
    with pytest.raises(ValueError, match="depth"):
        backproject_depth(np.zeros((2, 3, 1)), K, T_world_cam)
