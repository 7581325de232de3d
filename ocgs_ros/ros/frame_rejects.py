"""Bookkeeping for input frames a node drops: one count per reason, a throttled error log, and the
counts in the node's /diagnostics status — shared by the perception nodes so that every node
reports bad input the same way."""
from __future__ import annotations

import numpy as np

from ocgs_ros.ros.diagnostics import NodeDiagnostics
from ocgs_ros.ros.sensor_frames import FrameError

LOG_THROTTLE_S = 2.0  # one bad stream should not flood the log


class FrameRejects:
    def __init__(self, logger, diagnostics: NodeDiagnostics):
        self._logger = logger
        self._diagnostics = diagnostics
        self.counts: dict[str, int] = {}

    def reject(self, error: FrameError) -> None:
        """Count, log and publish one dropped frame."""
        self.counts[error.reason] = self.counts.get(error.reason, 0) + 1
        self._diagnostics.set("rejected", dict(self.counts))
        self._logger.error(f"dropping frame: {error}", throttle_duration_sec=LOG_THROTTLE_S)

    def on_worker_error(self, frame, exc: BaseException) -> None:
        """``LatestWorker`` error callback: a failed frame is dropped, the node keeps running."""
        self.reject(exc if isinstance(exc, FrameError) else FrameError("processing", f"{type(exc).__name__}: {exc}"))

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
        failed and rejected frames, and the median stamp-to-output latency (ms)."""
        s = worker.stats
        lat = np.asarray(latencies_s) * 1e3
        return {
            "frames_synchronised": int(sync.emitted), "frames_processed": s.processed - s.failed,
            "frames_dropped_busy": s.dropped, "frames_failed": s.failed, "rejected": dict(self.counts),
            "dropped_ratio": round(s.dropped_ratio, 4),
            "latency_ms_median": round(float(np.median(lat)), 1) if lat.size else None,
        }
