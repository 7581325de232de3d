"""A worker thread that always processes the newest input: callbacks never block and never queue
without bound.

Sensor callbacks hand work to :meth:`LatestWorker.submit` and return at once. At most one item
waits; a newer one replaces it (the older is counted as dropped), which is what a mapper wants when
an update takes longer than the sensor period: fresh data, bounded latency, no backlog.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Callable


@dataclass
class WorkerStats:
    submitted: int = 0
    processed: int = 0
    dropped: int = 0
    failed: int = 0
    last_duration_s: float = 0.0
    total_duration_s: float = 0.0

    @property
    def dropped_ratio(self) -> float:
        return self.dropped / self.submitted if self.submitted else 0.0

    @property
    def mean_duration_s(self) -> float:
        return self.total_duration_s / self.processed if self.processed else 0.0


class LatestWorker:
    """Run ``process(item)`` on a background thread for the newest submitted item.

    ``on_error(item, exc)`` is called when ``process`` raises; the worker keeps running (one bad
    input must not stop the node).
    """

    def __init__(self, process: Callable[[Any], None], on_error: Callable[[Any, BaseException], None] | None = None,
                 name: str = "latest_worker"):
        self._process = process
        self._on_error = on_error
        self._pending: Any = None
        self._has_pending = False
        self._cond = threading.Condition()
        self._stopping = False
        self._busy = False
        self.stats = WorkerStats()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, item: Any) -> bool:
        """Queue ``item`` (replacing any item still waiting). Returns False if one was replaced."""
        with self._cond:
            if self._stopping:
                raise RuntimeError("worker is stopped")
            replaced = self._has_pending
            if replaced:
                self.stats.dropped += 1
            self._pending, self._has_pending = item, True
            self.stats.submitted += 1
            self._cond.notify()
        return not replaced

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._has_pending and not self._stopping:
                    self._cond.wait()
                if self._stopping and not self._has_pending:
                    return
                item, self._pending, self._has_pending = self._pending, None, False
                self._busy = True
            started = time.perf_counter()
            try:
                self._process(item)
            except Exception as exc:  # noqa: BLE001 - reported, then the next item is processed
                self.stats.failed += 1
                if self._on_error is not None:
                    self._on_error(item, exc)
            finally:
                duration = time.perf_counter() - started
                with self._cond:
                    self._busy = False
                    self.stats.processed += 1
                    self.stats.last_duration_s = duration
                    self.stats.total_duration_s += duration
                    self._cond.notify_all()

    def wait_idle(self, timeout_s: float | None = None) -> bool:
        """Block until nothing is pending or running (for tests and orderly shutdown)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._cond:
            while self._has_pending or self._busy:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    def stop(self, timeout_s: float = 5.0) -> None:
        """Finish the item in hand, drop any waiting one, and join the thread."""
        with self._cond:
            self._stopping = True
            if self._has_pending:
                self._has_pending, self._pending = False, None
                self.stats.dropped += 1
            self._cond.notify_all()
        self._thread.join(timeout_s)
