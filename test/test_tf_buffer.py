"""TfBuffer: chains vs direct matrix products, interpolation, time 0, extrapolation, eviction, errors, threads."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation, Slerp

from ocgs_ros.ros import conversions
from ocgs_ros.ros.tf_buffer import (
    ConnectivityException,
    ExtrapolationException,
    InvalidArgumentException,
    LookupException,
    TfBuffer,
    TransformException,
    make_tf_buffer,
)

S = 1_000_000_000


def random_T(rng) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = Rotation.random(random_state=rng).as_matrix()
    T[:3, 3] = rng.uniform(-5, 5, 3)
    return T


def tf(T, parent, child, stamp_ns):
    return conversions.matrix_to_transform_stamped(T, parent, child, stamp_ns)


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 8), st.integers(0, 2**31))
def test_random_static_tree_lookups_equal_direct_products(num_frames, seed):
    rng = np.random.default_rng(seed)
    buffer = TfBuffer()
    T_root = {"f0": np.eye(4)}  # T_root_frame, computed independently of the buffer
    for k in range(1, num_frames):
        parent = f"f{rng.integers(0, k)}"
        T = random_T(rng)
        buffer.set_transform_static(tf(T, parent, f"f{k}", 0), "test")
        T_root[f"f{k}"] = T_root[parent] @ T
    for _ in range(5):
        a, b = (f"f{i}" for i in rng.integers(0, num_frames, 2))
        expected = np.linalg.inv(T_root[a]) @ T_root[b]
        np.testing.assert_allclose(buffer.lookup_matrix(a, b, 0), expected, atol=1e-9)
        msg = buffer.lookup_transform(a, b, Time(sec=123))  # statics hold at any time
        assert (msg.header.frame_id, msg.child_frame_id) == (a, b)
        np.testing.assert_allclose(conversions.transform_stamped_to_matrix(msg), expected, atol=1e-9)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31), st.floats(0.0, 1.0))
def test_interpolation_is_lerp_plus_slerp(seed, alpha):
    rng = np.random.default_rng(seed)
    T0, T1 = random_T(rng), random_T(rng)
    buffer = TfBuffer()
    buffer.set_transform(tf(T0, "odom", "base_link", 10 * S), "test")
    buffer.set_transform(tf(T1, "odom", "base_link", 12 * S), "test")
    t = 10 * S + int(round(alpha * 2 * S))
    a = (t - 10 * S) / (2 * S)
    got = buffer.lookup_matrix("odom", "base_link", t)
    np.testing.assert_allclose(got[:3, 3], (1 - a) * T0[:3, 3] + a * T1[:3, 3], atol=1e-9)
    slerp = Slerp([0.0, 1.0], Rotation.from_matrix([T0[:3, :3], T1[:3, :3]]))
    np.testing.assert_allclose(got[:3, :3], slerp([a]).as_matrix()[0], atol=1e-9)
    # the inverse direction is the inverse
    np.testing.assert_allclose(buffer.lookup_matrix("base_link", "odom", t) @ got, np.eye(4), atol=1e-9)


def test_halfway_rotation_is_the_analytic_midpoint():
    buffer = TfBuffer()
    buffer.set_transform(tf(conversions.transform_from_xyz_rpy([0, 0, 0], [0, 0, 0.0]), "a", "b", 1 * S), "t")
    buffer.set_transform(tf(conversions.transform_from_xyz_rpy([2, 4, -6], [0, 0, 1.0]), "a", "b", 3 * S), "t")
    mid = buffer.lookup_matrix("a", "b", 2 * S)
    np.testing.assert_allclose(mid, conversions.transform_from_xyz_rpy([1, 2, -3], [0, 0, 0.5]), atol=1e-12)


def test_chain_through_common_ancestor_mixing_static_and_dynamic():
    rng = np.random.default_rng(7)
    T_map_odom, T_odom_base0, T_odom_base1 = random_T(rng), random_T(rng), random_T(rng)
    T_base_lidar, T_base_cam = random_T(rng), random_T(rng)
    buffer = TfBuffer()
    buffer.set_transform_static(tf(T_base_lidar, "base_link", "lidar_link", 0), "t")
    buffer.set_transform_static(tf(T_base_cam, "base_link", "camera_optical_frame", 0), "t")
    buffer.set_transform(tf(T_map_odom, "map", "odom", 5 * S), "t")
    buffer.set_transform(tf(T_map_odom, "map", "odom", 9 * S), "t")
    buffer.set_transform(tf(T_odom_base0, "odom", "base_link", 6 * S), "t")
    buffer.set_transform(tf(T_odom_base1, "odom", "base_link", 8 * S), "t")
    # camera <- lidar never touches the dynamic links: any time works
    expected = np.linalg.inv(T_base_cam) @ T_base_lidar
    np.testing.assert_allclose(buffer.lookup_matrix("camera_optical_frame", "lidar_link", 100 * S), expected,
                               atol=1e-12)
    # map <- lidar at a sample time is the plain product
    np.testing.assert_allclose(buffer.lookup_matrix("map", "lidar_link", 8 * S),
                               T_map_odom @ T_odom_base1 @ T_base_lidar, atol=1e-12)
    # time 0 = latest common time = min(9 s, 8 s) over the dynamic links used
    latest = buffer.lookup_transform("map", "lidar_link", 0)
    assert conversions.stamp_to_ns(latest.header.stamp) == 8 * S
    assert buffer.get_latest_common_time("map", "lidar_link").nanoseconds == 8 * S
    assert buffer.get_latest_common_time("camera_optical_frame", "lidar_link").nanoseconds == 0
    # lookup_transform_full: lidar at 6 s, seen from base_link at 8 s, through the fixed map frame
    full = buffer.lookup_transform_full("base_link", 8 * S, "lidar_link", 6 * S, "map")
    expected_full = np.linalg.inv(T_map_odom @ T_odom_base1) @ (T_map_odom @ T_odom_base0 @ T_base_lidar)
    np.testing.assert_allclose(conversions.transform_stamped_to_matrix(full), expected_full, atol=1e-9)


def test_time_argument_types():
    from rclpy.time import Time as RclpyTime

    buffer = TfBuffer()
    buffer.set_transform(tf(np.eye(4), "a", "b", 2 * S), "t")
    buffer.set_transform(tf(conversions.transform_from_xyz_rpy([4, 0, 0], [0, 0, 0]), "a", "b", 4 * S), "t")
    for when in (3 * S, Time(sec=3), RclpyTime(seconds=3)):
        assert buffer.lookup_matrix("a", "b", when)[0, 3] == pytest.approx(2.0)
    with pytest.raises(InvalidArgumentException, match=">= 0"):
        buffer.lookup_transform("a", "b", -5)


def test_extrapolation_past_and_future():
    buffer = TfBuffer()
    buffer.set_transform(tf(np.eye(4), "a", "b", 2 * S), "t")
    with pytest.raises(ExtrapolationException, match="only time 2.000000"):
        buffer.lookup_transform("a", "b", 3 * S)
    buffer.set_transform(tf(np.eye(4), "a", "b", 4 * S), "t")
    with pytest.raises(ExtrapolationException, match="into the past"):
        buffer.lookup_transform("a", "b", 1 * S)
    with pytest.raises(ExtrapolationException, match="into the future.*from frame \\[b\\] to frame \\[a\\]"):
        buffer.lookup_transform("a", "b", 5 * S)
    assert buffer.can_transform("a", "b", 3 * S)
    ok, why = buffer.can_transform("a", "b", 5 * S, return_debug_tuple=True)
    assert not ok and "future" in why


def test_unknown_and_unconnected_frames():
    buffer = TfBuffer()
    buffer.set_transform_static(tf(np.eye(4), "map", "odom", 0), "t")
    buffer.set_transform_static(tf(np.eye(4), "world", "robot2", 0), "t")
    with pytest.raises(LookupException, match='"nowhere" passed to lookupTransform argument source_frame'):
        buffer.lookup_transform("map", "nowhere", 0)
    with pytest.raises(ConnectivityException, match="not part of the same tree"):
        buffer.lookup_transform("odom", "robot2", 0)
    for exc in (LookupException, ConnectivityException, ExtrapolationException, InvalidArgumentException):
        assert issubclass(exc, TransformException)
    # identity needs no data, as in tf2
    np.testing.assert_array_equal(buffer.lookup_matrix("ghost", "ghost", 0), np.eye(4))


@pytest.mark.parametrize("edit, message", [
    (lambda m: setattr(m.header, "frame_id", ""), "cannot be empty"),
    (lambda m: setattr(m, "child_frame_id", "/base"), "cannot start with"),
    (lambda m: setattr(m, "child_frame_id", "map"), "both 'map'"),
    (lambda m: setattr(m.transform.translation, "y", float("nan")), "NaN/inf translation"),
    (lambda m: setattr(m.transform.rotation, "w", 0.0), "zero quaternion"),
    (lambda m: setattr(m.transform.rotation, "w", float("nan")), "NaN"),
    (lambda m: setattr(m.transform.rotation, "w", 3.0), "not a unit quaternion"),
])
def test_invalid_transforms_are_rejected(edit, message):
    msg = tf(np.eye(4), "map", "base", 0)
    edit(msg)
    buffer = TfBuffer()
    with pytest.raises(InvalidArgumentException, match=message):
        buffer.set_transform(msg, "t")
    assert buffer.all_frames_as_string() == ""


def test_near_unit_quaternions_are_normalised():
    msg = tf(np.eye(4), "map", "base", 0)
    msg.transform.rotation.w = 1.004
    buffer = TfBuffer()
    buffer.set_transform_static(msg, "t")
    np.testing.assert_allclose(buffer.lookup_matrix("map", "base"), np.eye(4), atol=1e-12)


def test_cache_eviction_old_and_repeated_samples():
    buffer = TfBuffer(cache_time_s=10.0)
    for second in range(0, 21):
        assert buffer.set_transform(tf(np.eye(4), "odom", "base", second * S), "t")
    with pytest.raises(ExtrapolationException, match="past"):
        buffer.lookup_transform("odom", "base", 9 * S)  # evicted: newest is 20 s, cache 10 s
    assert buffer.can_transform("odom", "base", 10 * S)
    assert not buffer.set_transform(tf(np.eye(4), "odom", "base", 5 * S), "t")  # too old: dropped
    assert not buffer.set_transform(tf(np.eye(4), "odom", "base", 15 * S), "t")  # repeated stamp
    yaml = buffer.all_frames_as_yaml()
    assert "oldest_transform: 10.000000" in yaml and "most_recent_transform: 20.000000" in yaml
    assert "buffer_length: 10.000" in yaml
    buffer.clear()
    assert buffer.all_frames_as_string() == ""


def test_all_frames_as_string_lists_parents():
    buffer = TfBuffer()
    buffer.set_transform_static(tf(np.eye(4), "base_link", "lidar_link", 0), "t")
    buffer.set_transform(tf(np.eye(4), "map", "base_link", S), "t")
    text = buffer.all_frames_as_string()
    assert "Frame lidar_link exists with parent base_link.\n" in text
    assert "Frame base_link exists with parent map.\n" in text


def test_timeout_waits_for_data_from_another_thread():
    buffer = TfBuffer()
    buffer.set_transform(tf(np.eye(4), "map", "base", S), "t")
    T = conversions.transform_from_xyz_rpy([1, 0, 0], [0, 0, 0])

    def publish_later():
        time.sleep(0.2)
        buffer.set_transform(tf(T, "map", "base", 3 * S), "t")

    assert not buffer.can_transform("map", "base", 2 * S)
    writer = threading.Thread(target=publish_later)
    writer.start()
    started = time.monotonic()
    got = buffer.lookup_matrix("map", "base", 2 * S, timeout=2.0)
    waited = time.monotonic() - started
    writer.join()
    assert 0.1 < waited < 1.5
    assert got[0, 3] == pytest.approx(0.5)
    started = time.monotonic()
    with pytest.raises(ExtrapolationException):
        buffer.lookup_transform("map", "base", 10 * S, timeout=0.2)
    assert 0.15 < time.monotonic() - started < 1.0


def test_concurrent_writers_and_readers():
    buffer = TfBuffer(cache_time_s=1000.0)
    buffer.set_transform_static(tf(conversions.transform_from_xyz_rpy([0, 0, 1], [0, 0, 0]), "base", "lidar", 0), "t")
    T = conversions.transform_from_xyz_rpy([2, 0, 0], [0, 0, 0.3])
    buffer.set_transform(tf(T, "odom", "base", S), "t")
    failures: list[BaseException] = []
    stop = threading.Event()

    def writer(offset):
        k = 0
        while not stop.is_set():
            k += 1
            buffer.set_transform(tf(T, "odom", "base", S + (2 * k + offset) * 1000), "t")

    def reader():
        while not stop.is_set():
            try:
                M = buffer.lookup_matrix("odom", "lidar", 0)
                np.testing.assert_allclose(M[:3, 3], [2, 0, 1], atol=1e-9)
            except BaseException as exc:  # noqa: BLE001
                failures.append(exc)
                return

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(2)] + \
              [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    time.sleep(0.4)
    stop.set()
    for t in threads:
        t.join()
    assert not failures, failures[0]


def test_make_tf_buffer_falls_back_to_ours():
    buffer = make_tf_buffer(cache_time_s=5.0)
    assert isinstance(buffer, TfBuffer) and buffer.cache_time_ns == 5 * S
    with pytest.raises(InvalidArgumentException, match="positive"):
        TfBuffer(cache_time_s=0)
