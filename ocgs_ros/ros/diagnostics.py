"""Node health on /diagnostics (``diagnostic_msgs/DiagnosticArray``) and in the log: input rates,
processing latency, dropped frames — what an operator checks first when a map stops updating."""
from __future__ import annotations

import collections
import time
from typing import Callable, Iterable

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

from ocgs_ros.ros import qos


#: Latency samples a node keeps (the most recent ones): enough for a steady median/p90 over the last
#: minutes at 1-10 Hz, bounded so a node that runs for days holds constant memory.
LATENCY_WINDOW = 200


def latency_window() -> collections.deque:
    """An empty bounded sample store for latencies (seconds): what nodes append to."""
    return collections.deque(maxlen=LATENCY_WINDOW)


def latency_figures(latencies_s: Iterable[float]) -> dict:
    """Median and p90 (ms, 0.1 ms resolution; None without samples) of ``latencies_s``. numpy's
    linear-interpolation percentile, so p90 >= median for any number of samples."""
    ms = np.fromiter(latencies_s, dtype=np.float64) * 1e3
    if ms.size == 0:
        return {"latency_ms_median": None, "latency_ms_p90": None}
    median, p90 = np.percentile(ms, [50.0, 90.0])
    return {"latency_ms_median": round(float(median), 1), "latency_ms_p90": round(float(p90), 1)}


class RateMeter:
    """Messages per second over a sliding window of arrival times."""

    def __init__(self, window_s: float = 5.0, clock: Callable[[], float] = time.monotonic):
        self.window_s = window_s
        self._clock = clock
        self._times: collections.deque[float] = collections.deque()
        self.count = 0

    def tick(self) -> None:
        self.count += 1
        self._times.append(self._clock())

    def rate_hz(self) -> float:
        now = self._clock()
        while self._times and now - self._times[0] > self.window_s:
            self._times.popleft()
        if len(self._times) < 2:
            return 0.0
        return (len(self._times) - 1) / max(self._times[-1] - self._times[0], 1e-9)


class NodeDiagnostics:
    """Collects a node's figures and publishes them every ``period_s``.

    Level WARN when an input runs below half its expected rate or more than half of the frames are
    dropped; ERROR when an expected input has gone silent for a whole window.
    """

    def __init__(self, node, name: str, period_s: float = 2.0, expected_rates_hz: dict[str, float] | None = None,
                 window_s: float = 5.0, log_every_s: float = 30.0):
        self.node = node
        self.name = name
        self.expected = dict(expected_rates_hz or {})
        self.window_s = window_s
        self.rates: dict[str, RateMeter] = {k: RateMeter(window_s) for k in self.expected}
        self.latencies_s: collections.deque[float] = latency_window()
        self.values: dict[str, object] = {}
        self.frames_in = 0
        self.frames_dropped = 0
        self._pub = node.create_publisher(DiagnosticArray, "/diagnostics", qos.RELIABLE)
        self._log_every_s = log_every_s
        self._last_log = time.monotonic()
        self._timer = node.create_timer(period_s, self.publish)

    def tick(self, input_name: str) -> None:
        self.rates.setdefault(input_name, RateMeter(self.window_s)).tick()

    def frame(self, dropped: bool) -> None:
        self.frames_in += 1
        self.frames_dropped += int(dropped)

    def latency(self, seconds: float) -> None:
        self.latencies_s.append(seconds)

    def set(self, key: str, value) -> None:
        self.values[key] = value

    def summary(self) -> dict:
        return {
            **{f"rate_hz/{k}": round(m.rate_hz(), 2) for k, m in self.rates.items()},
            **latency_figures(self.latencies_s),
            "frames_in": self.frames_in,
            "frames_dropped": self.frames_dropped,
            "dropped_ratio": round(self.frames_dropped / self.frames_in, 3) if self.frames_in else 0.0,
            **self.values,
        }

    def level_and_message(self, summary: dict) -> tuple[bytes, str]:
        problems, level = [], DiagnosticStatus.OK
        for name, expected in self.expected.items():
            rate = summary.get(f"rate_hz/{name}", 0.0)
            if rate == 0.0:
                problems.append(f"no {name}")
                level = DiagnosticStatus.ERROR
            elif rate < 0.5 * expected:
                problems.append(f"{name} at {rate:.1f} Hz (expected {expected:.1f})")
                level = max(level, DiagnosticStatus.WARN)
        if summary["dropped_ratio"] > 0.5:
            problems.append(f"dropping {summary['dropped_ratio']:.0%} of frames")
            level = max(level, DiagnosticStatus.WARN)
        return level, "; ".join(problems) or "ok"

    def publish(self) -> DiagnosticArray:
        summary = self.summary()
        level, message = self.level_and_message(summary)
        status = DiagnosticStatus(level=level, name=f"{self.node.get_name()}: {self.name}", message=message,
                                  hardware_id=self.node.get_name(),
                                  values=[KeyValue(key=k, value=str(v)) for k, v in summary.items()])
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.node.get_clock().now().to_msg()
        self._pub.publish(array)
        if time.monotonic() - self._last_log >= self._log_every_s or level != DiagnosticStatus.OK:
            self._last_log = time.monotonic()
            text = ", ".join(f"{k}={v}" for k, v in summary.items())
            log = self.node.get_logger()
            # Two call sites on purpose: rclpy remembers each call site's severity and raises
            # ("Logger severity cannot be changed between calls") — killing the node's timer — when
            # one call site logs at INFO once and at WARN later.
            if level == DiagnosticStatus.OK:
                log.info(f"{message} | {text}", throttle_duration_sec=10.0)
            else:
                log.warning(f"{message} | {text}", throttle_duration_sec=10.0)
        return array
