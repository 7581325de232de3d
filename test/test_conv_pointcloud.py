"""PointCloud2 <-> numpy: arbitrary layouts built byte by byte, round trips, and every malformed kind."""
from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sensor_msgs.msg import PointCloud2, PointField

from ocgs_ros.mapping.errors import FrameRejected
from ocgs_ros.ros import conversions

# datatype code -> (numpy little-endian dtype) written down independently of the module's table
DATATYPES = {1: "<i1", 2: "<u1", 3: "<i2", 4: "<u2", 5: "<i4", 6: "<u4", 7: "<f4", 8: "<f8"}
EXTRA_NAMES = ["intensity", "ring", "time", "rgb", "normal", "label"]


def _random_values(rng, dtype: np.dtype, shape) -> np.ndarray:
    if dtype.kind == "f":
        return rng.normal(0, 100, size=shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)


def build_cloud(field_specs, height, width, gaps, tail_pad, row_pad, seed):
    """Write a PointCloud2 by hand: each field at its offset in each point, padding bytes random.

    Returns (msg, expected) where expected[name] is the [height, width(, count)] value array.
    """
    rng = np.random.default_rng(seed)
    fields, offset = [], 0
    for (name, datatype, count), gap in zip(field_specs, gaps):
        offset += gap
        fields.append(PointField(name=name, offset=offset, datatype=datatype, count=count))
        offset += np.dtype(DATATYPES[datatype]).itemsize * count
    point_step = offset + tail_pad
    row_step = width * point_step + row_pad
    raw = bytearray(rng.integers(0, 256, size=height * row_step, dtype=np.uint8).tobytes())
    expected = {}
    for field in fields:
        dtype = np.dtype(DATATYPES[field.datatype])
        shape = (height, width) if field.count == 1 else (height, width, field.count)
        values = _random_values(rng, dtype, shape)
        expected[field.name] = values
        for r in range(height):
            for c in range(width):
                start = r * row_step + c * point_step + field.offset
                chunk = values[r, c].tobytes()
                raw[start:start + len(chunk)] = chunk
    msg = PointCloud2(height=height, width=width, fields=fields, is_bigendian=False,
                      point_step=point_step, row_step=row_step, is_dense=True)
    msg.data = bytes(raw)
    return msg, expected


@st.composite
def cloud_layouts(draw):
    xyz_type = draw(st.sampled_from([7, 8]))
    extras = draw(st.lists(st.sampled_from(EXTRA_NAMES), unique=True, max_size=4))
    specs = [("x", xyz_type, 1), ("y", xyz_type, 1), ("z", xyz_type, 1)]
    specs += [(name, draw(st.sampled_from(list(DATATYPES))), draw(st.integers(1, 3))) for name in extras]
    order = draw(st.permutations(range(len(specs))))
    specs = [specs[i] for i in order]
    gaps = draw(st.lists(st.integers(0, 5), min_size=len(specs), max_size=len(specs)))
    return dict(field_specs=specs, height=draw(st.integers(1, 3)), width=draw(st.integers(0, 6)), gaps=gaps,
                tail_pad=draw(st.integers(0, 7)), row_pad=draw(st.integers(0, 9)), seed=draw(st.integers(0, 2**31)))


@settings(max_examples=50, deadline=None)
@given(cloud_layouts())
def test_any_layout_reads_exactly_and_round_trips(layout):
    msg, expected = build_cloud(**layout)
    organised = conversions.pointcloud2_to_array(msg, skip_nans=False, keep_organized=True)
    assert organised.shape == (msg.height, msg.width)
    assert list(organised.dtype.names) == [f.name for f in msg.fields]
    flat = conversions.pointcloud2_to_array(msg, skip_nans=False)
    assert flat.shape == (msg.height * msg.width,)
    for name, values in expected.items():
        np.testing.assert_array_equal(organised[name], values)
        np.testing.assert_array_equal(flat[name], values.reshape(flat.shape + values.shape[2:]))
        assert organised.dtype.fields[name][0].base == values.dtype
    # Values are finite, so skip_nans keeps everything.
    assert conversions.pointcloud2_to_array(msg).shape == flat.shape

    for source in (flat, organised):
        again = conversions.array_to_pointcloud2(source, "lidar_link", 7)
        assert not again.is_bigendian
        assert again.row_step == again.width * again.point_step
        back = conversions.pointcloud2_to_array(again, skip_nans=False, keep_organized=True)
        assert back.dtype.names == source.dtype.names
        for name in source.dtype.names:
            np.testing.assert_array_equal(back[name].reshape(source[name].shape), source[name])


def test_dense_writer_layout_matches_pointfield_spec():
    cloud = np.zeros(2, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("ring", "<u2"), ("t", "<f8", (2,))])
    cloud["x"], cloud["ring"], cloud["t"] = [1.5, -2.0], [3, 65535], [[0.25, 1.0], [2.0, 3.0]]
    msg = conversions.array_to_pointcloud2(cloud, "lidar_link", conversions.ns_to_stamp(5))
    layout = [(f.name, f.offset, f.datatype, f.count) for f in msg.fields]
    assert layout == [("x", 0, 7, 1), ("y", 4, 7, 1), ("z", 8, 7, 1), ("ring", 12, 4, 1), ("t", 14, 8, 2)]
    assert (msg.point_step, msg.row_step, msg.height, msg.width) == (30, 60, 1, 2)
    assert msg.header.frame_id == "lidar_link" and msg.header.stamp.nanosec == 5
    data = bytes(msg.data)
    assert struct.unpack_from("<f", data, 0)[0] == 1.5
    assert struct.unpack_from("<H", data, 30 + 12)[0] == 65535
    assert struct.unpack_from("<2d", data, 30 + 14) == (2.0, 3.0)


def test_skip_nans_drops_points_with_nan_or_inf_xyz_only():
    xyz = np.array([[0, 0, 0], [np.nan, 1, 1], [1, np.inf, 1], [1, 1, -np.inf], [2, 2, 2]], dtype=np.float32)
    intensity = np.array([0.0, 1.0, 2.0, np.nan, 4.0], dtype=np.float32)
    msg = conversions.xyz_to_pointcloud2(xyz, "l", 0, intensity=intensity)
    assert msg.is_dense is False
    kept = conversions.pointcloud2_to_array(msg)
    np.testing.assert_array_equal(kept["intensity"], [0.0, 4.0])
    np.testing.assert_array_equal(conversions.pointcloud2_to_xyz(msg), [[0, 0, 0], [2, 2, 2]])
    assert conversions.pointcloud2_to_array(msg, skip_nans=False).shape == (5,)
    # NaN in a non-xyz field never removes a point
    msg2 = conversions.xyz_to_pointcloud2(xyz[[0, 4]], "l", 0, intensity=np.array([np.nan, 1], np.float32))
    assert msg2.is_dense is True and conversions.pointcloud2_to_array(msg2).shape == (2,)


def test_organised_cloud_with_nans_flattens_under_skip_nans():
    xyz = np.ones((2, 3, 3), np.float32)
    xyz[1, 2] = np.nan
    msg = conversions.xyz_to_pointcloud2(xyz, "cam", 0)
    assert (msg.height, msg.width) == (2, 3)
    assert conversions.pointcloud2_to_array(msg).shape == (5,)
    assert conversions.pointcloud2_to_array(msg, skip_nans=False, keep_organized=True).shape == (2, 3)
    with pytest.raises(ValueError, match="skip_nans"):
        conversions.pointcloud2_to_array(msg, keep_organized=True)


def test_xyz_dtype_and_extra_fields():
    pts64 = np.random.default_rng(0).normal(size=(10, 3))
    msg = conversions.xyz_to_pointcloud2(pts64, "l", 0, ring=np.arange(10, dtype=np.uint16),
                                         normal=np.ones((10, 3), np.float32))
    assert msg.fields[0].datatype == PointField.FLOAT64
    assert [f.count for f in msg.fields] == [1, 1, 1, 1, 3]
    np.testing.assert_array_equal(conversions.pointcloud2_to_xyz(msg, dtype=np.float64), pts64)
    assert conversions.pointcloud2_to_xyz(msg).dtype == np.float32
    arr = conversions.pointcloud2_to_array(msg, field_names=["ring"])
    assert arr.dtype.names == ("ring",) and arr["ring"].dtype == np.uint16


def test_packed_rgb_in_both_float_and_uint_forms():
    rgb = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [1, 2, 3]], dtype=np.uint8)
    as_uint = conversions.pack_rgb(rgb, dtype=np.uint32)
    np.testing.assert_array_equal(as_uint, [0xFF0000, 0x00FF00, 0x0000FF, 0x010203])
    as_float = conversions.pack_rgb(rgb)
    assert as_float.dtype == np.float32
    assert struct.pack("<f", as_float[3]) == struct.pack("<I", 0x010203)
    np.testing.assert_array_equal(conversions.unpack_rgb(as_float), rgb)
    np.testing.assert_array_equal(conversions.unpack_rgb(as_uint | np.uint32(0xFF000000)), rgb)  # alpha ignored
    for packed in (as_float, as_uint):
        msg = conversions.xyz_to_pointcloud2(np.zeros((4, 3), np.float32), "l", 0, rgb=packed)
        xyz, colours = conversions.pointcloud2_to_xyz_rgb(msg)
        assert xyz.shape == (4, 3)
        np.testing.assert_array_equal(colours, rgb)


def _valid_msg() -> PointCloud2:
    return conversions.xyz_to_pointcloud2(np.zeros((4, 3), np.float32), "l", 0,
                                          intensity=np.zeros(4, np.float32))


@pytest.mark.parametrize("mutate, message, reason", [
    (lambda m: setattr(m, "is_bigendian", True), "big-endian", "pointcloud_bigendian"),
    (lambda m: setattr(m, "data", bytes(m.data)[:-1]), "data length", "pointcloud_data_length"),
    (lambda m: setattr(m, "row_step", m.row_step - 1), "row_step", "pointcloud_step"),
    (lambda m: setattr(m, "point_step", 0), "point_step 0", "pointcloud_step"),
    (lambda m: setattr(m.fields[3], "offset", 14), "extends past point_step", "pointcloud_fields"),
    (lambda m: setattr(m.fields[3], "datatype", 9), "unknown datatype 9", "pointcloud_datatype"),
    (lambda m: setattr(m.fields[1], "offset", 2), "overlap", "pointcloud_fields"),
    (lambda m: setattr(m.fields[3], "name", "x"), "two fields named 'x'", "pointcloud_fields"),
    (lambda m: setattr(m.fields[3], "count", 0), "count 0", "pointcloud_fields"),
    (lambda m: (setattr(m, "width", 0), setattr(m, "point_step", 2 ** 31), setattr(m, "row_step", 0),
                setattr(m, "data", b"")), "point_step", "pointcloud_step"),
])
def test_malformed_clouds_raise_value_error_naming_the_problem(mutate, message, reason):
    msg = _valid_msg()
    mutate(msg)
    with pytest.raises(FrameRejected, match=message) as info:
        conversions.pointcloud2_to_array(msg)
    assert isinstance(info.value, ValueError) and info.value.reason == reason


def test_missing_xyz_and_unwritable_dtypes_are_reported():
    cloud = np.zeros(3, dtype=[("x", "<f4"), ("y", "<f4"), ("intensity", "<f4")])
    msg = conversions.array_to_pointcloud2(cloud, "l", 0)
    with pytest.raises(ValueError, match="no z field"):
        conversions.pointcloud2_to_xyz(msg)
    with pytest.raises(ValueError, match="rgb"):
        conversions.pointcloud2_to_xyz_rgb(msg)
    with pytest.raises(ValueError, match="no field"):
        conversions.pointcloud2_to_array(msg, field_names=["ring"])
    with pytest.raises(ValueError, match="int64"):
        conversions.array_to_pointcloud2(np.zeros(2, dtype=[("x", "<i8")]), "l", 0)
    with pytest.raises(ValueError, match="structured"):
        conversions.array_to_pointcloud2(np.zeros((2, 3), np.float32), "l", 0)
    with pytest.raises(ValueError, match=r"\[N, 3\]"):
        conversions.xyz_to_pointcloud2(np.zeros((4, 2)), "l", 0)
    with pytest.raises(ValueError, match="'ring'"):
        conversions.xyz_to_pointcloud2(np.zeros((4, 3)), "l", 0, ring=np.zeros(3, np.uint16))


def test_empty_cloud():
    msg = conversions.xyz_to_pointcloud2(np.zeros((0, 3), np.float32), "l", 0)
    assert (msg.height, msg.width, len(msg.data)) == (1, 0, 0)
    assert conversions.pointcloud2_to_xyz(msg).shape == (0, 3)


def test_big_cloud_reads_fast():
    """No per-point Python: a 200k-point padded cloud converts in well under a second."""
    import time

    cloud = np.zeros(200_000, dtype={"names": ["x", "y", "z", "intensity"], "formats": ["<f4"] * 4,
                                     "offsets": [0, 4, 8, 16], "itemsize": 32})
    cloud["x"] = np.arange(200_000)
    msg = PointCloud2(height=1, width=200_000, point_step=32, row_step=32 * 200_000, is_dense=True,
                      fields=[PointField(name=n, offset=o, datatype=7, count=1)
                              for n, o in zip("xyz", (0, 4, 8))] + [PointField(name="intensity", offset=16,
                                                                               datatype=7, count=1)])
    msg.data = cloud.tobytes()
    start = time.perf_counter()
    xyz = conversions.pointcloud2_to_xyz(msg)
    assert time.perf_counter() - start < 1.0
    assert xyz[123_456, 0] == 123_456
