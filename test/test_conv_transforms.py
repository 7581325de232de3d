"""Stamps and 4x4 <-> geometry_msgs conversions, quaternion validation, extrinsics from parameters."""
from __future__ import annotations

import math

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from ocgs_ros.ros import conversions


def Rx(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def Ry(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def Rz(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


@st.composite
def rigid_transforms(draw):
    seed = draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    T = np.eye(4)
    T[:3, :3] = Rotation.random(random_state=rng).as_matrix()
    T[:3, 3] = rng.uniform(-100, 100, 3)
    return T


@settings(max_examples=50, deadline=None)
@given(st.integers(0, (2**31 - 1) * 10**9 + 999_999_999))
def test_stamp_round_trip(ns):
    stamp = conversions.ns_to_stamp(ns)
    assert stamp.sec == ns // 10**9 and stamp.nanosec == ns % 10**9
    assert conversions.stamp_to_ns(stamp) == ns
    assert conversions.time_to_ns(stamp) == ns


def test_stamp_edge_cases():
    from rclpy.time import Time as RclpyTime

    assert conversions.stamp_to_ns(Time(sec=1, nanosec=500_000_001)) == 1_500_000_001
    assert conversions.time_to_ns(RclpyTime(seconds=2, nanoseconds=5)) == 2_000_000_005
    assert conversions.to_stamp(RclpyTime(nanoseconds=7)).nanosec == 7
    with pytest.raises(ValueError, match="negative"):
        conversions.ns_to_stamp(-1)
    with pytest.raises(ValueError, match="int32"):
        conversions.ns_to_stamp(2**31 * 10**9)
    with pytest.raises(TypeError, match="integer"):
        conversions.ns_to_stamp(1.5)
    with pytest.raises(TypeError, match="builtin_interfaces/Time"):
        conversions.stamp_to_ns("now")


@settings(max_examples=50, deadline=None)
@given(rigid_transforms())
def test_matrix_message_round_trips(T):
    for to_msg, from_msg in ((conversions.matrix_to_transform, conversions.transform_to_matrix),
                             (conversions.matrix_to_pose, conversions.pose_to_matrix)):
        np.testing.assert_allclose(from_msg(to_msg(T)), T, atol=1e-12)
    ts = conversions.matrix_to_transform_stamped(T, "base_link", "lidar_link", 12)
    assert (ts.header.frame_id, ts.child_frame_id, ts.header.stamp.nanosec) == ("base_link", "lidar_link", 12)
    np.testing.assert_allclose(conversions.transform_stamped_to_matrix(ts), T, atol=1e-12)
    ps = conversions.matrix_to_pose_stamped(T, "map", 5)
    assert ps.header.frame_id == "map"
    np.testing.assert_allclose(conversions.pose_stamped_to_matrix(ps), T, atol=1e-12)
    q = conversions.matrix_to_quaternion_xyzw(T[:3, :3])
    assert q[3] >= 0 and abs(np.linalg.norm(q) - 1) < 1e-12


def test_quaternion_convention_is_xyzw():
    q = [0.0, 0.0, math.sin(math.pi / 4), math.cos(math.pi / 4)]  # +90 deg about z
    R = conversions.quaternion_xyzw_to_matrix(q)
    np.testing.assert_allclose(R @ [1, 0, 0], [0, 1, 0], atol=1e-12)
    np.testing.assert_allclose(conversions.xyzw_to_wxyz(q), [q[3], 0, 0, q[2]])
    np.testing.assert_allclose(conversions.wxyz_to_xyzw(conversions.xyzw_to_wxyz(q)), q)
    msg = conversions.matrix_to_transform(conversions.make_transform(R, [1, 2, 3]))
    assert (msg.rotation.z, msg.rotation.w) == pytest.approx((q[2], q[3]))
    assert (msg.translation.x, msg.translation.y, msg.translation.z) == (1.0, 2.0, 3.0)


def test_quaternion_validation():
    np.testing.assert_allclose(conversions.normalize_quaternion([0, 0, 0, 1.001]), [0, 0, 0, 1])
    with pytest.raises(ValueError, match="zero quaternion"):
        conversions.quaternion_xyzw_to_matrix([0, 0, 0, 0])
    with pytest.raises(ValueError, match="NaN"):
        conversions.quaternion_xyzw_to_matrix([0, 0, float("nan"), 1])
    with pytest.raises(ValueError, match="not a unit quaternion"):
        conversions.quaternion_xyzw_to_matrix([0, 0, 0, 2])
    msg = conversions.matrix_to_transform(np.eye(4))
    msg.rotation.w = 0.0
    with pytest.raises(ValueError, match="zero quaternion"):
        conversions.transform_to_matrix(msg)


def test_matrix_validation():
    with pytest.raises(ValueError, match=r"\[4, 4\]"):
        conversions.matrix_to_transform(np.eye(3))
    with pytest.raises(ValueError, match="not a proper rotation"):
        conversions.matrix_to_transform(np.diag([2.0, 1, 1, 1]))
    with pytest.raises(ValueError, match="not a proper rotation"):
        conversions.matrix_to_pose(np.diag([-1.0, 1, 1, 1]))  # reflection
    with pytest.raises(ValueError, match="last row"):
        bad = np.eye(4)
        bad[3, 0] = 1
        conversions.matrix_to_transform(bad)
    with pytest.raises(ValueError, match="NaN"):
        conversions.matrix_to_transform(np.full((4, 4), np.nan))


def test_rpy_follows_ros_fixed_axis_convention():
    roll, pitch, yaw = 0.3, -0.7, 2.1
    T = conversions.transform_from_xyz_rpy([1, 2, 3], [roll, pitch, yaw])
    np.testing.assert_allclose(T[:3, :3], Rz(yaw) @ Ry(pitch) @ Rx(roll), atol=1e-12)
    np.testing.assert_array_equal(T[:3, 3], [1, 2, 3])


def test_transform_from_param_list_forms():
    q = Rotation.from_euler("z", 0.5).as_quat()
    T7 = conversions.transform_from_param_list([1, 2, 3, *q])
    T6 = conversions.transform_from_param_list([1, 2, 3, 0, 0, 0.5])
    np.testing.assert_allclose(T7, T6, atol=1e-12)
    np.testing.assert_allclose(T6[:3, :3], Rz(0.5), atol=1e-12)
    np.testing.assert_array_equal(conversions.transform_from_param_list(T6.reshape(-1)), T6)
    with pytest.raises(ValueError, match="expected 7"):
        conversions.transform_from_param_list([1, 2, 3])
    with pytest.raises(ValueError, match="zero quaternion"):
        conversions.transform_from_param_list([0, 0, 0, 0, 0, 0, 0])
    with pytest.raises(ValueError, match="NaN"):
        conversions.transform_from_param_list([0, float("nan"), 0, 0, 0, 0])


def test_invert_transform():
    T = conversions.transform_from_xyz_rpy([1, -2, 3], [0.1, 0.2, 0.3])
    np.testing.assert_allclose(conversions.invert_transform(T) @ T, np.eye(4), atol=1e-12)
