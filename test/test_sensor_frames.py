"""Sensor messages -> core inputs: depth in metres at the processing resolution, and every malformed
image, CameraInfo, cloud and TF problem rejected with its own reason."""
from __future__ import annotations

import copy

import numpy as np
import pytest

from ocgs_ros.ros import conversions
from ocgs_ros.ros.sensor_frames import (CameraFrame, FrameError, camera_from_messages, cloud_points,
                                        depth_from_message, lookup)


def _messages(depth_m: np.ndarray, encoding: str):
    image = conversions.rgb_to_image_msg(np.zeros((*depth_m.shape, 3), np.uint8), "cam", conversions.ns_to_stamp(0))
    return image, conversions.metres_to_depth_msg(depth_m, "cam", conversions.ns_to_stamp(0), encoding=encoding)


@pytest.mark.parametrize("encoding", ["16UC1", "32FC1"])
def test_depth_is_read_in_metres_and_resized_without_mixing_depths(encoding):
    depth = np.full((24, 32), 0.8, np.float32)
    depth[:, 16:] = 2.5  # a depth edge
    depth[0, 0] = 0.0  # no return
    image, msg = _messages(depth, encoding)
    same = depth_from_message(msg, image, CameraFrame(np.zeros((24, 32, 3), np.uint8), np.eye(3), "cam"))
    assert same.dtype == np.float32 and np.allclose(same, depth, atol=1e-3)  # mm rounding for 16UC1
    half = depth_from_message(msg, image, CameraFrame(np.zeros((12, 16, 3), np.uint8), np.eye(3), "cam"))
    assert half.shape == (12, 16)
    # nearest neighbour: every value is one the sensor measured, none half-way across the edge
    assert all(np.isclose(value, [0.0, 0.8, 2.5], atol=1e-3).any() for value in np.unique(half))


def test_unregistered_or_unreadable_depth_is_a_frame_error():
    depth = np.ones((24, 32), np.float32)
    image, msg = _messages(depth, "32FC1")
    camera = CameraFrame(np.zeros((24, 32, 3), np.uint8), np.eye(3), "cam")
    msg.header.frame_id = "other_camera"
    with pytest.raises(FrameError, match="registered") as info:
        depth_from_message(msg, image, camera)
    assert info.value.reason == "depth_frame"
    _, small = _messages(depth[::2, ::2], "32FC1")
    with pytest.raises(FrameError, match="16x12") as info:
        depth_from_message(small, image, camera)
    assert info.value.reason == "depth_size_mismatch"
    _, truncated = _messages(depth, "32FC1")
    truncated.data = bytes(truncated.data)[:100]
    with pytest.raises(FrameError, match="100 bytes") as info:
        depth_from_message(truncated, image, camera)
    assert info.value.reason == "depth_data_length"


def _cloud(points: np.ndarray, **extra):
    return conversions.xyz_to_pointcloud2(points, "lidar", conversions.ns_to_stamp(0), **extra)


@pytest.mark.parametrize("make, reason", [
    (lambda: _cloud(np.zeros((0, 3), np.float32)), "pointcloud_empty"),
    (lambda: _cloud(np.full((5, 3), np.nan, np.float32)), "pointcloud_no_finite_points"),
    (lambda: _cloud(np.array([[np.inf, 0, 0], [0, -np.inf, 0]], np.float32)), "pointcloud_no_finite_points"),
    (lambda: conversions.array_to_pointcloud2(np.zeros(3, dtype=[("x", "<f4"), ("y", "<f4")]), "l", 0),
     "pointcloud_fields"),
    (lambda: conversions.array_to_pointcloud2(np.zeros(3, dtype=[("x", "<i4"), ("y", "<i4"), ("z", "<i4")]), "l", 0),
     "pointcloud_datatype"),
    (lambda: conversions.array_to_pointcloud2(np.zeros(3, dtype=[("x", "<f4", (2,)), ("y", "<f4"), ("z", "<f4")]),
                                              "l", 0), "pointcloud_fields"),
    (lambda: _cloud(np.zeros((3, 3), np.float32), intensity=np.zeros((3, 2), np.float32)), "pointcloud_fields"),
])
def test_clouds_without_usable_points_are_rejected_by_name(make, reason):
    with pytest.raises(FrameError) as info:
        cloud_points(make(), with_intensity=True)
    assert info.value.reason == reason


def test_non_finite_points_are_dropped_and_the_rest_kept():
    points = np.array([[1, 2, 3], [np.nan, 0, 0], [4, 5, 6]], np.float32)
    kept = cloud_points(_cloud(points, intensity=np.array([7, 8, np.nan], np.float32)), with_intensity=True)
    np.testing.assert_array_equal(kept, [[1, 2, 3, 7]])


@pytest.mark.parametrize("edit, reason", [
    (lambda image, info: (image, None), "camera_info_missing"),
    (lambda image, info: (image, _with(info, width=info.width * 2)), "camera_info_size_mismatch"),
    (lambda image, info: (_with(image, width=0, step=0, data=b""), info), "image_empty"),
    (lambda image, info: (image, _with(info, k=[0.0] * 9)), "camera_info_k"),
    (lambda image, info: (_with(image, encoding="32FC1"), info), "image_encoding"),
])
def test_camera_frames_are_rejected_by_name_before_any_resize(edit, reason):
    K = np.array([[20.0, 0, 16], [0, 20.0, 12], [0, 0, 1]])
    image = conversions.rgb_to_image_msg(np.zeros((24, 32, 3), np.uint8), "cam", conversions.ns_to_stamp(0))
    info = conversions.make_camera_info(K, 32, 24, "cam", conversions.ns_to_stamp(0))
    with pytest.raises(FrameError) as caught:
        camera_from_messages(*edit(image, info), width=16, height=12)
    assert caught.value.reason == reason


def _with(msg, **fields):
    out = copy.deepcopy(msg)
    for key, value in fields.items():
        setattr(out, key, value)
    return out


def test_tf_problems_are_rejected_by_kind():
    from ocgs_ros.ros.tf import make_tf_buffer

    buffer = make_tf_buffer(cache_time_s=10.0)
    stamp = conversions.ns_to_stamp(5 * 10 ** 9)
    buffer.set_transform(conversions.matrix_to_transform_stamped(np.eye(4), "map", "base", stamp), "test")
    buffer.set_transform_static(conversions.matrix_to_transform_stamped(np.eye(4), "island", "rock", stamp), "test")
    np.testing.assert_array_equal(lookup(buffer, "map", "base", 5 * 10 ** 9, 0.0), np.eye(4))
    cases = [("map", "", 5, "tf_frame_id"), ("map", "nowhere", 5, "tf_unknown_frame"),
             ("map", "rock", 5, "tf_not_connected"), ("map", "base", 50, "tf_extrapolation")]
    for target, source, seconds, reason in cases:
        with pytest.raises(FrameError) as info:
            lookup(buffer, target, source, seconds * 10 ** 9, 0.0)
        assert info.value.reason == reason, (source, info.value)
