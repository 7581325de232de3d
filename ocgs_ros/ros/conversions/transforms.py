"""Stamps and rigid transforms: builtin_interfaces/Time <-> int ns, 4x4 ``T_a_b`` <-> geometry_msgs.

Conventions (docs/conventions.md): ``T_a_b`` is a float64 [4, 4] matrix with ``p_a = T_a_b @ p_b``.
A ``TransformStamped`` carrying ``T_a_b`` has ``header.frame_id = a`` (parent) and
``child_frame_id = b``, which is exactly what tf2 means by "the transform from b to a".
ROS quaternions are ``xyzw``; the core uses ``wxyz``; both conversions live here.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Pose, PoseStamped, Quaternion, Transform, TransformStamped, Vector3
from scipy.spatial.transform import Rotation

NS_PER_S = 1_000_000_000
_INT32_MAX = 2**31 - 1
# tf2 rejects quaternions whose squared norm is off by more than ~1e-2; anything closer is just
# float noise (e.g. float32 round trips) and gets normalised.
_UNIT_QUATERNION_TOLERANCE = 1e-2
# Rotation blocks computed in float32 are orthonormal to ~1e-6; 1e-4 still catches real shear/scale.
_ROTATION_TOLERANCE = 1e-4


# --------------------------------------------------------------------------------------------
# Time
# --------------------------------------------------------------------------------------------
def stamp_to_ns(stamp) -> int:
    """``builtin_interfaces/Time`` (or anything with ``sec``/``nanosec``) -> int nanoseconds."""
    try:
        sec, nanosec = int(stamp.sec), int(stamp.nanosec)
    except AttributeError as exc:
        raise TypeError(f"stamp_to_ns needs a builtin_interfaces/Time, got {type(stamp).__name__}") from exc
    if not 0 <= nanosec < NS_PER_S:
        raise ValueError(f"stamp has nanosec={nanosec}, outside [0, 1e9)")
    return sec * NS_PER_S + nanosec


def ns_to_stamp(ns: int) -> Time:
    """int nanoseconds -> ``builtin_interfaces/Time``. Negative or beyond-2038 times are rejected,
    because ``sec`` is an int32 and ROS time is non-negative."""
    if isinstance(ns, (bool, float)) or not isinstance(ns, (int, np.integer)):
        raise TypeError(f"ns_to_stamp needs an integer number of nanoseconds, got {type(ns).__name__}")
    ns = int(ns)
    if ns < 0:
        raise ValueError(f"negative time {ns} ns cannot be a ROS stamp")
    sec, nanosec = divmod(ns, NS_PER_S)
    if sec > _INT32_MAX:
        raise ValueError(f"time {ns} ns overflows builtin_interfaces/Time.sec (int32)")
    return Time(sec=sec, nanosec=nanosec)


def time_to_ns(time) -> int:
    """Any time a caller may hold -> int ns: int ns, ``builtin_interfaces/Time``, ``rclpy.time.Time``."""
    if isinstance(time, (bool, float)):
        raise TypeError(f"times are int nanoseconds, not {type(time).__name__}")
    if isinstance(time, (int, np.integer)):
        return int(time)
    if hasattr(time, "nanoseconds"):  # rclpy.time.Time
        return int(time.nanoseconds)
    return stamp_to_ns(time)


def to_stamp(time) -> Time:
    """Like :func:`time_to_ns` but returns a ``builtin_interfaces/Time`` for a message header."""
    if isinstance(time, Time):
        return Time(sec=time.sec, nanosec=time.nanosec)
    return ns_to_stamp(time_to_ns(time))


# --------------------------------------------------------------------------------------------
# Quaternions
# --------------------------------------------------------------------------------------------
def normalize_quaternion(q: Sequence[float]) -> np.ndarray:
    """Unit quaternion (any component order) as float64 [4]; near-unit input is normalised,
    zero / NaN / clearly non-unit input raises ``ValueError``."""
    q = np.asarray(q, dtype=np.float64)
    if q.shape != (4,):
        raise ValueError(f"a quaternion has 4 components, got shape {q.shape}")
    if not np.all(np.isfinite(q)):
        raise ValueError(f"quaternion {q.tolist()} has NaN/inf components")
    norm = float(np.linalg.norm(q))
    if norm < 1e-12:
        raise ValueError("zero quaternion is not a rotation")
    if abs(norm - 1.0) > _UNIT_QUATERNION_TOLERANCE:
        raise ValueError(f"quaternion {q.tolist()} is not a unit quaternion (norm {norm:.6g})")
    return q / norm


def quaternion_xyzw_to_matrix(q_xyzw: Sequence[float]) -> np.ndarray:
    """ROS ``xyzw`` quaternion -> float64 [3, 3] rotation matrix."""
    return Rotation.from_quat(normalize_quaternion(q_xyzw)).as_matrix()


def matrix_to_quaternion_xyzw(R: np.ndarray) -> np.ndarray:
    """float [3, 3] rotation matrix -> ROS ``xyzw`` quaternion with ``w >= 0``."""
    R = np.asarray(R, dtype=np.float64)
    _check_rotation(R)
    q = Rotation.from_matrix(R).as_quat()
    return -q if q[3] < 0 else q


def xyzw_to_wxyz(q_xyzw: Sequence[float]) -> np.ndarray:
    """ROS order -> core (gsplat) order; works on [..., 4]."""
    q = np.asarray(q_xyzw)
    return np.concatenate([q[..., 3:4], q[..., 0:3]], axis=-1)


def wxyz_to_xyzw(q_wxyz: Sequence[float]) -> np.ndarray:
    """Core (gsplat) order -> ROS order; works on [..., 4]."""
    q = np.asarray(q_wxyz)
    return np.concatenate([q[..., 1:4], q[..., 0:1]], axis=-1)


def _check_rotation(R: np.ndarray) -> None:
    if R.shape != (3, 3):
        raise ValueError(f"rotation matrix must be [3, 3], got {R.shape}")
    if not np.all(np.isfinite(R)):
        raise ValueError("rotation matrix has NaN/inf entries")
    if np.abs(R.T @ R - np.eye(3)).max() > _ROTATION_TOLERANCE or np.linalg.det(R) < 0:
        raise ValueError("rotation block is not a proper rotation (not orthonormal with det +1)")


def check_transform_matrix(T: np.ndarray) -> np.ndarray:
    """Validate a homogeneous rigid transform and return it as float64 [4, 4]."""
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4):
        raise ValueError(f"a transform must be a [4, 4] matrix, got shape {T.shape}")
    if not np.all(np.isfinite(T)):
        raise ValueError("transform matrix has NaN/inf entries")
    if np.abs(T[3] - np.array([0.0, 0.0, 0.0, 1.0])).max() > 1e-9:
        raise ValueError(f"transform's last row must be [0, 0, 0, 1], got {T[3].tolist()}")
    _check_rotation(T[:3, :3])
    return T


def make_transform(R: np.ndarray, t: Sequence[float]) -> np.ndarray:
    """[3, 3] rotation and [3] translation -> float64 [4, 4]."""
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = np.asarray(t, dtype=np.float64).reshape(3)
    return T


def invert_transform(T: np.ndarray) -> np.ndarray:
    """Exact rigid inverse (R^T, -R^T t), cheaper and better conditioned than ``np.linalg.inv``."""
    T = np.asarray(T, dtype=np.float64)
    R_inv = T[:3, :3].T
    return make_transform(R_inv, -R_inv @ T[:3, 3])


# --------------------------------------------------------------------------------------------
# geometry_msgs <-> 4x4
# --------------------------------------------------------------------------------------------
def _xyzw(msg_q) -> np.ndarray:
    return np.array([msg_q.x, msg_q.y, msg_q.z, msg_q.w], dtype=np.float64)


def _quaternion_msg(q: np.ndarray) -> Quaternion:
    return Quaternion(x=float(q[0]), y=float(q[1]), z=float(q[2]), w=float(q[3]))


def _matrix_from_parts(translation, rotation) -> np.ndarray:
    t = np.array([translation.x, translation.y, translation.z], dtype=np.float64)
    if not np.all(np.isfinite(t)):
        raise ValueError(f"translation {t.tolist()} has NaN/inf components")
    return make_transform(quaternion_xyzw_to_matrix(_xyzw(rotation)), t)


def transform_to_matrix(msg: Transform) -> np.ndarray:
    """``geometry_msgs/Transform`` -> float64 [4, 4]."""
    return _matrix_from_parts(msg.translation, msg.rotation)


def matrix_to_transform(T: np.ndarray) -> Transform:
    """float64 [4, 4] -> ``geometry_msgs/Transform``."""
    T = check_transform_matrix(T)
    t = T[:3, 3]
    return Transform(
        translation=Vector3(x=float(t[0]), y=float(t[1]), z=float(t[2])),
        rotation=_quaternion_msg(matrix_to_quaternion_xyzw(T[:3, :3])),
    )


def transform_stamped_to_matrix(msg: TransformStamped) -> np.ndarray:
    """``TransformStamped`` -> ``T_parent_child`` (parent = header.frame_id, child = child_frame_id)."""
    return transform_to_matrix(msg.transform)


def matrix_to_transform_stamped(T_parent_child: np.ndarray, parent_frame: str, child_frame: str,
                                stamp) -> TransformStamped:
    """``T_parent_child`` -> ``TransformStamped`` ready for /tf; ``stamp`` is any time :func:`to_stamp` takes."""
    msg = TransformStamped()
    msg.header.frame_id = parent_frame
    msg.header.stamp = to_stamp(stamp)
    msg.child_frame_id = child_frame
    msg.transform = matrix_to_transform(T_parent_child)
    return msg


def pose_to_matrix(msg: Pose) -> np.ndarray:
    """``geometry_msgs/Pose`` (pose of a body in some frame a) -> ``T_a_body``."""
    return _matrix_from_parts(msg.position, msg.orientation)


def matrix_to_pose(T: np.ndarray) -> Pose:
    """float64 [4, 4] -> ``geometry_msgs/Pose``."""
    T = check_transform_matrix(T)
    pose = Pose()
    pose.position.x, pose.position.y, pose.position.z = (float(v) for v in T[:3, 3])
    pose.orientation = _quaternion_msg(matrix_to_quaternion_xyzw(T[:3, :3]))
    return pose


def pose_stamped_to_matrix(msg: PoseStamped) -> np.ndarray:
    """``PoseStamped`` -> ``T_frame_body`` with frame = header.frame_id."""
    return pose_to_matrix(msg.pose)


def matrix_to_pose_stamped(T_frame_body: np.ndarray, frame_id: str, stamp) -> PoseStamped:
    """``T_frame_body`` -> ``PoseStamped`` in ``frame_id``."""
    msg = PoseStamped()
    msg.header.frame_id = frame_id
    msg.header.stamp = to_stamp(stamp)
    msg.pose = matrix_to_pose(T_frame_body)
    return msg


# --------------------------------------------------------------------------------------------
# Extrinsics from parameters
# --------------------------------------------------------------------------------------------
def rpy_to_matrix(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """Fixed-axis roll (x), pitch (y), yaw (z) as in tf2 ``setRPY`` / static_transform_publisher:
    ``R = Rz(yaw) @ Ry(pitch) @ Rx(roll)``."""
    angles = np.array([roll, pitch, yaw], dtype=np.float64)
    if not np.all(np.isfinite(angles)):
        raise ValueError(f"roll/pitch/yaw {angles.tolist()} has NaN/inf")
    # scipy's lower-case axes are extrinsic (fixed) rotations, applied x then y then z.
    return Rotation.from_euler("xyz", angles).as_matrix()


def transform_from_xyz_rpy(xyz: Sequence[float], rpy: Sequence[float]) -> np.ndarray:
    """Translation [3] and roll/pitch/yaw [3] (radians) -> float64 [4, 4]."""
    xyz = np.asarray(xyz, dtype=np.float64)
    rpy = np.asarray(rpy, dtype=np.float64)
    if xyz.shape != (3,) or rpy.shape != (3,):
        raise ValueError(f"xyz and rpy need 3 values each, got {xyz.shape} and {rpy.shape}")
    if not np.all(np.isfinite(xyz)):
        raise ValueError(f"translation {xyz.tolist()} has NaN/inf")
    return make_transform(rpy_to_matrix(*rpy), xyz)


def transform_from_param_list(values: Sequence[float]) -> np.ndarray:
    """Extrinsics from a node parameter: ``[x, y, z, qx, qy, qz, qw]`` (7 values),
    ``[x, y, z, roll, pitch, yaw]`` (6 values) or a row-major 4x4 matrix (16 values)."""
    values = np.asarray(list(values), dtype=np.float64)
    if values.size == 7:
        if not np.all(np.isfinite(values[:3])):
            raise ValueError(f"translation {values[:3].tolist()} has NaN/inf")
        return make_transform(quaternion_xyzw_to_matrix(values[3:]), values[:3])
    if values.size == 6:
        return transform_from_xyz_rpy(values[:3], values[3:])
    if values.size == 16:
        return check_transform_matrix(values.reshape(4, 4))
    raise ValueError(
        f"extrinsic parameter has {values.size} values; expected 7 (x y z qx qy qz qw), "
        "6 (x y z roll pitch yaw) or 16 (row-major 4x4)"
    )
