"""The one-process bring-up's executor: rclpy's ``MultiThreadedExecutor`` with its teardown order
fixed.

rclpy (Kilted) ``MultiThreadedExecutor.shutdown()`` destroys the executor's guard condition first
and joins its thread pool after (``Executor.shutdown`` tests ``_is_shutdown`` right after setting
it, so its wait for outstanding work never runs). A callback handler that a pool thread has just
started triggers that guard condition once it has taken its message, unguarded
(``executors.py``, ``_make_handler``): if the guard is already destroyed, the handler ends with
``InvalidHandle: cannot use Destroyable because destruction was requested``, which nobody
retrieves and which is printed at exit. The narrower the gap between the last callback and the
shutdown (a busy bring-up stopped by a signal), the likelier: test_shutdown hit it about one run
in three. Joining the pool before the base class tears down closes the window.
"""
from __future__ import annotations

from rclpy.executors import MultiThreadedExecutor


class OrderlyMultiThreadedExecutor(MultiThreadedExecutor):
    """``MultiThreadedExecutor`` whose :meth:`shutdown` lets the running callbacks finish (the pool
    joined) before the guard condition they trigger is destroyed. Call it once nothing spins the
    executor any more (no new handler is submitted during the join)."""

    def shutdown(self, timeout_sec: float | None = None, *, wait_for_threads: bool = True) -> bool:
        if wait_for_threads:
            # The base class's pool, which it would join only after destroying the guard. Its
            # threads run handlers already submitted; the join waits for them (a callback in
            # flight is short: the perception nodes hand frames to their own workers).
            self._executor.shutdown(wait=True)
        return super().shutdown(timeout_sec, wait_for_threads=wait_for_threads)
