"""CameraInfo <-> PinholeCamera, validation, and undistortion against OpenCV's forward model."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from ocgs_ros.mapping.errors import FrameRejected
from ocgs_ros.ros import conversions

K = np.array([[500.0, 0.0, 320.0], [0.0, 480.0, 240.0], [0.0, 0.0, 1.0]])


def test_make_and_read_back():
    msg = conversions.make_camera_info(K, 640, 480, "camera_optical_frame", 3_000_000_001)
    assert (msg.width, msg.height, msg.distortion_model) == (640, 480, "plumb_bob")
    assert len(msg.d) == 5 and not any(msg.d)
    np.testing.assert_array_equal(np.reshape(msg.r, (3, 3)), np.eye(3))
    cam = conversions.camera_info_to_model(msg)
    np.testing.assert_array_equal(cam.K, K)
    np.testing.assert_array_equal(cam.P, np.hstack([K, np.zeros((3, 1))]))
    assert (cam.fx, cam.fy, cam.cx, cam.cy) == (500.0, 480.0, 320.0, 240.0)
    assert cam.frame_id == "camera_optical_frame" and not cam.has_distortion
    assert conversions.stamp_to_ns(msg.header.stamp) == 3_000_000_001


def test_all_zero_projection_is_filled_from_k():
    msg = conversions.make_camera_info(K, 640, 480, "c", 0)
    msg.p = [0.0] * 12
    np.testing.assert_array_equal(conversions.camera_info_to_model(msg).P[:, :3], K)


@pytest.mark.parametrize("edit, message, reason", [
    (lambda m: m.k.__setitem__(0, 0.0), "focal lengths must be positive", "camera_info_k"),
    (lambda m: m.k.__setitem__(4, -3.0), "focal lengths must be positive", "camera_info_k"),
    (lambda m: setattr(m, "k", [0.0] * 9), "uncalibrated", "camera_info_k"),
    (lambda m: m.k.__setitem__(6, 2.0), "last row", "camera_info_k"),
    (lambda m: setattr(m, "width", 0), "size must be positive", "camera_info_size"),
    (lambda m: setattr(m, "height", 0), "size must be positive", "camera_info_size"),
    (lambda m: m.k.__setitem__(2, float("nan")), "NaN", "camera_info_k"),
    (lambda m: setattr(m, "d", [0.0, float("nan"), 0.0, 0.0, 0.0]), "distortion D has NaN", "camera_info_distortion"),
    (lambda m: setattr(m, "d", [0.1, 0.0, 0.0]), "3 coefficients", "camera_info_distortion"),
    (lambda m: setattr(m, "distortion_model", "fancy_lens"), "unknown distortion model", "camera_info_distortion"),
    (lambda m: (setattr(m, "distortion_model", "equidistant"), setattr(m, "d", [0.1] * 5)), "5 coefficients",
     "camera_info_distortion"),
    (lambda m: m.p.__setitem__(3, float("inf")), "projection P has NaN", "camera_info_projection"),
])
def test_invalid_camera_info_is_rejected_by_name(edit, message, reason):
    msg = conversions.make_camera_info(K, 640, 480, "c", 0, D=[0.1, 0.01, 0.0, 0.0, 0.0])
    edit(msg)
    with pytest.raises(FrameRejected, match=message) as info:
        conversions.camera_info_to_model(msg)
    assert info.value.reason == reason


def test_zero_distortion_is_accepted_whatever_the_model_string():
    msg = conversions.make_camera_info(K, 640, 480, "c", 0)
    msg.distortion_model, msg.d = "", []
    assert not conversions.camera_info_to_model(msg).has_distortion
    msg.distortion_model, msg.d = "some_driver_model", [0.0] * 7
    assert not conversions.camera_info_to_model(msg).has_distortion


def test_make_camera_info_validates_too():
    with pytest.raises(ValueError, match="9 entries"):
        conversions.make_camera_info(np.eye(2), 640, 480, "c", 0)
    with pytest.raises(ValueError, match="size must be positive"):
        conversions.make_camera_info(K, 640, 0, "c", 0)


@pytest.mark.parametrize("model, D", [
    ("plumb_bob", [-0.25, 0.08, 0.001, -0.0005, 0.0]),
    ("rational_polynomial", [-0.2, 0.05, 0.0005, 0.0002, 0.0, 0.01, 0.0, 0.0]),
    ("equidistant", [0.05, -0.01, 0.002, -0.0003]),
])
def test_undistort_points_inverts_opencv_projection(model, D):
    msg = conversions.make_camera_info(K, 640, 480, "c", 0, D=D, distortion_model=model)
    cam = conversions.camera_info_to_model(msg)
    assert cam.has_distortion
    rng = np.random.default_rng(0)
    xyz = np.column_stack([rng.uniform(-0.4, 0.4, 50), rng.uniform(-0.3, 0.3, 50), np.ones(50)])
    ideal = (K @ (xyz / xyz[:, 2:]).T).T[:, :2]
    if model == "equidistant":
        distorted, _ = cv2.fisheye.projectPoints(xyz.reshape(-1, 1, 3), np.zeros(3), np.zeros(3), K, np.array(D))
    else:
        distorted, _ = cv2.projectPoints(xyz, np.zeros(3), np.zeros(3), K, np.array(D))
    distorted = distorted.reshape(-1, 2)
    assert np.abs(distorted - ideal).max() > 1.0  # the distortion is real
    np.testing.assert_allclose(conversions.undistort_points(cam, distorted), ideal, atol=1e-2)


def test_undistort_without_distortion_is_identity_and_checks_shapes():
    cam = conversions.camera_info_to_model(conversions.make_camera_info(K, 640, 480, "c", 0))
    uv = np.array([[1.5, 2.5], [600.0, 10.0]])
    np.testing.assert_array_equal(conversions.undistort_points(cam, uv), uv)
    image = np.random.default_rng(1).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    np.testing.assert_array_equal(conversions.undistort_image(cam, image), image)
    with pytest.raises(ValueError, match="camera is"):
        conversions.undistort_image(cam, image[:10])
    with pytest.raises(ValueError, match=r"\[N, 2\]"):
        conversions.undistort_points(cam, np.zeros((3, 3)))


def test_undistort_image_straightens_a_distorted_grid_point():
    D = np.array([-0.3, 0.1, 0.0, 0.0, 0.0])
    cam = conversions.camera_info_to_model(conversions.make_camera_info(K, 640, 480, "c", 0, D=D))
    # A single bright pixel where an ideal point lands after distortion must move back to the ideal point.
    ideal = np.array([520.0, 400.0])
    ray = np.array([(ideal[0] - 320.0) / 500.0, (ideal[1] - 240.0) / 480.0, 1.0])
    distorted = cv2.projectPoints(ray[None], np.zeros(3), np.zeros(3), K, D)[0].reshape(2)
    image = np.zeros((480, 640), np.float32)
    u, v = np.rint(distorted).astype(int)
    image[v - 1:v + 2, u - 1:u + 2] = 1.0
    out = conversions.undistort_image(cam, image)
    peak = np.array(np.unravel_index(np.argmax(out), out.shape))[::-1]
    assert np.abs(peak - ideal).max() <= 2.0
    with pytest.raises(ValueError, match="cannot undistort"):
        conversions.undistort_points(
            conversions.PinholeCamera(640, 480, K, np.ones(3), "weird", np.zeros((3, 4)), "c"), np.zeros((1, 2)))
