"""bag_play: replay any ROS 2 bag (mcap or sqlite3) onto DDS, keeping the recorded timing.

The equivalent of ``ros2 bag play`` for pip-only installs, and how recorded real data enters the
mapping and BEV nodes. Messages are published as the recorded CDR bytes (no re-serialisation).
"""
from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass

from rclpy.node import Node
from rclpy.qos import ReliabilityPolicy
from rosgraph_msgs.msg import Clock

from ocgs_ros.ros import qos
from ocgs_ros.ros.bags import BagError, BagReader, message_class
from ocgs_ros.ros.conversions import ns_to_stamp
from ocgs_ros.ros.node_main import run_node
from ocgs_ros.ros.params import declare_config
from ocgs_ros.settings import non_negative, positive, setting


#: how often the wait for subscribers looks at the publishers' match counts (s)
SUBSCRIBER_POLL_S = 0.02


def _names_a_bag(value: str) -> str | None:
    return None if value else "must name a bag folder"


@dataclass(frozen=True)
class BagPlaySettings:
    """bag_play's ROS parameters (config/ocgs.yaml, section ``/**/bag_play``)."""

    bag: str = setting("", "Path of the bag folder to replay (mcap or sqlite3).", _names_a_bag)
    rate: float = setting(1.0, "Playback speed factor (2.0 = twice as fast).", positive)
    loop: bool = setting(False, "Start again from the beginning when the bag ends.")
    topics: tuple[str, ...] = setting((), "Topics to replay; empty = every topic in the bag.")
    force_reliable: bool = setting(False, "Offer every topic reliable, whatever it was recorded with (for "
                                          "consumers that must not lose a message, e.g. offline evaluation).")
    publish_clock: bool = setting(False, "Publish /clock from the bag's timestamps (for use_sim_time consumers).")
    wait_for_subscribers_s: float = setting(0.0, "Before playing, wait up to this long until every topic of "
                                                 "wait_for_topics has its subscribers (0 = start at once); then "
                                                 "play anyway, warning which topics have none.", non_negative)
    # the bring-up fills it with its perception nodes' resolved inputs, so a bag is not played into
    # nodes that have not subscribed yet; a topic listed twice waits for two subscribers
    wait_for_topics: tuple[str, ...] = setting((), "Topics whose subscribers the wait counts (a topic listed n "
                                                   "times waits for n); empty = every replayed topic.")
    min_subscribers: int = setting(1, "Subscribers per topic to wait for at least (see wait_for_subscribers_s).",
                                   positive)
    start_delay_s: float = setting(0.0, "Wait this long after start-up before playing.", non_negative)
    shutdown_when_done: bool = setting(True, "Shut the process down when playback ends (ignored with loop).")


class BagPlayer(Node):
    #: the settings dataclasses it declares (parameter-file checks read them)
    CONFIG_CLASSES = (BagPlaySettings,)

    def __init__(self, **node_kwargs):
        super().__init__("bag_play", **node_kwargs)
        # Set before anything can raise: destroy_node runs even when construction fails.
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._reader: BagReader | None = None
        self.settings = s = declare_config(self, BagPlaySettings)
        try:
            self._reader = BagReader(s.bag)
        except BagError as exc:
            raise ValueError(str(exc)) from exc
        wanted = s.topics or None
        self._topics = {t: m for t, m in self._reader.topics.items() if wanted is None or t in wanted}
        if not self._topics:
            raise ValueError(f"bag {s.bag} has none of the requested topics {list(wanted or ())}")
        self._topic_publishers = {}
        for topic, msgtype in self._topics.items():
            try:
                cls = message_class(msgtype)
            except BagError as exc:
                self.get_logger().error(f"not replaying {topic}: {exc}")
                continue
            profile = self._reader.offered_qos(topic)
            if s.force_reliable:
                profile.reliability = ReliabilityPolicy.RELIABLE
            self._topic_publishers[topic] = self.create_publisher(cls, topic, profile)
        self._clock_pub = self.create_publisher(Clock, "/clock", qos.CLOCK) if s.publish_clock else None
        self.published = 0
        self.done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bag_play", daemon=True)
        self.get_logger().info(
            f"replaying {self._reader.message_count} messages on {len(self._topic_publishers)} topics "
            f"from {s.bag} at x{s.rate}"
        )
        self._thread.start()

    def _subscribers_wanted(self) -> dict[str, int]:
        """Resolved replayed topic -> subscribers to wait for (wait_for_topics, min_subscribers)."""
        s = self.settings
        listed = collections.Counter(self.resolve_topic_name(topic) for topic in s.wait_for_topics)
        replayed = {publisher.topic_name for publisher in self._topic_publishers.values()}
        absent = sorted(set(listed) - replayed)
        if absent:  # typically a remap that does not match the bag's names
            self.get_logger().warning(f"not in the bag, so not waited for: {absent} (bag topics: {sorted(replayed)})")
        wanted = listed if listed else dict.fromkeys(replayed, 1)
        return {topic: max(count, s.min_subscribers) for topic, count in wanted.items() if topic in replayed}

    def _topics_lacking_subscribers(self, wanted: dict[str, int]) -> list[str]:
        """The topics of ``wanted`` whose publisher has fewer matched subscribers than wanted."""
        counts = {publisher.topic_name: publisher.get_subscription_count()
                  for publisher in self._topic_publishers.values()}
        return [topic for topic, count in wanted.items() if counts[topic] < count]

    def _wait_for_subscribers(self) -> None:
        """Player thread (never the executor): bounded by wait_for_subscribers_s, logged once."""
        timeout_s = self.settings.wait_for_subscribers_s
        wanted = self._subscribers_wanted()
        self.get_logger().info(f"waiting up to {timeout_s:.1f} s for subscribers (topic: count) {wanted}")
        deadline = time.monotonic() + timeout_s
        while not self._stop.is_set():
            lacking = self._topics_lacking_subscribers(wanted)
            if not lacking:
                self.get_logger().info("every awaited topic has its subscribers; playing")
                return
            if time.monotonic() >= deadline:
                self.get_logger().warning(f"too few subscribers after {timeout_s:.1f} s on {lacking}; playing anyway")
                return
            self._stop.wait(SUBSCRIBER_POLL_S)

    def _run(self) -> None:
        try:
            self._play()
        except BagError as exc:  # a bag that turns out corrupt mid-way ends playback, not the process
            self.get_logger().error(f"playback stopped: {exc}")
        finally:
            self.done.set()

    def _play(self) -> None:
        if self._stop.wait(self.settings.start_delay_s):
            return
        if self.settings.wait_for_subscribers_s > 0:
            self._wait_for_subscribers()
        rate = self.settings.rate
        while not self._stop.is_set():
            first_stamp = None
            wall_start = time.monotonic()
            for message in self._reader.messages(list(self._topic_publishers)):
                if first_stamp is None:
                    first_stamp = message.stamp_ns
                due = wall_start + (message.stamp_ns - first_stamp) / 1e9 / rate
                if self._stop.wait(max(0.0, due - time.monotonic())):
                    return
                if self._clock_pub is not None:
                    self._clock_pub.publish(Clock(clock=ns_to_stamp(message.stamp_ns)))
                self._topic_publishers[message.topic].publish(message.data)
                self.published += 1
            if not self.settings.loop:
                break
        self.get_logger().info(f"playback finished: {self.published} messages published")

    def destroy_node(self):
        self._stop.set()
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout=2.0)
        if self._reader is not None:
            self._reader.close()
        super().destroy_node()


def main(args=None) -> None:
    run_node(BagPlayer, "bag_play", args,
             finished=lambda node: node.done.is_set() and node.settings.shutdown_when_done, linger_s=0.5)


if __name__ == "__main__":
    main()
