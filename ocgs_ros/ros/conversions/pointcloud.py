"""sensor_msgs/PointCloud2 <-> numpy structured arrays, for any field layout.

Reading builds one numpy dtype with the message's field offsets and ``itemsize = point_step``
and views the buffer with strides ``(row_step, point_step)``, so padding inside a point, padding
at the end of each row and organised ``[height, width]`` clouds cost nothing and no Python loop
ever runs per point. Writing always produces a dense little-endian layout (fields packed in the
order of the input dtype, ``row_step = width * point_step``).

A malformed cloud raises :class:`~ocgs_ros.mapping.errors.FrameRejected` (a ValueError) whose
``reason`` names the fault: ``pointcloud_bigendian``, ``pointcloud_step``,
``pointcloud_data_length``, ``pointcloud_fields`` or ``pointcloud_datatype``.
"""
from __future__ import annotations

import array
from typing import Iterable, Sequence

import numpy as np
from sensor_msgs.msg import PointCloud2, PointField

from ocgs_ros.mapping.errors import FrameRejected
from ocgs_ros.ros.conversions.transforms import to_stamp

# PointField datatype constants -> little-endian numpy scalar types.
DATATYPE_TO_DTYPE: dict[int, np.dtype] = {
    PointField.INT8: np.dtype("i1"),
    PointField.UINT8: np.dtype("u1"),
    PointField.INT16: np.dtype("<i2"),
    PointField.UINT16: np.dtype("<u2"),
    PointField.INT32: np.dtype("<i4"),
    PointField.UINT32: np.dtype("<u4"),
    PointField.FLOAT32: np.dtype("<f4"),
    PointField.FLOAT64: np.dtype("<f8"),
}
_KIND_SIZE_TO_DATATYPE = {(dt.kind, dt.itemsize): code for code, dt in DATATYPE_TO_DTYPE.items()}
_XYZ = ("x", "y", "z")


# --------------------------------------------------------------------------------------------
# Layout
# --------------------------------------------------------------------------------------------
def pointfields_to_dtype(fields: Sequence[PointField], point_step: int) -> np.dtype:
    """The numpy dtype (offsets as in the message, ``itemsize = point_step``) for ``fields``.

    Raises :class:`FrameRejected` for unknown datatypes (``pointcloud_datatype``), and for
    ``count == 0``, empty or duplicate names, fields that extend past ``point_step`` and fields that
    overlap each other (``pointcloud_fields``).
    """
    names, formats, offsets = [], [], []
    extents = []  # (offset, end, name) for the overlap check
    for field in fields:
        if not field.name:  # numpy would build the dtype but never find the field again
            raise FrameRejected("pointcloud_fields", "PointCloud2 has a field with an empty name")
        if field.name in names:
            raise FrameRejected("pointcloud_fields", f"PointCloud2 has two fields named {field.name!r}")
        base = DATATYPE_TO_DTYPE.get(field.datatype)
        if base is None:
            raise FrameRejected(
                "pointcloud_datatype", f"PointCloud2 field {field.name!r} has unknown datatype {field.datatype} "
                f"(valid: {sorted(DATATYPE_TO_DTYPE)})"
            )
        if field.count < 1:
            raise FrameRejected("pointcloud_fields",
                                f"PointCloud2 field {field.name!r} has count {field.count}; it must be >= 1")
        size = base.itemsize * field.count
        if field.offset + size > point_step:
            raise FrameRejected(
                "pointcloud_fields", f"PointCloud2 field {field.name!r} (offset {field.offset}, {size} bytes) "
                f"extends past point_step {point_step}"
            )
        names.append(field.name)
        formats.append(base if field.count == 1 else (base, (field.count,)))
        offsets.append(field.offset)
        extents.append((field.offset, field.offset + size, field.name))
    extents.sort()
    for (_, end_a, name_a), (start_b, _, name_b) in zip(extents, extents[1:]):
        if start_b < end_a:
            raise FrameRejected("pointcloud_fields", f"PointCloud2 fields {name_a!r} and {name_b!r} overlap")
    try:
        return np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": point_step})
    except (ValueError, TypeError, OverflowError) as exc:  # e.g. a point_step numpy cannot lay out
        raise FrameRejected("pointcloud_step", f"PointCloud2 layout with point_step {point_step}: {exc}") from exc


def dtype_to_pointfields(dtype: np.dtype) -> tuple[list[PointField], np.dtype]:
    """PointFields for a dense little-endian packing of structured ``dtype``, and that packed dtype.

    Raises ``ValueError`` for dtypes a PointField cannot hold (int64, bool, nested, multi-dim).
    """
    if dtype.names is None:
        raise ValueError(f"a structured dtype is needed to build PointFields, got {dtype}")
    fields, names, formats = [], [], []
    offset = 0
    for name in dtype.names:
        field_dtype = dtype.fields[name][0]
        base, shape = field_dtype.base, field_dtype.shape
        if len(shape) > 1:
            raise ValueError(f"field {name!r} has shape {shape}; PointFields hold scalars or 1-D vectors")
        count = int(shape[0]) if shape else 1
        datatype = _KIND_SIZE_TO_DATATYPE.get((base.kind, base.itemsize))
        if datatype is None or base.names is not None:
            raise ValueError(
                f"field {name!r} has dtype {base}, which no PointField datatype can hold "
                "(use int8/16/32, uint8/16/32, float32 or float64)"
            )
        le = DATATYPE_TO_DTYPE[datatype]
        fields.append(PointField(name=name, offset=offset, datatype=datatype, count=count))
        names.append(name)
        formats.append(le if count == 1 else (le, (count,)))
        offset += le.itemsize * count
    packed = np.dtype({"names": names, "formats": formats, "offsets": [f.offset for f in fields],
                       "itemsize": offset})
    return fields, packed


def _packed(dtype: np.dtype) -> np.dtype:
    """Same fields, no padding, native layout (what readers hand back)."""
    return np.dtype([(name, dtype.fields[name][0]) for name in dtype.names])


def _data_as_uint8(data) -> np.ndarray:
    if isinstance(data, np.ndarray):
        return data.reshape(-1).view(np.uint8)
    if isinstance(data, (bytes, bytearray, memoryview, array.array)):
        return np.frombuffer(data, dtype=np.uint8)
    return np.asarray(data, dtype=np.uint8)  # a plain list of ints


def _check_cloud_layout(msg: PointCloud2) -> None:
    if msg.is_bigendian:
        raise FrameRejected("pointcloud_bigendian", "big-endian PointCloud2 (is_bigendian=True) is not supported")
    if msg.width > 0 and msg.height > 0 and msg.point_step == 0:
        raise FrameRejected("pointcloud_step", "PointCloud2 has point_step 0 but width*height > 0 points")
    if msg.row_step < msg.width * msg.point_step:
        raise FrameRejected(
            "pointcloud_step",
            f"PointCloud2 row_step {msg.row_step} < width * point_step = {msg.width} * {msg.point_step}"
        )
    expected = msg.height * msg.row_step
    if len(msg.data) != expected:
        raise FrameRejected(
            "pointcloud_data_length",
            f"PointCloud2 data length {len(msg.data)} does not match height * row_step = "
            f"{msg.height} * {msg.row_step} = {expected}"
        )


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------
def pointcloud2_to_array(msg: PointCloud2, skip_nans: bool = True, field_names: Iterable[str] | None = None,
                         keep_organized: bool = False) -> np.ndarray:
    """PointCloud2 -> structured array with one field per PointField (``count > 1`` -> sub-array).

    Args:
        msg: the cloud; any field layout, point padding and row padding.
        skip_nans: drop points whose x, y or z is NaN or +-inf (only those fields are checked).
        field_names: read only these fields (default: all, in message order).
        keep_organized: return ``[height, width]`` instead of the flattened ``[height * width]``.
            Dropping points would break the grid, so it requires ``skip_nans=False``.

    Returns:
        A freshly allocated, packed (no padding) structured array; field order as in the message.
    """
    if keep_organized and skip_nans:
        raise ValueError("keep_organized=True keeps every point of the grid; pass skip_nans=False with it")
    _check_cloud_layout(msg)
    layout = pointfields_to_dtype(msg.fields, msg.point_step)
    if field_names is not None:
        field_names = list(field_names)
        missing = [n for n in field_names if n not in layout.names]
        if missing:
            raise FrameRejected("pointcloud_fields",
                                f"PointCloud2 has no field(s) {missing}; it has {list(layout.names)}")
    else:
        field_names = list(layout.names)
    out_dtype = _packed(layout[field_names] if field_names else np.dtype([]))
    shape = (msg.height, msg.width)
    if msg.height * msg.width == 0:
        empty = np.zeros(shape, dtype=out_dtype)
        return empty if keep_organized else empty.reshape(-1)

    grid = np.ndarray(shape=shape, dtype=layout, buffer=_data_as_uint8(msg.data),
                      strides=(msg.row_step, msg.point_step))
    if skip_nans:
        keep = np.ones(shape, dtype=bool)
        for name in _XYZ:
            if name in layout.names and layout.fields[name][0].kind == "f":
                keep &= np.isfinite(grid[name]) if layout.fields[name][0].shape == () \
                    else np.isfinite(grid[name]).all(axis=-1)
        selected = grid[keep]  # boolean indexing flattens and copies
    else:
        selected = grid if keep_organized else grid.reshape(-1)
    out = np.empty(selected.shape, dtype=out_dtype)
    for name in field_names:
        out[name] = selected[name]
    return out


def pointcloud2_to_xyz(msg: PointCloud2, dtype=np.float32, skip_nans: bool = True) -> np.ndarray:
    """PointCloud2 -> ``[N, 3]`` array of x, y, z (``dtype``); raises ``ValueError`` if x/y/z are missing."""
    names = [f.name for f in msg.fields]
    missing = [n for n in _XYZ if n not in names]
    if missing:
        raise ValueError(f"PointCloud2 has no {'/'.join(missing)} field(s); it has {names}")
    points = pointcloud2_to_array(msg, skip_nans=skip_nans, field_names=_XYZ)
    for name in _XYZ:
        if points.dtype.fields[name][0].shape != ():
            raise ValueError(f"PointCloud2 field {name!r} has count > 1; expected one scalar per point")
    xyz = np.empty((points.shape[0], 3), dtype=dtype)
    for column, name in enumerate(_XYZ):
        xyz[:, column] = points[name]
    return xyz


def unpack_rgb(packed: np.ndarray) -> np.ndarray:
    """PCL packed colour (float32 or uint32 bit pattern ``0x??RRGGBB``) -> uint8 ``[N, 3]`` RGB."""
    packed = np.ascontiguousarray(packed)
    if packed.dtype.itemsize != 4 or packed.dtype.kind not in "fiu":
        raise ValueError(f"packed rgb must be a 4-byte float or integer field, got {packed.dtype}")
    bits = packed.view(np.uint32).reshape(-1)
    rgb = np.empty((bits.shape[0], 3), dtype=np.uint8)
    rgb[:, 0] = (bits >> 16) & 0xFF
    rgb[:, 1] = (bits >> 8) & 0xFF
    rgb[:, 2] = bits & 0xFF
    return rgb


def pack_rgb(rgb: np.ndarray, dtype=np.float32) -> np.ndarray:
    """uint8 ``[N, 3]`` RGB -> PCL packed colour ``[N]`` (float32 bit pattern by default, as RViz
    expects for a field named ``rgb``; ``dtype=np.uint32`` for the integer form)."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 2 or rgb.shape[1] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"rgb must be uint8 [N, 3], got {rgb.dtype} {rgb.shape}")
    if np.dtype(dtype) not in (np.dtype(np.float32), np.dtype(np.uint32)):
        raise ValueError(f"packed rgb is float32 or uint32, not {np.dtype(dtype)}")
    bits = (rgb[:, 0].astype(np.uint32) << 16) | (rgb[:, 1].astype(np.uint32) << 8) | rgb[:, 2].astype(np.uint32)
    return bits.view(dtype)


def pointcloud2_to_xyz_rgb(msg: PointCloud2, dtype=np.float32, skip_nans: bool = True,
                           rgb_field: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """PointCloud2 -> (``[N, 3]`` xyz, uint8 ``[N, 3]`` RGB) from a packed ``rgb``/``rgba`` field,
    filtered consistently."""
    names = [f.name for f in msg.fields]
    if rgb_field is None:
        rgb_field = next((n for n in ("rgb", "rgba") if n in names), None)
        if rgb_field is None:
            raise ValueError(f"PointCloud2 has no packed colour field ('rgb' or 'rgba'); it has {names}")
    missing = [n for n in (*_XYZ, rgb_field) if n not in names]
    if missing:
        raise ValueError(f"PointCloud2 has no {missing} field(s); it has {names}")
    points = pointcloud2_to_array(msg, skip_nans=skip_nans, field_names=(*_XYZ, rgb_field))
    xyz = np.stack([points[n] for n in _XYZ], axis=1).astype(dtype, copy=False)
    return xyz, unpack_rgb(points[rgb_field])


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------
def array_to_pointcloud2(points: np.ndarray, frame_id: str, stamp) -> PointCloud2:
    """Structured array ``[N]`` (unorganised) or ``[H, W]`` (organised) -> dense little-endian PointCloud2.

    Field order follows ``points.dtype.names``. ``is_dense`` is True when every x/y/z is finite.
    """
    points = np.asarray(points)
    if points.dtype.names is None:
        raise ValueError(f"array_to_pointcloud2 needs a structured array, got dtype {points.dtype}")
    if points.ndim not in (1, 2):
        raise ValueError(f"points must be [N] or [H, W], got shape {points.shape}")
    fields, packed = dtype_to_pointfields(points.dtype)
    grid = points.reshape(1, -1) if points.ndim == 1 else points
    out = np.empty(grid.shape, dtype=packed)
    for name in packed.names:
        out[name] = grid[name]

    msg = PointCloud2()
    msg.header.frame_id = frame_id
    msg.header.stamp = to_stamp(stamp)
    msg.height, msg.width = int(grid.shape[0]), int(grid.shape[1])
    msg.fields = fields
    msg.is_bigendian = False
    msg.point_step = packed.itemsize
    msg.row_step = packed.itemsize * msg.width
    data = array.array("B")
    data.frombytes(out.tobytes())
    msg.data = data
    msg.is_dense = bool(all(
        np.isfinite(out[n]).all() for n in _XYZ if n in packed.names and packed.fields[n][0].kind == "f"
    ))
    return msg


def xyz_to_pointcloud2(points: np.ndarray, frame_id: str, stamp, **extra_fields: np.ndarray) -> PointCloud2:
    """``[N, 3]`` (or organised ``[H, W, 3]``) xyz plus per-point fields -> PointCloud2.

    x/y/z keep float64 when given float64, otherwise become float32. Each extra field is ``[N]``
    (or ``[N, k]`` for a vector field) and keeps its dtype, e.g.
    ``xyz_to_pointcloud2(p, "lidar_link", stamp, intensity=i.astype(np.float32), ring=r.astype(np.uint16))``.
    """
    points = np.asarray(points)
    if points.ndim not in (2, 3) or points.shape[-1] != 3:
        raise ValueError(f"points must be [N, 3] or [H, W, 3], got shape {points.shape}")
    lead = points.shape[:-1]
    xyz_dtype = np.float64 if points.dtype == np.float64 else np.float32
    columns = [("x", xyz_dtype, points[..., 0]), ("y", xyz_dtype, points[..., 1]), ("z", xyz_dtype, points[..., 2])]
    for name, values in extra_fields.items():
        values = np.asarray(values)
        if values.shape[: len(lead)] != lead or values.ndim > len(lead) + 1:
            raise ValueError(f"field {name!r} has shape {values.shape}; expected {lead} or {lead} + (k,)")
        columns.append((name, values.dtype if values.ndim == len(lead) else (values.dtype, values.shape[-1]), values))
    structured = np.empty(lead, dtype=[(name, dt) for name, dt, _ in columns])
    for name, _, values in columns:
        structured[name] = values
    return array_to_pointcloud2(structured, frame_id, stamp)
