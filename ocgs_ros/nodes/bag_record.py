"""bag_record: record topics from DDS into a ROS 2 bag (mcap or sqlite3).

The equivalent of ``ros2 bag record`` for pip-only installs. Messages are stored as received
(CDR bytes, no deserialisation), stamped with the node's clock at reception like ros2 bag, and
the bag appears under its final name only once it is closed.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from ocgs_ros.ros.bags import BagError, BagWriter, message_class
from ocgs_ros.ros.node_main import run_node
from ocgs_ros.ros.params import declare_config
from ocgs_ros.settings import non_negative, one_of, positive, setting

DEFAULT_TOPICS = (
    "/camera/image_raw",
    "/camera/camera_info",
    "/lidar/points",
    "/tf",
    "/tf_static",
)


def _lists_a_topic(value) -> str | None:
    return None if value else "must list at least one topic"


@dataclass(frozen=True)
class BagRecordSettings:
    """bag_record's ROS parameters (config/ocgs.yaml, section ``/**/bag_record``)."""

    output: str = setting("", "Bag folder to write; empty = runs/bag_<timestamp>.")
    storage: str = setting("mcap", "Bag storage format.", one_of("mcap", "sqlite3"))
    topics: tuple[str, ...] = setting(DEFAULT_TOPICS, "Topics to record.", _lists_a_topic)
    discovery_period_s: float = setting(0.5, "How often to look for publishers of topics not yet subscribed.",
                                        positive)
    max_duration_s: float = setting(0.0, "Stop after this long (0 = until shut down).", non_negative)
    max_messages: int = setting(0, "Stop after this many messages in total (0 = no limit).", non_negative)


def qos_matching_publishers(publisher_infos) -> QoSProfile:
    """A subscription QoS compatible with every current publisher, as ros2 bag adapts its QoS:
    reliable only if all publishers are reliable, transient-local only if all are."""
    reliable = all(i.qos_profile.reliability == ReliabilityPolicy.RELIABLE for i in publisher_infos)
    latched = all(i.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL for i in publisher_infos)
    return QoSProfile(
        depth=100,
        reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE,
    )


class BagRecorder(Node):
    #: the settings dataclasses it declares (parameter-file checks read them)
    CONFIG_CLASSES = (BagRecordSettings,)

    def __init__(self, **node_kwargs):
        super().__init__("bag_record", **node_kwargs)
        # Set before anything can raise: destroy_node (→ close) runs even when construction fails.
        self._writer: BagWriter | None = None
        self._closed = False
        self.output: Path | None = None
        self.settings = s = declare_config(self, BagRecordSettings)
        output = s.output or f"runs/bag_{datetime.now():%Y%m%d_%H%M%S}"
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._writer = BagWriter(output, storage=s.storage)
        except BagError as exc:
            raise ValueError(str(exc)) from exc
        self.output = Path(output)
        self.counts: dict[str, int] = {}
        self._topic_subscriptions = {}
        self._started = time.monotonic()
        self.finished = False
        self._timer = self.create_timer(s.discovery_period_s, self._tick)
        self._tick()
        self.get_logger().info(f"recording {list(s.topics)} to {self.output} ({s.storage})")

    def _tick(self) -> None:
        duration = self.settings.max_duration_s
        if duration and time.monotonic() - self._started >= duration:
            self.finished = True
            return
        types = dict(self.get_topic_names_and_types())
        for topic in self.settings.topics:
            if topic in self._topic_subscriptions or topic not in types:
                continue
            msgtype = types[topic][0]
            try:
                cls = message_class(msgtype)
            except BagError as exc:
                self.get_logger().error(f"cannot record {topic}: {exc}", throttle_duration_sec=10.0)
                continue
            publishers = self.get_publishers_info_by_topic(topic)
            if not publishers:
                continue  # the QoS to request follows the publishers: wait until one exists
            qos = qos_matching_publishers(publishers)
            offered = publishers[0].qos_profile
            self._topic_subscriptions[topic] = self.create_subscription(
                cls, topic, lambda data, t=topic, m=msgtype, o=offered: self._on_message(t, m, data, o), qos, raw=True
            )
            self.get_logger().info(f"subscribed to {topic} [{msgtype}]")

    def _on_message(self, topic: str, msgtype: str, data: bytes, offered_qos) -> None:
        if self.finished:
            return
        self._writer.write_serialized(topic, msgtype, self.get_clock().now().nanoseconds, data, offered_qos)
        self.counts[topic] = self.counts.get(topic, 0) + 1
        limit = self.settings.max_messages
        if limit and self._writer.message_count >= limit:
            self.finished = True

    def close(self) -> Path | None:
        """Finalise the bag (idempotent); called from destroy_node so every shutdown path closes it."""
        if not self._closed and self._writer is not None:
            self._closed = True
            self.finished = True
            self._writer.close()
            self.get_logger().info(f"bag closed: {self.output} ({self._writer.message_count} messages: {self.counts})")
        return self.output

    def destroy_node(self):
        self.close()
        super().destroy_node()


def main(args=None) -> None:
    run_node(BagRecorder, "bag_record", args, finished=lambda node: node.finished)


if __name__ == "__main__":
    main()
