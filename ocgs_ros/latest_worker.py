"""A worker thread that always processes the newest input: callbacks never block and never queue
without bound.

Sensor callbacks hand work to :meth:`LatestWorker.submit` and return at once. At most one item
waits; a newer one replaces it (the older is counted as dropped), which is what a mapper wants when
an update takes longer than the sensor period: fresh data, bounded latency, no backlog.

Shutdown is bounded: :meth:`LatestWorker.request_stop` with a grace period caps how long any later
:meth:`LatestWorker.stop` waits for the item in hand, so a node whose frame takes seconds still
stops within what ``ros2 launch`` allows before it escalates to SIGTERM and SIGKILL.
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
    #: items that raised after a stop was requested (publishers or the context going away under
    #: them): shutdown, not bad input, so neither ``failed`` nor reported to ``on_error``
    interrupted: int = 0
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
    input must not stop the node). A long ``process`` may poll :attr:`stop_requested` to end early.
    """

    def __init__(self, process: Callable[[Any], None], on_error: Callable[[Any, BaseException], None] | None = None,
                 name: str = "latest_worker"):
        self._process = process
        self._on_error = on_error
        self._pending: Any = None
        self._has_pending = False
        self._cond = threading.Condition()
        self._stopping = False
        #: monotonic time after which stop() no longer waits for the item in hand (None: no cap)
        self._stop_deadline: float | None = None
        self._busy = False
        self.stats = WorkerStats()
        # A daemon thread, so an item abandoned at shutdown cannot keep the process alive.
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    @property
    def stop_requested(self) -> bool:
        return self._stopping

    @property
    def running(self) -> bool:
        """The thread is alive (still processing after a stop request when the item was abandoned)."""
        return self._thread.is_alive()

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
            interrupted = False
            try:
                self._process(item)
            except Exception as exc:  # noqa: BLE001 - reported, then the next item is processed
                with self._cond:
                    interrupted = self._stopping
                    if interrupted:
                        self.stats.interrupted += 1
                    else:
                        self.stats.failed += 1
                if not interrupted and self._on_error is not None:
                    self._on_error(item, exc)
            finally:
                duration = time.perf_counter() - started
                with self._cond:
                    self._busy = False
                    if not interrupted:
                        self.stats.processed += 1
                        self.stats.last_duration_s = duration
                        self.stats.total_duration_s += duration
                    self._cond.notify_all()

    def idle(self) -> bool:
        """Nothing pending and nothing in progress, now."""
        with self._cond:
            return not (self._has_pending or self._busy)

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

    def request_stop(self, grace_s: float | None = None) -> None:
        """Take no more items and drop the waiting one, without blocking (idempotent).

        The item in hand may still finish. With ``grace_s``, no later :meth:`stop` waits for it
        beyond ``grace_s`` seconds from now, whatever timeout the caller gives (the earliest
        deadline of several requests holds).
        """
        with self._cond:
            self._stopping = True
            if self._has_pending:
                self._has_pending, self._pending = False, None
                self.stats.dropped += 1
            if grace_s is not None:
                deadline = time.monotonic() + grace_s
                self._stop_deadline = deadline if self._stop_deadline is None else min(self._stop_deadline, deadline)
            self._cond.notify_all()

    def stop(self, timeout_s: float = 5.0) -> bool:
        """Finish the item in hand, drop any waiting one, and join the thread.

        Waits at most ``timeout_s``, and never past the grace deadline of an earlier
        :meth:`request_stop`. Returns whether the thread ended; if not, the item in hand is
        abandoned to the daemon thread (its errors count as ``interrupted``).
        """
        self.request_stop()
        wait_s = timeout_s
        if self._stop_deadline is not None:
            wait_s = min(wait_s, max(0.0, self._stop_deadline - time.monotonic()))
        self._thread.join(wait_s)
        return not self._thread.is_alive()
