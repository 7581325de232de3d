"""Depth images registered to the colour camera are read in metres at the processing resolution."""
from __future__ import annotations

import numpy as np
import pytest

from ocgs_ros.ros import conversions
from ocgs_ros.ros.sensor_frames import CameraFrame, FrameError, depth_from_message


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
    assert info.value.reason == "depth"
    _, small = _messages(depth[::2, ::2], "32FC1")
    with pytest.raises(FrameError, match="16x12"):
        depth_from_message(small, image, camera)
    _, truncated = _messages(depth, "32FC1")
    truncated.data = bytes(truncated.data)[:100]
    with pytest.raises(FrameError, match="cannot be read"):
        depth_from_message(truncated, image, camera)
