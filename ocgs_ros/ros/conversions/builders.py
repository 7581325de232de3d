"""Output messages for RViz and downstream nodes: box markers, BEV occupancy grids, point clouds.

BEV <-> OccupancyGrid convention
--------------------------------
Our BEV grids (docs/conventions.md) are indexed ``[row, col]`` with ``row`` = x bin and
``col`` = y bin: cell ``[i, j]`` covers ``x in [x_min + i*res, x_min + (i+1)*res)`` and
``y in [y_min + j*res, ...)``. ``nav_msgs/OccupancyGrid`` stores ``data`` row-major with the
*column* index along the map's x axis and the *row* index along y, i.e. a point ``(x, y)`` is at
``data[floor((y - origin.y)/res) * info.width + floor((x - origin.x)/res)]`` (for yaw 0). So the
message is the transpose of our grid: ``info.width = H`` (x cells), ``info.height = W`` (y cells),
``data = grid.T.ravel()``, and ``info.origin`` is the corner ``(x_min, y_min)`` rotated by ``yaw``.
"""
from __future__ import annotations

import array
import math
from typing import Sequence

import numpy as np
from builtin_interfaces.msg import Duration
from geometry_msgs.msg import Point
from nav_msgs.msg import OccupancyGrid
from sensor_msgs.msg import PointCloud2
from std_msgs.msg import ColorRGBA
from visualization_msgs.msg import Marker, MarkerArray

from ocgs_ros.ros.conversions.pointcloud import pack_rgb, xyz_to_pointcloud2
from ocgs_ros.ros.conversions.transforms import normalize_quaternion, to_stamp

OCCUPANCY_UNKNOWN = -1


def _duration(seconds: float) -> Duration:
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"lifetime must be a finite non-negative number of seconds, got {seconds}")
    ns = int(round(seconds * 1e9))
    return Duration(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def _yaw_quaternion_xyzw(yaw: float) -> np.ndarray:
    return np.array([0.0, 0.0, math.sin(yaw / 2.0), math.cos(yaw / 2.0)])


def _box_orientations(orientations, n: int) -> np.ndarray:
    """None / yaws [N] / quaternions xyzw [N, 4] -> unit quaternions xyzw [N, 4]."""
    if orientations is None:
        return np.tile([0.0, 0.0, 0.0, 1.0], (n, 1))
    values = np.asarray(orientations, dtype=np.float64)
    if values.shape == (n,):
        if not np.all(np.isfinite(values)):
            raise ValueError("box yaws have NaN/inf")
        return np.stack([_yaw_quaternion_xyzw(y) for y in values]) if n else np.zeros((0, 4))
    if values.shape == (n, 4):
        return np.stack([normalize_quaternion(q) for q in values]) if n else np.zeros((0, 4))
    raise ValueError(f"box orientations must be yaws [{n}] or quaternions xyzw [{n}, 4], got {values.shape}")


def _unit_box_edges() -> np.ndarray:
    """The 12 edges of the cube [-0.5, 0.5]^3 as [24, 3] segment endpoints (LINE_LIST order)."""
    corners = np.array([[(b >> 0) & 1, (b >> 1) & 1, (b >> 2) & 1] for b in range(8)], dtype=np.float64) - 0.5
    ends = [(b, b | (1 << axis)) for axis in range(3) for b in range(8) if not b & (1 << axis)]
    return corners[np.array(ends).reshape(-1)]


_UNIT_BOX_EDGES = _unit_box_edges()


def boxes_to_marker_array(centers: np.ndarray, sizes: np.ndarray, orientations, labels: Sequence[str] | None,
                          colors: np.ndarray, frame_id: str, stamp, ns: str = "boxes", lifetime_s: float = 0.0,
                          style: str = "cube", alpha: float = 0.5, line_width: float = 0.05,
                          text_height: float = 0.4) -> MarkerArray:
    """3D boxes -> MarkerArray: a DELETEALL (so boxes from the previous message vanish), then per box
    ``i`` a CUBE (``style="cube"``) or LINE_LIST wireframe (``style="wireframe"``) with id ``2*i`` and,
    when ``labels`` is given, a TEXT_VIEW_FACING label above it with id ``2*i + 1``.

    Args:
        centers: ``[N, 3]`` box centres in ``frame_id``.
        sizes: ``[N, 3]`` extents along the box's own x (length, along the heading), y, z.
        orientations: ``None``, yaws ``[N]`` (radians about z, CCW from +x) or quaternions xyzw ``[N, 4]``.
        labels: ``N`` strings or ``None``.
        colors: ``[N, 3]`` RGB floats in ``[0, 1]``.
        lifetime_s: 0 = until replaced.
    """
    centers = np.asarray(centers, dtype=np.float64)
    n = centers.shape[0] if centers.ndim == 2 else -1
    if centers.shape != (n, 3):
        raise ValueError(f"centers must be [N, 3], got {centers.shape}")
    sizes = np.asarray(sizes, dtype=np.float64)
    colors = np.asarray(colors, dtype=np.float64)
    if sizes.shape != (n, 3) or colors.shape != (n, 3):
        raise ValueError(f"sizes and colors must be [{n}, 3], got {sizes.shape} and {colors.shape}")
    if not (np.all(np.isfinite(centers)) and np.all(np.isfinite(sizes))):
        raise ValueError("box centers/sizes have NaN/inf")
    if np.any(sizes < 0):
        raise ValueError("box sizes must be non-negative")
    if not np.all((colors >= 0.0) & (colors <= 1.0)):
        raise ValueError("box colors must be RGB floats in [0, 1]")
    if labels is not None and len(labels) != n:
        raise ValueError(f"got {len(labels)} labels for {n} boxes")
    if style not in ("cube", "wireframe"):
        raise ValueError(f"style must be 'cube' or 'wireframe', got {style!r}")
    quats = _box_orientations(orientations, n)
    header_stamp = to_stamp(stamp)
    lifetime = _duration(lifetime_s)

    def marker(marker_id: int, kind: int) -> Marker:
        m = Marker()
        m.header.frame_id = frame_id
        m.header.stamp = header_stamp
        m.ns, m.id, m.type, m.action = ns, marker_id, kind, Marker.ADD
        m.lifetime = lifetime
        return m

    clear = Marker()
    clear.header.frame_id = frame_id
    clear.header.stamp = header_stamp
    clear.ns, clear.action = ns, Marker.DELETEALL
    out = MarkerArray()
    out.markers.append(clear)
    for i in range(n):
        rgb = colors[i]
        box = marker(2 * i, Marker.CUBE if style == "cube" else Marker.LINE_LIST)
        box.pose.position.x, box.pose.position.y, box.pose.position.z = (float(v) for v in centers[i])
        q = quats[i]
        box.pose.orientation.x, box.pose.orientation.y, box.pose.orientation.z, box.pose.orientation.w = (
            float(v) for v in q)
        if style == "cube":
            box.scale.x, box.scale.y, box.scale.z = (float(v) for v in sizes[i])
            box.color = ColorRGBA(r=float(rgb[0]), g=float(rgb[1]), b=float(rgb[2]), a=float(alpha))
        else:
            box.scale.x = float(line_width)  # LINE_LIST: only scale.x (line width) is used
            box.color = ColorRGBA(r=float(rgb[0]), g=float(rgb[1]), b=float(rgb[2]), a=1.0)
            box.points = [Point(x=float(p[0]), y=float(p[1]), z=float(p[2])) for p in _UNIT_BOX_EDGES * sizes[i]]
        out.markers.append(box)
        if labels is not None:
            text = marker(2 * i + 1, Marker.TEXT_VIEW_FACING)
            text.text = str(labels[i])
            text.pose.position.x, text.pose.position.y = float(centers[i, 0]), float(centers[i, 1])
            text.pose.position.z = float(centers[i, 2] + sizes[i, 2] / 2.0 + 0.75 * text_height)
            text.pose.orientation.w = 1.0
            text.scale.z = float(text_height)  # TEXT_VIEW_FACING: only scale.z (letter height) is used
            text.color = ColorRGBA(r=float(rgb[0]), g=float(rgb[1]), b=float(rgb[2]), a=1.0)
            out.markers.append(text)
    return out


def grid_to_occupancy_grid(grid: np.ndarray, resolution: float, origin_xy: Sequence[float], frame_id: str,
                           stamp, yaw: float = 0.0) -> OccupancyGrid:
    """BEV mask or probability grid ``[H, W]`` (row = x bin, col = y bin) -> OccupancyGrid.

    ``bool`` (or 0/1 integer) masks map to 0/100; float probabilities in ``[0, 1]`` map to
    ``round(100 p)``; NaN maps to -1 (unknown). ``origin_xy`` is the ``(x_min, y_min)`` corner of
    cell ``[0, 0]``; ``yaw`` rotates the grid about it. See the module docstring for the transpose.
    """
    grid = np.asarray(grid)
    if grid.ndim != 2:
        raise ValueError(f"grid must be [H, W], got shape {grid.shape}")
    if not (math.isfinite(resolution) and resolution > 0):
        raise ValueError(f"resolution must be positive, got {resolution}")
    origin_xy = np.asarray(origin_xy, dtype=np.float64)
    if origin_xy.shape != (2,) or not np.all(np.isfinite(origin_xy)) or not math.isfinite(yaw):
        raise ValueError(f"origin_xy must be 2 finite numbers and yaw finite, got {origin_xy} and {yaw}")
    if grid.dtype == bool:
        values = grid.astype(np.int8) * np.int8(100)
    elif grid.dtype.kind in "iu":
        if not np.isin(grid, (0, 1)).all():
            raise ValueError("integer grids must be 0/1 masks; pass probabilities as floats in [0, 1]")
        values = grid.astype(np.int8) * np.int8(100)
    elif grid.dtype.kind == "f":
        known = ~np.isnan(grid)
        if np.any(np.isinf(grid)) or np.any((grid[known] < 0.0) | (grid[known] > 1.0)):
            raise ValueError("probability grid values must be in [0, 1] (NaN = unknown)")
        values = np.full(grid.shape, OCCUPANCY_UNKNOWN, dtype=np.int8)
        values[known] = np.rint(grid[known] * 100.0).astype(np.int8)
    else:
        raise ValueError(f"grid dtype {grid.dtype} is neither a mask nor probabilities")

    msg = OccupancyGrid()
    msg.header.frame_id = frame_id
    msg.header.stamp = to_stamp(stamp)
    msg.info.map_load_time = msg.header.stamp
    msg.info.resolution = float(resolution)
    msg.info.width = int(grid.shape[0])   # OccupancyGrid columns run along x = our rows
    msg.info.height = int(grid.shape[1])  # OccupancyGrid rows run along y = our columns
    msg.info.origin.position.x, msg.info.origin.position.y = float(origin_xy[0]), float(origin_xy[1])
    q = _yaw_quaternion_xyzw(yaw)
    msg.info.origin.orientation.z, msg.info.origin.orientation.w = float(q[2]), float(q[3])
    data = array.array("b")
    data.frombytes(np.ascontiguousarray(values.T).tobytes())
    msg.data = data
    return msg


def occupancy_grid_to_grid(msg: OccupancyGrid) -> np.ndarray:
    """OccupancyGrid -> float32 BEV grid ``[H, W]`` (row = x bin, col = y bin): probabilities
    ``value / 100`` in ``[0, 1]``, NaN for unknown (-1). Inverse of :func:`grid_to_occupancy_grid`."""
    width, height = int(msg.info.width), int(msg.info.height)
    values = np.asarray(msg.data, dtype=np.int8) if not isinstance(msg.data, array.array) \
        else np.frombuffer(msg.data, dtype=np.int8)
    if values.size != width * height:
        raise ValueError(f"OccupancyGrid has {values.size} cells but width * height = {width} * {height}")
    if np.any((values < OCCUPANCY_UNKNOWN) | (values > 100)):
        raise ValueError("OccupancyGrid values must be -1 (unknown) or 0..100")
    grid = values.reshape(height, width).T.astype(np.float32) / np.float32(100.0)
    grid[values.reshape(height, width).T == OCCUPANCY_UNKNOWN] = np.nan
    return np.ascontiguousarray(grid)


def _rviz_field(name: str, values: np.ndarray, n: int) -> np.ndarray:
    """Per-point field in a PointField-compatible dtype RViz can colour by."""
    values = np.asarray(values)
    if values.shape[:1] != (n,) or values.ndim > 2:
        raise ValueError(f"field {name!r} must be [{n}] or [{n}, k], got {values.shape}")
    if values.dtype == bool:
        return values.astype(np.uint8)
    if values.dtype.kind == "f":
        return values.astype(np.float32)
    if values.dtype.kind in "iu" and values.dtype.itemsize == 8:
        target = np.int32 if values.dtype.kind == "i" else np.uint32
        info = np.iinfo(target)
        if values.size and (values.min() < info.min or values.max() > info.max):
            raise ValueError(f"field {name!r} does not fit in {np.dtype(target)}")
        return values.astype(target)
    return values


def points_to_pointcloud2(points: np.ndarray, frame_id: str, stamp, rgb: np.ndarray | None = None,
                          **scalar_fields: np.ndarray) -> PointCloud2:
    """Points ``[N, 3]`` (e.g. Gaussian centres) -> float32 PointCloud2 for RViz.

    ``rgb`` (uint8 ``[N, 3]`` or floats in ``[0, 1]``) becomes the packed float32 ``rgb`` field
    RViz's "RGB8" colour transformer reads. Extra fields (opacity, scale, instance id, ...) are
    ``[N]`` or ``[N, k]``; floats are written as float32, bools as uint8, 64-bit ints as 32-bit.
    """
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points must be [N, 3], got {points.shape}")
    n = points.shape[0]
    fields: dict[str, np.ndarray] = {}
    if rgb is not None:
        rgb = np.asarray(rgb)
        if rgb.shape != (n, 3):
            raise ValueError(f"rgb must be [{n}, 3], got {rgb.shape}")
        if rgb.dtype.kind == "f":
            if not np.all((rgb >= 0.0) & (rgb <= 1.0)):
                raise ValueError("float rgb must be in [0, 1]")
            rgb = np.rint(rgb * 255.0).astype(np.uint8)
        elif rgb.dtype != np.uint8:
            raise ValueError(f"rgb must be uint8 or float in [0, 1], got {rgb.dtype}")
        fields["rgb"] = pack_rgb(rgb, dtype=np.float32)
    for name, values in scalar_fields.items():
        if name in ("x", "y", "z", "rgb"):
            raise ValueError(f"field name {name!r} is reserved")
        fields[name] = _rviz_field(name, values, n)
    return xyz_to_pointcloud2(points.astype(np.float32), frame_id, stamp, **fields)
