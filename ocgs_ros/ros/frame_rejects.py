"""Bookkeeping for input frames a node drops: one count per reason, a rate-limited log that names
every reason at least once, and the counts in the node's /diagnostics status — shared by the
perception nodes so that every node reports bad input the same way."""
from __future__ import annotations

import time
from typing import Callable

from ocgs_ros.ros.diagnostics import NodeDiagnostics, latency_figures
from ocgs_ros.ros.sensor_frames import FrameError

#: Seconds between two log lines of one reason: a bad stream at 30 Hz must not flood the log, yet a
#: new kind of fault is always logged at once (rclpy's own throttle is per call site, which would
#: hide every reason but the first).
LOG_INTERVAL_S = 5.0
#: Reason of a frame that failed inside the processing itself (a bug or a library fault, not bad
#: input): logged as an error, never throttled away on its first occurrence either.
PROCESSING = "processing"


class FrameRejects:
    def __init__(self, logger, diagnostics: NodeDiagnostics, log_interval_s: float = LOG_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic):
        self._logger = logger
        self._diagnostics = diagnostics
        self._log_interval_s = log_interval_s
        self._clock = clock
        self.counts: dict[str, int] = {}
        self._last_logged: dict[str, tuple[float, int]] = {}  # reason -> (time, count at that time)

    def reject(self, error: FrameError) -> None:
        """Count, publish and (rate-limited per reason) log one dropped frame."""
        reason = error.reason
        count = self.counts[reason] = self.counts.get(reason, 0) + 1
        self._diagnostics.set(f"rejected/{reason}", count)
        now = self._clock()
        last = self._last_logged.get(reason)
        if last is not None and now - last[0] < self._log_interval_s:
            return
        since = "" if last is None else f" ({count - last[1]} '{reason}' frames since the last such line)"
        self._last_logged[reason] = (now, count)
        # Two call sites on purpose: rclpy fixes each call site's severity on first use.
        if reason == PROCESSING:
            self._logger.error(f"dropping frame [{reason}]: {error}{since}")
        else:
            self._logger.warning(f"dropping frame [{reason}]: {error}{since}")

    def on_worker_error(self, frame, exc: BaseException) -> None:
        """``LatestWorker`` error callback: a failed frame is dropped, the node keeps running. Bad input
        arrives as FrameError with its reason; anything else is a fault of the processing."""
        self.reject(exc if isinstance(exc, FrameError) else FrameError(PROCESSING, f"{type(exc).__name__}: {exc}"))

    def reject_if_stale(self, now_ns: int, stamp_ns: int, max_age_s: float) -> bool:
        """Drop (and return True) a frame older than ``max_age_s`` against the node clock (0 = no check)."""
        if max_age_s <= 0:
            return False
        age = (now_ns - stamp_ns) * 1e-9
        if age <= max_age_s:
            return False
        self.reject(FrameError("stale", f"frame at {stamp_ns * 1e-9:.3f} s is {age:.2f} s old "
                                        f"(max_input_age_s {max_age_s})"))
        return True

    def frame_stats(self, worker, sync, latencies_s) -> dict:
        """Frame counts both perception nodes report: synchronised, processed, dropped while busy,
        failed and rejected frames, and the stamp-to-output latency median and p90 (ms)."""
        s = worker.stats
        return {
            "frames_synchronised": int(sync.emitted), "frames_processed": s.processed - s.failed,
            "frames_dropped_busy": s.dropped, "frames_failed": s.failed, "rejected": dict(self.counts),
            "dropped_ratio": round(s.dropped_ratio, 4), **latency_figures(latencies_s),
        }
