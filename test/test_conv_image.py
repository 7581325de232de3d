"""Image <-> numpy with cv_bridge semantics: every encoding x size x row padding x endianness."""
from __future__ import annotations

import sys
import types

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sensor_msgs.msg import CompressedImage, Image

from ocgs_ros.mapping.errors import FrameRejected
from ocgs_ros.ros import conversions
from ocgs_ros.ros.conversions import image as image_module
from ocgs_ros.ros.conversions import CvBridge, CvBridgeError

# encoding -> (dtype, channels), from sensor_msgs/image_encodings.hpp
ENCODINGS = {
    "rgb8": ("u1", 3), "bgr8": ("u1", 3), "rgba8": ("u1", 4), "bgra8": ("u1", 4), "mono8": ("u1", 1),
    "mono16": ("u2", 1), "rgb16": ("u2", 3), "16UC1": ("u2", 1), "32FC1": ("f4", 1), "8UC1": ("u1", 1),
    "8UC3": ("u1", 3), "8UC4": ("u1", 4), "16SC2": ("i2", 2), "32SC1": ("i4", 1), "64FC3": ("f8", 3),
    "8SC1": ("i1", 1),
}


def _random_image(rng, dtype: np.dtype, shape) -> np.ndarray:
    if dtype.kind == "f":
        return rng.normal(0, 1000, size=shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)


def build_image(encoding, height, width, pad, bigendian, seed):
    """An Image written row by row with ``pad`` junk bytes after each row, in the given byte order."""
    code, channels = ENCODINGS[encoding]
    dtype = np.dtype(code)
    shape = (height, width) if channels == 1 else (height, width, channels)
    values = _random_image(np.random.default_rng(seed), dtype, shape)
    wire = values.astype(dtype.newbyteorder(">" if bigendian else "<"))
    row_bytes = width * channels * dtype.itemsize
    junk = bytes([0xAB]) * pad
    data = b"".join(wire[r].tobytes() + junk for r in range(height))
    msg = Image(height=height, width=width, encoding=encoding, is_bigendian=bigendian, step=row_bytes + pad)
    msg.data = data
    return msg, values


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(sorted(ENCODINGS)), st.integers(1, 7), st.integers(1, 9), st.integers(0, 13),
       st.booleans(), st.integers(0, 2**31))
def test_passthrough_reads_every_encoding_with_padding_and_byte_order(encoding, height, width, pad, big, seed):
    msg, values = build_image(encoding, height, width, pad, big, seed)
    out = CvBridge().imgmsg_to_cv2(msg)
    assert out.shape == values.shape  # mono -> 2-D, multi-channel -> [H, W, C]
    assert out.dtype == values.dtype and out.dtype.isnative and out.flags.c_contiguous
    np.testing.assert_array_equal(out, values)
    # ... and back: passthrough names the OpenCV type, an explicit encoding is kept.
    back = CvBridge().cv2_to_imgmsg(out, encoding=encoding)
    assert back.encoding == encoding and back.step == out.strides[0] and not back.is_bigendian
    np.testing.assert_array_equal(CvBridge().imgmsg_to_cv2(back), values)


def test_passthrough_encoding_names_follow_opencv_types():
    bridge = CvBridge()
    cases = {(np.uint8, (2, 3, 3)): "8UC3", (np.uint16, (2, 3)): "16UC1", (np.float32, (2, 3)): "32FC1",
             (np.int8, (2, 3, 2)): "8SC2", (np.float64, (4, 1, 4)): "64FC4"}
    for (dtype, shape), name in cases.items():
        assert bridge.cv2_to_imgmsg(np.zeros(shape, dtype)).encoding == name
    assert bridge.encoding_to_dtype_with_channels("bgra8") == ("uint8", 4)


def test_big_endian_arrays_are_flagged_and_read_back():
    values = (np.arange(12).reshape(3, 4) * 300).astype(">u2")
    msg = CvBridge().cv2_to_imgmsg(values, encoding="mono16")
    assert msg.is_bigendian
    assert bytes(msg.data)[:4] == bytes([0, 0, 0x01, 0x2C])  # 0 and 300 big-endian
    np.testing.assert_array_equal(CvBridge().imgmsg_to_cv2(msg), values.astype(np.uint16))


def test_colour_conversions_between_rgb_bgr_rgba_bgra_mono():
    bridge = CvBridge()
    rgb = np.random.default_rng(1).integers(0, 256, (5, 6, 3), dtype=np.uint8)
    msg = bridge.cv2_to_imgmsg(rgb, "rgb8")
    np.testing.assert_array_equal(bridge.imgmsg_to_cv2(msg, "bgr8"), rgb[:, :, ::-1])
    rgba = bridge.imgmsg_to_cv2(msg, "rgba8")
    assert rgba.shape == (5, 6, 4) and (rgba[..., 3] == 255).all()
    np.testing.assert_array_equal(rgba[..., :3], rgb)
    bgra = bridge.imgmsg_to_cv2(msg, "bgra8")
    np.testing.assert_array_equal(bgra[..., :3], rgb[:, :, ::-1])
    grey = bridge.imgmsg_to_cv2(msg, "mono8")
    luma = 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]  # ITU-R BT.601
    assert grey.shape == (5, 6) and np.abs(grey.astype(float) - luma).max() <= 1.0
    # from bgra: alpha dropped, channels swapped
    bgra_msg = bridge.cv2_to_imgmsg(bgra, "bgra8")
    np.testing.assert_array_equal(bridge.imgmsg_to_cv2(bgra_msg, "rgb8"), rgb)
    # mono replicated
    mono_msg = bridge.cv2_to_imgmsg(grey, "mono8")
    np.testing.assert_array_equal(bridge.imgmsg_to_cv2(mono_msg, "rgb8"), np.repeat(grey[..., None], 3, axis=2))


def test_bit_depth_conversions_scale_8_and_16_bit_like_cv_bridge():
    bridge = CvBridge()
    mono16 = np.array([[0, 257, 65535, 32896]], dtype=np.uint16)
    msg = bridge.cv2_to_imgmsg(mono16, "mono16")
    np.testing.assert_array_equal(bridge.imgmsg_to_cv2(msg, "mono8"), [[0, 1, 255, 128]])
    up = bridge.imgmsg_to_cv2(bridge.cv2_to_imgmsg(np.array([[0, 1, 255]], np.uint8), "mono8"), "mono16")
    np.testing.assert_array_equal(up, [[0, 257, 65535]])
    rgb16 = bridge.imgmsg_to_cv2(msg, "rgb16")
    assert rgb16.shape == (1, 4, 3) and rgb16.dtype == np.uint16
    # non-colour <-> non-colour with the same channel count: plain value conversion
    depth = bridge.cv2_to_imgmsg(np.array([[1, 2500]], np.uint16), "16UC1")
    np.testing.assert_array_equal(bridge.imgmsg_to_cv2(depth, "32FC1"), np.array([[1, 2500]], np.float32))


@pytest.mark.parametrize("source, target, message", [
    ("16UC1", "mono8", "not a color format"),
    ("8UC3", "rgb8", "not a color format"),
    ("rgb8", "8UC1", "same number of channels"),
    ("rgb8", "yuv422", "yuv422"),
])
def test_impossible_conversions_raise_cv_bridge_error(source, target, message):
    msg, _ = build_image(source, 2, 2, 0, False, 0)
    with pytest.raises(CvBridgeError, match=message):
        CvBridge().imgmsg_to_cv2(msg, target)


def test_malformed_messages_raise_clear_errors():
    bridge = CvBridge()
    msg, _ = build_image("rgb8", 2, 3, 0, False, 0)
    msg.encoding = "fancy42"
    with pytest.raises(CvBridgeError, match="fancy42"):
        bridge.imgmsg_to_cv2(msg)
    msg, _ = build_image("rgb8", 2, 3, 0, False, 0)
    msg.step = 8
    with pytest.raises(CvBridgeError, match="step 8 is smaller"):
        bridge.imgmsg_to_cv2(msg)
    msg, _ = build_image("rgb8", 2, 3, 2, False, 0)
    msg.data = bytes(msg.data)[:-1]
    with pytest.raises(CvBridgeError, match="height \\* step"):
        bridge.imgmsg_to_cv2(msg)
    with pytest.raises(CvBridgeError, match="encoding specified as rgb8, but image has incompatible type 8UC1"):
        bridge.cv2_to_imgmsg(np.zeros((2, 2), np.uint8), "rgb8")
    with pytest.raises(CvBridgeError, match="int64"):
        bridge.cv2_to_imgmsg(np.zeros((2, 2), np.int64))
    with pytest.raises(TypeError, match="numpy array"):
        bridge.cv2_to_imgmsg([[1, 2]])
    assert issubclass(CvBridgeError, TypeError)  # as the real cv_bridge


def test_header_is_copied_and_result_does_not_alias_message():
    from std_msgs.msg import Header

    header = Header(frame_id="cam", stamp=conversions.ns_to_stamp(42))
    msg = CvBridge().cv2_to_imgmsg(np.zeros((2, 2, 3), np.uint8), "bgr8", header=header)
    assert msg.header.frame_id == "cam" and msg.header.stamp.nanosec == 42
    out = CvBridge().imgmsg_to_cv2(msg)
    out[:] = 9
    assert bytes(msg.data) == bytes(12)


def test_compressed_png_round_trip_is_lossless():
    bridge = CvBridge()
    bgr = np.random.default_rng(3).integers(0, 256, (8, 10, 3), dtype=np.uint8)
    msg = bridge.cv2_to_compressed_imgmsg(bgr, dst_format="png")
    assert isinstance(msg, CompressedImage) and msg.format == "png"
    np.testing.assert_array_equal(bridge.compressed_imgmsg_to_cv2(msg), bgr)
    np.testing.assert_array_equal(bridge.compressed_imgmsg_to_cv2(msg, "rgb8"), bgr[:, :, ::-1])
    with pytest.raises(CvBridgeError, match="decode"):
        bridge.compressed_imgmsg_to_cv2(CompressedImage(format="png", data=b"not a png"))


def test_get_cv_bridge_falls_back_when_the_installed_one_is_broken(monkeypatch):
    image_module._real_cv_bridge_class.cache_clear()
    try:
        broken = types.ModuleType("cv_bridge")

        class RosOneBridge:
            def cv2_to_imgmsg(self, *args, **kwargs):
                raise AttributeError("module 'numpy' has no attribute 'tostring'")  # ROS 1 on numpy 2

        broken.CvBridge = RosOneBridge
        monkeypatch.setitem(sys.modules, "cv_bridge", broken)
        assert type(conversions.get_cv_bridge()) is CvBridge

        image_module._real_cv_bridge_class.cache_clear()
        working = types.ModuleType("cv_bridge")

        class Ros2Bridge(CvBridge):  # behaves like the real ROS 2 one
            pass

        working.CvBridge = Ros2Bridge
        monkeypatch.setitem(sys.modules, "cv_bridge", working)
        assert type(conversions.get_cv_bridge()) is Ros2Bridge
    finally:
        image_module._real_cv_bridge_class.cache_clear()


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16", "bgr16"])
def test_image_msg_to_rgb_from_every_colour_encoding(encoding):
    rgb = np.random.default_rng(4).integers(0, 256, (4, 5, 3), dtype=np.uint8)
    bridge = CvBridge()
    if encoding == "mono8":
        expected = np.repeat(rgb[..., :1], 3, axis=2)
        msg = bridge.cv2_to_imgmsg(np.ascontiguousarray(rgb[..., 0]), encoding)
    elif encoding == "mono16":
        expected = np.repeat(rgb[..., :1], 3, axis=2)
        msg = bridge.cv2_to_imgmsg(rgb[..., 0].astype(np.uint16) * 257, encoding)
    else:
        order = [2, 1, 0] if encoding.startswith("bgr") else [0, 1, 2]
        data = rgb[..., order]
        if encoding.endswith("a8"):
            data = np.concatenate([data, np.full((4, 5, 1), 7, np.uint8)], axis=2)
        if encoding.endswith("16"):
            data = data.astype(np.uint16) * 257
        expected = rgb
        msg = bridge.cv2_to_imgmsg(np.ascontiguousarray(data), encoding)
    out = conversions.image_msg_to_rgb(msg)
    assert out.dtype == np.uint8 and out.shape == (4, 5, 3)
    np.testing.assert_array_equal(out, expected)


def test_rgb_to_image_msg_and_errors():
    rgb = np.random.default_rng(5).integers(0, 256, (3, 4, 3), dtype=np.uint8)
    msg = conversions.rgb_to_image_msg(rgb, "camera_optical_frame", 1_000_000_007)
    assert (msg.encoding, msg.step, msg.header.frame_id) == ("rgb8", 12, "camera_optical_frame")
    assert conversions.stamp_to_ns(msg.header.stamp) == 1_000_000_007
    np.testing.assert_array_equal(conversions.image_msg_to_rgb(msg), rgb)
    with pytest.raises(ValueError, match="uint8"):
        conversions.rgb_to_image_msg(rgb.astype(np.float32), "c", 0)
    with pytest.raises(FrameRejected, match="32FC1") as info:
        conversions.image_msg_to_rgb(CvBridge().cv2_to_imgmsg(np.zeros((2, 2), np.float32), "32FC1"))
    assert info.value.reason == "image_encoding"


def test_depth_in_millimetres_and_metres():
    mm = np.array([[0, 1500], [65535, 1]], np.uint16)
    for encoding in ("16UC1", "mono16"):
        depth = conversions.depth_msg_to_metres(CvBridge().cv2_to_imgmsg(mm, encoding))
        assert depth.dtype == np.float32
        np.testing.assert_allclose(depth, [[0.0, 1.5], [65.535, 0.001]], rtol=1e-6)
    metres = np.array([[np.nan, 2.25], [np.inf, -np.inf]], np.float32)
    depth = conversions.depth_msg_to_metres(CvBridge().cv2_to_imgmsg(metres, "32FC1"))
    np.testing.assert_array_equal(depth, [[0.0, 2.25], [0.0, 0.0]])
    with pytest.raises(ValueError, match="rgb8"):
        conversions.depth_msg_to_metres(conversions.rgb_to_image_msg(np.zeros((1, 1, 3), np.uint8), "c", 0))
    # writer: 32FC1 exact, 16UC1 rounded to mm with unrepresentable depths as 0 (= invalid)
    d = np.array([[0.0, 1.2344], [70.0, np.nan]], np.float32)
    np.testing.assert_array_equal(conversions.depth_msg_to_metres(conversions.metres_to_depth_msg(d, "c", 0)),
                                  [[0.0, d[0, 1]], [70.0, 0.0]])
    mm_msg = conversions.metres_to_depth_msg(d, "c", 0, encoding="16UC1")
    np.testing.assert_array_equal(CvBridge().imgmsg_to_cv2(mm_msg), [[0, 1234], [0, 0]])


def _rgb_msg(height=4, width=5):
    return conversions.rgb_to_image_msg(np.zeros((height, width, 3), np.uint8), "cam", 0)


def _depth_msg(height=4, width=5):
    return conversions.metres_to_depth_msg(np.ones((height, width), np.float32), "cam", 0)


@pytest.mark.parametrize("fault, edit", [
    ("empty", lambda m: (setattr(m, "width", 0), setattr(m, "step", 0), setattr(m, "data", b""))),
    ("empty", lambda m: (setattr(m, "height", 0), setattr(m, "data", b""))),
    ("too_large", lambda m: setattr(m, "width", 100_000)),
    ("encoding", lambda m: setattr(m, "encoding", "bayer_wxyz9")),
    ("encoding", lambda m: setattr(m, "encoding", "")),
    ("step", lambda m: setattr(m, "step", m.step - 1)),
    ("data_length", lambda m: setattr(m, "data", bytes(m.data)[:-1])),
    ("data_length", lambda m: setattr(m, "step", m.step + 4)),
])
@pytest.mark.parametrize("what, make, read", [
    ("image", _rgb_msg, conversions.image_msg_to_rgb),
    ("depth", _depth_msg, conversions.depth_msg_to_metres),
])
def test_malformed_images_are_rejected_by_name_before_any_array_is_built(fault, edit, what, make, read):
    msg = make()
    edit(msg)
    with pytest.raises(FrameRejected) as info:
        read(msg)
    assert info.value.reason == f"{what}_{fault}"


def test_depth_encodings_are_not_colour_and_colour_is_not_depth():
    with pytest.raises(FrameRejected) as info:
        conversions.depth_msg_to_metres(_rgb_msg())
    assert info.value.reason == "depth_encoding"
    with pytest.raises(FrameRejected) as info:
        conversions.image_msg_to_rgb(_depth_msg())
    assert info.value.reason == "image_encoding"


def test_negative_metric_depth_counts_as_no_return():
    msg = conversions.metres_to_depth_msg(np.array([[-1.0, 2.0]], np.float32), "cam", 0)
    np.testing.assert_array_equal(conversions.depth_msg_to_metres(msg), [[0.0, 2.0]])
