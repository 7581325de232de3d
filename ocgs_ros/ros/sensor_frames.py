"""Synchronised sensor messages -> the numpy inputs of the core libraries, with every check a live
stream needs. One bad message raises :class:`FrameError` (a ValueError naming what is wrong and
a short ``reason`` key for counters); the node logs it, drops the frame and carries on.

Reasons are ``<input>_<fault>``: ``image_*`` / ``depth_*`` (``empty``, ``too_large``, ``encoding``,
``step``, ``data_length``; from :func:`ocgs_ros.ros.conversions.image.check_image_message`),
``depth_frame``, ``depth_size_mismatch``, ``camera_info_*`` (``missing``, ``size``,
``size_mismatch``, ``k``, ``distortion``, ``projection``), ``pointcloud_*`` (``bigendian``,
``step``, ``data_length``, ``fields``, ``datatype``, ``empty``, ``no_finite_points``) and ``tf_*``
(``frame_id``, ``unknown_frame``, ``not_connected``, ``extrapolation``, ``timeout``,
``invalid_argument``, ``lookup``, ``non_finite``); all listed in :data:`INPUT_REJECT_REASONS`. Every
check runs before any library sees the data.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sensor_msgs.msg import PointField

from ocgs_ros.camera import resize_depth, resize_image
from ocgs_ros.mapping.errors import FrameRejected as FrameError  # one class for the pipeline and the ROS side
from ocgs_ros.ros import conversions
from ocgs_ros.ros.tf import lookup_matrix, transform_exceptions

# tf2 exception class name -> reason (the same names in tf2_ros and our pip-only buffer).
_TF_REASONS = {
    "InvalidArgumentException": "tf_invalid_argument",
    "LookupException": "tf_unknown_frame",
    "ConnectivityException": "tf_not_connected",
    "ExtrapolationException": "tf_extrapolation",
    "TimeoutException": "tf_timeout",
}
_FLOAT_DATATYPES = (PointField.FLOAT32, PointField.FLOAT64)
_IMAGE_FAULTS = ("empty", "too_large", "encoding", "step", "data_length")

#: Every reason the checks here and in :mod:`ocgs_ros.ros.conversions` give a malformed input.
INPUT_REJECT_REASONS = frozenset(
    [f"{what}_{fault}" for what in ("image", "depth") for fault in _IMAGE_FAULTS]
    + ["depth_frame", "depth_size_mismatch", "header_stamp"]
    + [f"camera_info_{fault}" for fault in ("missing", "size", "size_mismatch", "k", "distortion", "projection")]
    + [f"pointcloud_{fault}" for fault in ("bigendian", "step", "data_length", "fields", "datatype", "empty",
                                           "no_finite_points")]
    + [f"tf_{fault}" for fault in ("frame_id", "unknown_frame", "not_connected", "extrapolation", "timeout",
                                   "invalid_argument", "lookup", "non_finite")]
)


@dataclass
class CameraFrame:
    rgb: np.ndarray  # uint8 [H, W, 3] at the processing resolution
    K: np.ndarray  # [3, 3] for that resolution (project convention: pixel centres at integers)
    frame_id: str


def camera_from_messages(image_msg, info_msg, width: int = 0, height: int = 0) -> CameraFrame:
    """Image + CameraInfo -> RGB and intrinsics, resized to ``width`` x ``height`` when given (0 = keep).

    Raises FrameError (``image_*``, ``camera_info_*``) for a malformed image or a non-colour
    encoding, a missing or invalid CameraInfo, or an image whose size differs from its CameraInfo.
    """
    if info_msg is None:
        raise FrameError("camera_info_missing", "no CameraInfo for this image")
    rgb = conversions.image_msg_to_rgb(image_msg)
    camera = conversions.camera_info_to_model(info_msg)
    if (camera.width, camera.height) != (rgb.shape[1], rgb.shape[0]):
        raise FrameError("camera_info_size_mismatch", f"image is {rgb.shape[1]}x{rgb.shape[0]} but its "
                                                      f"CameraInfo says {camera.width}x{camera.height}")
    K = np.array(camera.K, dtype=np.float64)
    if width and height:
        rgb, K = resize_image(rgb, K, width, height)
    return CameraFrame(np.ascontiguousarray(rgb), K, image_msg.header.frame_id)


def depth_from_message(depth_msg, image_msg, camera: CameraFrame) -> np.ndarray:
    """A depth Image registered to ``image_msg`` -> float32 metres ``[H, W]`` at ``camera``'s
    processing resolution (0 = no return; resized by :func:`ocgs_ros.camera.resize_depth`).

    Raises FrameError (``depth_*``) for a malformed depth image or an unknown encoding, or a size
    (``depth_size_mismatch``) or frame (``depth_frame``) that differs from the colour image's.
    """
    if depth_msg.header.frame_id != image_msg.header.frame_id:
        raise FrameError("depth_frame", f"depth image is in frame {depth_msg.header.frame_id!r}, the camera in "
                                        f"{image_msg.header.frame_id!r}: it must be registered to the colour camera")
    depth = conversions.depth_msg_to_metres(depth_msg)
    if (depth.shape[1], depth.shape[0]) != (image_msg.width, image_msg.height):
        raise FrameError("depth_size_mismatch", f"depth image is {depth.shape[1]}x{depth.shape[0]} but the "
                                                f"colour image is {image_msg.width}x{image_msg.height}")
    height, width = camera.rgb.shape[:2]
    return resize_depth(depth, width, height)


def cloud_points(cloud_msg, with_intensity: bool = False) -> np.ndarray:
    """PointCloud2 -> float32 ``[N, 3]`` (or ``[N, 4]`` with intensity, 0 where the cloud has none).

    Points with a non-finite coordinate (or intensity) are removed. Raises FrameError
    (``pointcloud_*``) for a malformed layout, x/y/z (or intensity) missing, not one number per point
    or not floating point, a cloud without points (``pointcloud_empty``) and one whose every point
    is NaN/inf (``pointcloud_no_finite_points``).
    """
    wanted = ("x", "y", "z", "intensity") if with_intensity else ("x", "y", "z")
    fields = {f.name: f for f in cloud_msg.fields}
    missing = [name for name in ("x", "y", "z") if name not in fields]
    if missing:
        raise FrameError("pointcloud_fields", f"PointCloud2 has no {'/'.join(missing)} field(s) "
                                              f"(fields: {list(fields)})")
    for name in (n for n in wanted if n in fields):
        if fields[name].count != 1:
            raise FrameError("pointcloud_fields", f"PointCloud2 field {name!r} has count {fields[name].count}; "
                                                  "expected one number per point")
    for name in ("x", "y", "z"):  # integer coordinates have no unit we could assume
        if fields[name].datatype not in _FLOAT_DATATYPES:
            raise FrameError("pointcloud_datatype", f"PointCloud2 field {name!r} has datatype "
                                                    f"{fields[name].datatype}; x/y/z must be FLOAT32 or FLOAT64")
    array = conversions.pointcloud2_to_array(cloud_msg, skip_nans=False)
    if len(array) == 0:
        raise FrameError("pointcloud_empty", "PointCloud2 has no points")
    columns = [array["x"], array["y"], array["z"]]
    if with_intensity:
        columns.append(array["intensity"] if "intensity" in fields else np.zeros(len(array)))
    points = np.stack(columns, axis=1).astype(np.float32).reshape(-1, len(columns))
    points = points[np.isfinite(points).all(axis=1)]
    if len(points) == 0:
        raise FrameError("pointcloud_no_finite_points", f"none of the PointCloud2's {len(array)} points is finite")
    return points


def lookup(tf_buffer, target: str, source: str, stamp_ns: int, timeout_s: float) -> np.ndarray:
    """TF lookup -> [4, 4]. Raises FrameError ``tf_frame_id`` (an empty frame id, e.g. a message
    without ``header.frame_id``), ``tf_unknown_frame``, ``tf_not_connected``, ``tf_extrapolation``,
    ``tf_timeout``, ``tf_invalid_argument`` (from the tf2 exception kind; ``tf_lookup`` for any
    other) or ``tf_non_finite``."""
    if not target or not source:
        raise FrameError("tf_frame_id", f"empty frame id in a TF lookup {target!r} <- {source!r}")
    try:
        T = lookup_matrix(tf_buffer, target, source, stamp_ns, timeout_s)
    except transform_exceptions() as exc:
        reason = next((_TF_REASONS[k.__name__] for k in type(exc).__mro__ if k.__name__ in _TF_REASONS),
                      "tf_lookup")
        raise FrameError(reason, f"no transform {target} <- {source} at {stamp_ns * 1e-9:.3f} s: {exc}") from exc
    if not np.all(np.isfinite(T)):
        raise FrameError("tf_non_finite", f"transform {target} <- {source} has NaN/inf")
    return T
