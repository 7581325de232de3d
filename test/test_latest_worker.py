"""LatestWorker: newest input wins, drops are counted, errors do not stop it, submit never blocks."""
from __future__ import annotations

import threading
import time

import pytest

from ocgs_ros.latest_worker import LatestWorker


def test_slow_consumer_sees_the_newest_items_and_drops_are_counted():
    seen = []
    gate = threading.Event()

    def process(item):
        gate.wait(2.0)
        seen.append(item)

    worker = LatestWorker(process)
    worker.submit(0)
    time.sleep(0.05)  # item 0 is now in hand, blocked on the gate
    started = time.perf_counter()
    for item in range(1, 6):
        worker.submit(item)
    assert time.perf_counter() - started < 0.05  # submit never waits for the worker
    gate.set()
    assert worker.wait_idle(5.0)
    assert seen == [0, 5]
    assert worker.stats.dropped == 4 and worker.stats.processed == 2
    assert worker.stats.dropped_ratio == pytest.approx(4 / 6)
    worker.stop()


def test_errors_are_reported_and_the_worker_goes_on():
    errors, seen = [], []

    def process(item):
        if item == "bad":
            raise ValueError("malformed input")
        seen.append(item)

    worker = LatestWorker(process, on_error=lambda item, exc: errors.append((item, str(exc))))
    worker.submit("bad")
    assert worker.wait_idle(5.0)
    worker.submit("good")
    assert worker.wait_idle(5.0)
    assert errors == [("bad", "malformed input")] and seen == ["good"]
    assert worker.stats.failed == 1
    worker.stop()
    with pytest.raises(RuntimeError):
        worker.submit("late")
