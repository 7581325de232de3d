"""Intrinsics follow an image resize under the pixel-centres-at-integers convention."""
from __future__ import annotations

import numpy as np

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
