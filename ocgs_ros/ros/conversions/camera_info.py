"""sensor_msgs/CameraInfo <-> a small pinhole model, plus OpenCV undistortion helpers.

An unusable CameraInfo raises :class:`~ocgs_ros.mapping.errors.FrameRejected` (a ValueError) whose
``reason`` names the part at fault: ``camera_info_size``, ``camera_info_k``,
``camera_info_distortion`` or ``camera_info_projection``.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from sensor_msgs.msg import CameraInfo

from ocgs_ros.mapping.errors import FrameRejected
from ocgs_ros.ros.conversions.transforms import to_stamp

PLUMB_BOB = "plumb_bob"
RATIONAL_POLYNOMIAL = "rational_polynomial"
EQUIDISTANT = "equidistant"
# Coefficient counts OpenCV's pinhole model accepts (k1 k2 p1 p2 [k3 [k4 k5 k6 [s1..s4 [tx ty]]]]).
_OPENCV_PINHOLE_LENGTHS = (4, 5, 8, 12, 14)


@dataclass(frozen=True)
class PinholeCamera:
    """Intrinsics of one camera as the core uses them.

    ``K`` float64 [3, 3] (pixel centres at integer coordinates), ``D`` float64 [n] distortion
    coefficients of ``distortion_model``, ``P`` float64 [3, 4] rectified projection matrix.
    """

    width: int
    height: int
    K: np.ndarray
    D: np.ndarray
    distortion_model: str
    P: np.ndarray
    frame_id: str

    @property
    def fx(self) -> float:
        return float(self.K[0, 0])

    @property
    def fy(self) -> float:
        return float(self.K[1, 1])

    @property
    def cx(self) -> float:
        return float(self.K[0, 2])

    @property
    def cy(self) -> float:
        return float(self.K[1, 2])

    @property
    def has_distortion(self) -> bool:
        return bool(np.any(self.D != 0.0))


def _validated_intrinsics(K, width: int, height: int) -> np.ndarray:
    K = np.asarray(K, dtype=np.float64).reshape(-1)
    if K.size != 9:
        raise FrameRejected("camera_info_k", f"K must have 9 entries (3x3), got {K.size}")
    K = K.reshape(3, 3)
    if not np.all(np.isfinite(K)):
        raise FrameRejected("camera_info_k", "camera K has NaN/inf entries")
    if int(width) <= 0 or int(height) <= 0:
        raise FrameRejected("camera_info_size", f"camera size must be positive, got width={width} height={height}")
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        raise FrameRejected("camera_info_k", f"camera focal lengths must be positive, got fx={K[0, 0]} "
                                             f"fy={K[1, 1]} (uncalibrated camera?)")
    if not np.allclose(K[2], [0.0, 0.0, 1.0]):
        raise FrameRejected("camera_info_k", f"camera K's last row must be [0, 0, 1], got {K[2].tolist()}")
    return K


def _validated_distortion(D, model: str) -> np.ndarray:
    """D as float64 [n]; rejects NaN/inf, and non-zero coefficients that no known model can interpret
    (all-zero D means "no distortion" whatever the model string says, as many drivers send it)."""
    D = np.asarray(D, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(D)):
        raise FrameRejected("camera_info_distortion", "camera distortion D has NaN/inf entries")
    if not D.any():
        return D
    lengths = {PLUMB_BOB: _OPENCV_PINHOLE_LENGTHS, RATIONAL_POLYNOMIAL: _OPENCV_PINHOLE_LENGTHS,
               EQUIDISTANT: (4,)}.get(model)
    if lengths is None:
        raise FrameRejected("camera_info_distortion", f"unknown distortion model {model!r} with non-zero "
                                                      f"coefficients (known: {PLUMB_BOB}, {RATIONAL_POLYNOMIAL}, "
                                                      f"{EQUIDISTANT})")
    if D.size not in lengths:
        raise FrameRejected("camera_info_distortion", f"{model} distortion with {D.size} coefficients; "
                                                      f"expected {' or '.join(map(str, lengths))}")
    return D


def camera_info_to_model(msg: CameraInfo) -> PinholeCamera:
    """CameraInfo -> :class:`PinholeCamera`; raises :class:`FrameRejected` for zero size,
    non-positive focal lengths (an all-zero K is ROS' "uncalibrated"), NaN/inf in K, D or P, and
    non-zero distortion coefficients of an unknown model or of the wrong count.

    An all-zero P (drivers that only fill K) is replaced by ``[K | 0]``.
    """
    K = _validated_intrinsics(msg.k, msg.width, msg.height)
    D = _validated_distortion(msg.d, msg.distortion_model)
    P = np.asarray(msg.p, dtype=np.float64).reshape(-1)
    if P.size != 12 or not np.all(np.isfinite(P)):
        raise FrameRejected("camera_info_projection", f"camera projection P has NaN/inf entries or not 12 "
                                                      f"(3x4) of them: {P.tolist()}")
    P = P.reshape(3, 4)
    if not P.any():
        P = np.hstack([K, np.zeros((3, 1))])
    return PinholeCamera(width=int(msg.width), height=int(msg.height), K=K, D=D,
                         distortion_model=msg.distortion_model, P=P, frame_id=msg.header.frame_id)


def make_camera_info(K: np.ndarray, width: int, height: int, frame_id: str, stamp, D=None,
                     distortion_model: str = PLUMB_BOB) -> CameraInfo:
    """Monocular CameraInfo: ``R = I``, ``P = [K | 0]``, ``D`` zeros (5 for plumb_bob) when not given."""
    K = _validated_intrinsics(K, width, height)
    if D is None:
        D = np.zeros(5 if distortion_model == PLUMB_BOB else 8 if distortion_model == RATIONAL_POLYNOMIAL else 4)
    D = _validated_distortion(D, distortion_model)
    msg = CameraInfo()
    msg.header.frame_id = frame_id
    msg.header.stamp = to_stamp(stamp)
    msg.width, msg.height = int(width), int(height)
    msg.distortion_model = distortion_model
    msg.d = [float(v) for v in D]
    msg.k = [float(v) for v in K.reshape(-1)]
    msg.r = [float(v) for v in np.eye(3).reshape(-1)]
    msg.p = [float(v) for v in np.hstack([K, np.zeros((3, 1))]).reshape(-1)]
    return msg


def _opencv_coefficients(camera: PinholeCamera) -> np.ndarray:
    if camera.distortion_model == EQUIDISTANT:
        if camera.D.size != 4:
            raise ValueError(f"equidistant distortion needs 4 coefficients, got {camera.D.size}")
        return camera.D
    if camera.distortion_model in (PLUMB_BOB, RATIONAL_POLYNOMIAL):
        if camera.D.size not in _OPENCV_PINHOLE_LENGTHS:
            raise ValueError(f"{camera.distortion_model} distortion with {camera.D.size} coefficients; "
                             f"OpenCV takes {_OPENCV_PINHOLE_LENGTHS}")
        return camera.D
    raise ValueError(f"cannot undistort distortion model {camera.distortion_model!r}")


def undistort_points(camera: PinholeCamera, uv: np.ndarray) -> np.ndarray:
    """Distorted pixel coordinates ``[N, 2]`` -> where they land in the ideal pinhole image with the
    same ``K`` (float64 ``[N, 2]``). Without distortion the input is returned as a copy."""
    uv = np.asarray(uv, dtype=np.float64)
    if uv.ndim != 2 or uv.shape[1] != 2:
        raise ValueError(f"pixel coordinates must be [N, 2], got {uv.shape}")
    if not camera.has_distortion or uv.shape[0] == 0:
        return uv.copy()
    D = _opencv_coefficients(camera)
    points = uv.reshape(-1, 1, 2)
    if camera.distortion_model == EQUIDISTANT:
        out = cv2.fisheye.undistortPoints(points, camera.K, D, P=camera.K)
    else:
        out = cv2.undistortPoints(points, camera.K, D, P=camera.K)
    return out.reshape(-1, 2).astype(np.float64)


def undistort_image(camera: PinholeCamera, image: np.ndarray) -> np.ndarray:
    """Resample ``image`` (``[H, W]`` or ``[H, W, C]`` of the camera's size) into the ideal pinhole
    image with the same ``K``. Without distortion the input is returned as a copy."""
    image = np.asarray(image)
    if image.shape[:2] != (camera.height, camera.width):
        raise ValueError(f"image is {image.shape[:2]} but the camera is {(camera.height, camera.width)}")
    if not camera.has_distortion:
        return image.copy()
    D = _opencv_coefficients(camera)
    if camera.distortion_model == EQUIDISTANT:
        return cv2.fisheye.undistortImage(image, camera.K, D, Knew=camera.K)
    return cv2.undistort(image, camera.K, D)
