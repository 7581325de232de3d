"""Synchronised sensor messages -> the numpy inputs of the core libraries, with every check a live
stream needs. One bad message raises :class:`FrameError` (a ValueError naming what is wrong and
a short ``reason`` key for counters); the node logs it, drops the frame and carries on.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ocgs_ros.camera import resize_depth, resize_image
from ocgs_ros.ros import conversions
from ocgs_ros.ros.tf import lookup_matrix, transform_exceptions


class FrameError(ValueError):
    """A sensor frame that cannot be used; ``reason`` is a short key (``encoding``, ``tf``, ...)."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass
class CameraFrame:
    rgb: np.ndarray  # uint8 [H, W, 3] at the processing resolution
    K: np.ndarray  # [3, 3] for that resolution (project convention: pixel centres at integers)
    frame_id: str


def camera_from_messages(image_msg, info_msg, width: int = 0, height: int = 0) -> CameraFrame:
    """Image + CameraInfo -> RGB and intrinsics, resized to ``width`` x ``height`` when given (0 = keep).

    Raises FrameError for an unknown/non-colour encoding, a truncated buffer, a missing or invalid
    CameraInfo, or an image whose size differs from its CameraInfo.
    """
    if info_msg is None:
        raise FrameError("camera_info", "no CameraInfo for this image")
    try:
        rgb = conversions.image_msg_to_rgb(image_msg)
    except (conversions.CvBridgeError, ValueError, TypeError) as exc:
        raise FrameError("encoding", f"image ({image_msg.encoding!r}, {image_msg.width}x{image_msg.height}) "
                                     f"cannot be read: {exc}") from exc
    try:
        camera = conversions.camera_info_to_model(info_msg)
    except ValueError as exc:
        raise FrameError("camera_info", f"invalid CameraInfo: {exc}") from exc
    if (camera.width, camera.height) != (rgb.shape[1], rgb.shape[0]):
        raise FrameError("camera_info", f"image is {rgb.shape[1]}x{rgb.shape[0]} but its CameraInfo says "
                                        f"{camera.width}x{camera.height}")
    K = np.array(camera.K, dtype=np.float64)
    if width and height:
        rgb, K = resize_image(rgb, K, width, height)
    return CameraFrame(np.ascontiguousarray(rgb), K, image_msg.header.frame_id)


def depth_from_message(depth_msg, image_msg, camera: CameraFrame) -> np.ndarray:
    """A depth Image registered to ``image_msg`` -> float32 metres ``[H, W]`` at ``camera``'s
    processing resolution (0 = no return; resized by :func:`ocgs_ros.camera.resize_depth`).

    Raises FrameError ("depth") for an unknown encoding, a truncated buffer, or a size or frame
    that differs from the colour image's.
    """
    if depth_msg.header.frame_id != image_msg.header.frame_id:
        raise FrameError("depth", f"depth image is in frame {depth_msg.header.frame_id!r}, the camera in "
                                  f"{image_msg.header.frame_id!r}: it must be registered to the colour camera")
    try:
        depth = conversions.depth_msg_to_metres(depth_msg)
    except (conversions.CvBridgeError, ValueError, TypeError) as exc:
        raise FrameError("depth", f"depth image ({depth_msg.encoding!r}, {depth_msg.width}x{depth_msg.height}) "
                                  f"cannot be read: {exc}") from exc
    if (depth.shape[1], depth.shape[0]) != (image_msg.width, image_msg.height):
        raise FrameError("depth", f"depth image is {depth.shape[1]}x{depth.shape[0]} but the colour image is "
                                  f"{image_msg.width}x{image_msg.height}")
    height, width = camera.rgb.shape[:2]
    return resize_depth(depth, width, height)


def cloud_points(cloud_msg, with_intensity: bool = False) -> np.ndarray:
    """PointCloud2 -> float32 ``[N, 3]`` (or ``[N, 4]`` with intensity, 0 where the cloud has none).

    Non-finite points are removed; a malformed layout or an empty result raises FrameError.
    """
    try:
        array = conversions.pointcloud2_to_array(cloud_msg, skip_nans=True)
    except (ValueError, TypeError) as exc:
        raise FrameError("pointcloud", f"malformed PointCloud2: {exc}") from exc
    names = array.dtype.names or ()
    if not {"x", "y", "z"} <= set(names):
        raise FrameError("pointcloud", f"PointCloud2 has no x/y/z fields (fields: {list(names)})")
    columns = [array["x"], array["y"], array["z"]]
    if with_intensity:
        columns.append(array["intensity"] if "intensity" in names else np.zeros(len(array)))
    points = np.stack(columns, axis=1).astype(np.float32).reshape(-1, len(columns))
    points = points[np.isfinite(points).all(axis=1)]
    if len(points) == 0:
        raise FrameError("empty_cloud", "PointCloud2 has no finite points")
    return points


def subsample_points(points: np.ndarray, max_points: int, rng: np.random.Generator) -> np.ndarray:
    """At most ``max_points`` rows of ``points`` (a random subset in the original order; 0 = all):
    bounded work per frame."""
    if not max_points or len(points) <= max_points:
        return points
    return points[np.sort(rng.choice(len(points), max_points, replace=False))]


def lookup(tf_buffer, target: str, source: str, stamp_ns: int, timeout_s: float) -> np.ndarray:
    """TF lookup -> [4, 4]; a missing/extrapolated transform raises FrameError('tf', ...)."""
    try:
        T = lookup_matrix(tf_buffer, target, source, stamp_ns, timeout_s)
    except transform_exceptions() as exc:
        raise FrameError("tf", f"no transform {target} <- {source} at {stamp_ns * 1e-9:.3f} s: {exc}") from exc
    if not np.all(np.isfinite(T)):
        raise FrameError("tf", f"transform {target} <- {source} has NaN/inf")
    return T


def transform_points(T: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply ``T`` [4, 4] to the xyz columns of ``points`` [N, 3+k] (extra columns kept)."""
    out = points.copy()
    out[:, :3] = (points[:, :3].astype(np.float64) @ T[:3, :3].T + T[:3, 3]).astype(points.dtype)
    return out


def in_view(points_cam: np.ndarray, K: np.ndarray, width: int, height: int, min_depth: float = 1e-3) -> np.ndarray:
    """Mask of the camera-frame points that project inside a ``width`` x ``height`` image."""
    z = points_cam[:, 2]
    front = z > min_depth
    with np.errstate(divide="ignore", invalid="ignore"):
        u = K[0, 0] * points_cam[:, 0] / z + K[0, 2]
        v = K[1, 1] * points_cam[:, 1] / z + K[1, 2]
    return front & (u >= -0.5) & (u < width - 0.5) & (v >= -0.5) & (v < height - 0.5)
