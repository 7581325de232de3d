"""/tf plumbing with the tf2_ros API: a buffer and a listener.

In a normal ROS 2 install these are tf2_ros' own classes. In a pip-only install (no tf2_ros
wheel) they are the small equivalents here, built on :class:`ocgs_ros.ros.tf_buffer.TfBuffer`
and the locally built ``tf2_msgs`` (scripts/build_interfaces.sh). Callers use
:func:`make_tf_buffer` and :func:`make_transform_listener` and never need to know which they got.
(Publishers of /tf send ``tf2_msgs/TFMessage`` on the QoS in :mod:`ocgs_ros.ros.qos`.)
"""
from __future__ import annotations

from geometry_msgs.msg import TransformStamped
from rclpy.node import Node

from ocgs_ros.ros import qos
from ocgs_ros.ros.tf_buffer import make_tf_buffer  # noqa: F401 - re-exported: one import for TF users

try:  # pragma: no cover - exercised only in a full ROS 2 install
    import tf2_ros as _tf2_ros
except ImportError:
    _tf2_ros = None


class TransformListener:
    """Feeds /tf and /tf_static into a buffer (tf2_ros.TransformListener without its spin thread:
    the node's executor delivers the callbacks)."""

    def __init__(self, buffer, node: Node, tf_topic: str = "/tf", tf_static_topic: str = "/tf_static"):
        from tf2_msgs.msg import TFMessage

        self.buffer = buffer
        self._node = node
        self._subs = [
            node.create_subscription(TFMessage, tf_topic, self._on_tf, qos.TF),
            node.create_subscription(TFMessage, tf_static_topic, self._on_tf_static, qos.TF_STATIC),
        ]

    def _on_tf(self, msg) -> None:
        for transform in msg.transforms:
            self._set(transform, is_static=False)

    def _on_tf_static(self, msg) -> None:
        for transform in msg.transforms:
            self._set(transform, is_static=True)

    def _set(self, transform: TransformStamped, is_static: bool) -> None:
        # One bad transform (NaN quaternion, empty frame id) must not kill the listener.
        try:
            if is_static:
                self.buffer.set_transform_static(transform, "default_authority")
            else:
                self.buffer.set_transform(transform, "default_authority")
        except Exception as exc:  # noqa: BLE001 - log and drop, as tf2 does
            self._node.get_logger().warning(
                f"dropping transform {transform.header.frame_id!r} -> {transform.child_frame_id!r}: {exc}",
                throttle_duration_sec=5.0,
            )

    def unregister(self) -> None:
        for sub in self._subs:
            self._node.destroy_subscription(sub)
        self._subs = []


def make_transform_listener(buffer, node: Node):
    if _tf2_ros is not None:  # pragma: no cover
        return _tf2_ros.TransformListener(buffer, node, spin_thread=False)
    return TransformListener(buffer, node)


def lookup_matrix(buffer, target_frame: str, source_frame: str, stamp_ns: int, timeout_s: float = 0.0):
    """``T_target_source`` (float64 [4, 4]) at ``stamp_ns`` from either buffer kind (tf2_ros.Buffer has
    no ``lookup_matrix``); raises the buffer's TransformException when it cannot be resolved."""
    from rclpy.duration import Duration
    from rclpy.time import Time

    from ocgs_ros.ros.conversions import transform_stamped_to_matrix

    if hasattr(buffer, "lookup_matrix"):
        return buffer.lookup_matrix(target_frame, source_frame, int(stamp_ns), timeout=timeout_s or None)
    transform = buffer.lookup_transform(target_frame, source_frame, Time(nanoseconds=int(stamp_ns)),
                                        timeout=Duration(nanoseconds=int(timeout_s * 1e9)))
    return transform_stamped_to_matrix(transform)


def transform_exceptions() -> tuple[type[BaseException], ...]:
    """The exception types a TF lookup raises, for either buffer kind."""
    from ocgs_ros.ros import tf_buffer

    types: list[type[BaseException]] = [tf_buffer.TransformException]
    if _tf2_ros is not None:  # pragma: no cover
        types.append(_tf2_ros.TransformException)
    return tuple(types)
