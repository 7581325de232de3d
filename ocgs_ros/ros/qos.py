"""QoS profiles used across the nodes, named by what they are for."""
from __future__ import annotations

from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)

#: Camera, LiDAR: best effort, shallow queue. A late frame is worth less than the next one.
SENSOR_DATA: QoSProfile = qos_profile_sensor_data

#: Outputs a late subscriber needs at once (CameraInfo-like metadata, maps, object lists).
LATCHED = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)

#: Regular reliable outputs (detections, markers): consumers want every message, no history.
RELIABLE = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=10,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)

#: /tf as tf2_ros publishes and subscribes it.
TF = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=100,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)

#: /tf_static as tf2_ros does: transient local so late joiners get the rig's extrinsics.
TF_STATIC = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)

#: /clock as ROS 2 publishes it.
CLOCK = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.BEST_EFFORT,
    durability=DurabilityPolicy.VOLATILE,
)

_BY_NAME = {
    "sensor_data": SENSOR_DATA,
    "latched": LATCHED,
    "reliable": RELIABLE,
    "tf": TF,
    "tf_static": TF_STATIC,
    "clock": CLOCK,
}


def qos_by_name(name: str) -> QoSProfile:
    """Resolve a QoS profile from a parameter value such as ``"sensor_data"``."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown QoS profile {name!r}; expected one of {sorted(_BY_NAME)}") from None


def qos_for_topic(topic: str) -> QoSProfile:
    """Default QoS for a topic by its conventional name (used by the bag recorder and player)."""
    if topic.endswith("tf_static"):
        return TF_STATIC
    if topic.endswith("/tf") or topic == "tf":
        return TF
    if topic.endswith("clock"):
        return CLOCK
    return RELIABLE
