"""Time synchronisation of sensor streams with the ``message_filters`` API.

A full ROS 2 install provides ``message_filters``; pip-only installs do not, so this module offers
``Subscriber`` and ``ApproximateTimeSynchronizer`` with the same constructor arguments and
``registerCallback`` semantics, and :func:`make_synchronizer` picks the real package when present.

Matching rule (as message_filters' approximate policy): when a message arrives, every other input
must hold a message whose stamp is within ``slop`` of it, and the whole set must span at most
``slop``; the closest such set is emitted at once. Beyond message_filters, a set is never emitted
out of time order: messages not newer than the last emitted set are stale and dropped (counted in
``dropped_stale``), so a consumer sees monotonically increasing stamps even from a replayed or
reordered stream.
"""
from __future__ import annotations

import bisect
import threading
from typing import Callable

from ocgs_ros.ros.conversions import stamp_to_ns


class SimpleFilter:
    """The callback plumbing shared by message_filters' filters."""

    def __init__(self):
        self._callbacks: list[tuple[Callable, tuple]] = []

    def registerCallback(self, callback: Callable, *args) -> int:  # noqa: N802 - message_filters API
        self._callbacks.append((callback, args))
        return len(self._callbacks) - 1

    def signalMessage(self, *msgs) -> None:  # noqa: N802 - message_filters API
        for callback, args in self._callbacks:
            callback(*(msgs + args))


class Subscriber(SimpleFilter):
    """``message_filters.Subscriber``: a subscription whose messages feed the filters after it."""

    def __init__(self, node, msg_type, topic: str, qos_profile=10, **kwargs):
        super().__init__()
        self.node, self.topic = node, topic
        self.sub = node.create_subscription(msg_type, topic, self.signalMessage, qos_profile, **kwargs)

    def getTopic(self) -> str:  # noqa: N802 - message_filters API
        return self.topic


class ApproximateTimeSynchronizer(SimpleFilter):
    """``message_filters.ApproximateTimeSynchronizer(fs, queue_size, slop, allow_headerless=False)``."""

    def __init__(self, fs, queue_size: int, slop: float, allow_headerless: bool = False):
        super().__init__()
        if queue_size < 1 or slop < 0:
            raise ValueError(f"queue_size must be >= 1 and slop >= 0, got {queue_size}, {slop}")
        if allow_headerless:
            raise ValueError("allow_headerless is not supported: sensor messages carry headers")
        self.queue_size = int(queue_size)
        self.slop_ns = int(round(slop * 1e9))
        self._stamps: list[list[int]] = [[] for _ in fs]  # sorted per input
        self._msgs: list[dict[int, object]] = [{} for _ in fs]
        self._last_emitted_ns: int | None = None
        self._lock = threading.Lock()
        self.dropped_stale = 0
        self.dropped_invalid_stamp = 0
        self.dropped_overflow = 0
        self.emitted = 0
        for index, f in enumerate(fs):
            f.registerCallback(self.add, index)

    def add(self, msg, index: int) -> None:
        """Feed a message of input ``index`` (what the input filters call)."""
        try:
            stamp = stamp_to_ns(msg.header.stamp)
        except ValueError:  # nanosec >= 1e9: raising here would stop the node's executor
            self.dropped_invalid_stamp += 1
            return
        with self._lock:
            if self._last_emitted_ns is not None and stamp <= self._last_emitted_ns:
                self.dropped_stale += 1
                return
            stamps, msgs = self._stamps[index], self._msgs[index]
            if stamp not in msgs:
                bisect.insort(stamps, stamp)
            msgs[stamp] = msg
            while len(stamps) > self.queue_size:
                del msgs[stamps.pop(0)]
                self.dropped_overflow += 1
            matched = self._match(index, stamp)
            if matched is None:
                return
            out = [self._msgs[i][s] for i, s in enumerate(matched)]
            newest = max(matched)
            self._last_emitted_ns = newest
            for i, s in enumerate(matched):  # everything up to the emitted set is used or stale now
                cut = bisect.bisect_right(self._stamps[i], s)
                for old in self._stamps[i][:cut]:
                    del self._msgs[i][old]
                del self._stamps[i][:cut]
            self.emitted += 1
        self.signalMessage(*out)

    def _match(self, index: int, stamp: int) -> list[int] | None:
        matched = []
        for i, stamps in enumerate(self._stamps):
            if i == index:
                matched.append(stamp)
                continue
            pos = bisect.bisect_left(stamps, stamp)
            candidates = [s for s in stamps[max(0, pos - 1):pos + 1] if abs(s - stamp) <= self.slop_ns]
            if not candidates:
                return None
            matched.append(min(candidates, key=lambda s: abs(s - stamp)))
        return matched if max(matched) - min(matched) <= self.slop_ns else None


def make_synchronizer(node, inputs: list[tuple[type, str, object]], queue_size: int, slop: float):
    """Subscribers for ``(msg_type, topic, qos)`` inputs and an approximate-time synchronizer over
    them, from message_filters when installed (a full ROS 2 install), else from this module."""
    try:  # pragma: no cover - exercised only where message_filters is installed
        import message_filters as mf
    except ImportError:
        subscribers = [Subscriber(node, t, topic, qos_profile=q) for t, topic, q in inputs]
        return subscribers, ApproximateTimeSynchronizer(subscribers, queue_size, slop)
    subscribers = [mf.Subscriber(node, t, topic, qos_profile=q) for t, topic, q in inputs]
    return subscribers, mf.ApproximateTimeSynchronizer(subscribers, queue_size, slop)
