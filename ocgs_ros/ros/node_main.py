"""The one ``main()`` every ocgs_ros node uses: init, construct, spin, ordered teardown; and the
shutdown pieces the one-process bring-up shares with it.

Shutdown order, on SIGINT or SIGTERM alike: stop dispatching callbacks, give each worker thread a
short grace to finish its frame in hand, destroy the nodes (timers and publishers go while the
context is still valid), then shut the context down. rclpy's own signal handlers are not used:
they shut the context down inside the handler, under timers and workers that are still
publishing, and a second Ctrl-C raises KeyboardInterrupt wherever teardown happens to be.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Callable, Iterable

import rclpy
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.impl.implementation_singleton import rclpy_implementation
from rclpy.signals import SignalHandlerOptions

from ocgs_ros.latest_worker import LatestWorker

#: seconds a worker may keep its frame in hand once shutdown is requested; ros2 launch escalates to
#: SIGTERM after 5 s, and a process should be gone well before (a mapping frame can take seconds)
SHUTDOWN_GRACE_S = 1.0
#: exit status for a node or command that cannot start (bad parameters, files or paths)
START_UP_FAILURE = 2
#: what a constructor raises for bad parameters, files or paths: one line and exit 2, no traceback.
#: ParameterException covers a value of the wrong type for a parameter not declared through
#: ``declare_config`` (which already turns those into ValueError).
START_UP_ERRORS = (ValueError, ParameterException, OSError)
RCLError = rclpy_implementation.RCLError


class ShutdownRequest:
    """SIGINT / SIGTERM → one shutdown request; repeated signals are ignored (teardown is already
    under way and bounded). :meth:`install` only works in the main thread, as Python's signals do."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self._event = threading.Event()
        self.signal_name: str | None = None
        self._previous: dict[int, object] = {}

    def install(self) -> ShutdownRequest:
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._on_signal)
        return self

    def uninstall(self) -> None:
        """Put back the handlers :meth:`install` replaced."""
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _on_signal(self, signum, _frame) -> None:
        if not self._event.is_set():
            self.signal_name = signal.Signals(signum).name
            self._event.set()

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout_s: float) -> bool:
        """Sleep up to ``timeout_s``, waking early on a request; returns whether one came."""
        return self._event.wait(timeout_s)


def init_ros(args: list[str] | None, name: str) -> None:
    """``rclpy.init`` without rclpy's signal handlers; malformed ROS arguments or an unreadable
    parameter file end the process with one line and exit 2."""
    ros_args = sys.argv if args is None else args
    for flag, value in zip(ros_args, ros_args[1:]):
        # checked here because rcl logs an error line of its own before refusing a missing file
        if flag == "--params-file" and not os.path.isfile(value):
            fail_start(name, f"parameter file {value} not found")
    try:
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    except RCLError as exc:
        fail_start(name, f"cannot initialise ROS: {exc}")


def fail_start(name: str, message: str) -> None:
    """One line on stderr, exit 2: what a user needs to fix a start-up, without a traceback."""
    print(f"[FATAL] [{name}]: {' '.join(str(message).split())}", file=sys.stderr, flush=True)
    raise SystemExit(START_UP_FAILURE)


def shutdown_context_after_failed_start() -> None:
    """Shut the context down after a constructor raised. The context destroys the nodes it tracks,
    the half-built one too, whose teardown may trip over what it never set up: the start-up
    error is what the user needs to see, so that second error is dropped."""
    try:
        rclpy.try_shutdown()
    except Exception:  # noqa: BLE001 - see above
        pass


def node_workers(node) -> list[LatestWorker]:
    """The newest-wins workers a node owns (any attribute, so node classes need no hook)."""
    return [value for value in vars(node).values() if isinstance(value, LatestWorker)]


def stop_workers(nodes: Iterable, grace_s: float = SHUTDOWN_GRACE_S) -> bool:
    """Stop the workers of nodes no executor dispatches to any more: each takes no more frames and
    all together get ``grace_s`` to finish the frames in hand.

    Returns whether every worker thread ended; one that did not was abandoned mid-frame (its errors
    count as interrupted, not as rejects).
    """
    workers = [worker for node in nodes for worker in node_workers(node)]
    for worker in workers:
        worker.request_stop(grace_s)
    for worker in workers:
        worker.stop(grace_s)
    return not any(worker.running for worker in workers)


def destroy_nodes(nodes: Iterable, logger=None) -> None:
    """Destroy nodes, last started first (sources before their consumers), while the context is
    still valid. A node whose teardown raises is logged and the others still go down."""
    for node in reversed(list(nodes)):
        try:
            node.destroy_node()
        except Exception as exc:  # noqa: BLE001 - the other nodes must still be destroyed
            if logger is not None:
                logger.error(f"destroying {node.get_name()} failed: {type(exc).__name__}: {exc}")


def exit_process(status: int) -> None:
    """Exit with ``status`` once the ordered teardown is done (nodes destroyed, outputs closed, the
    context shut down), skipping interpreter finalisation (os._exit after flushing). Nothing of ours
    is left for it, and what it would do costs: with a worker abandoned mid-frame it stops daemon
    threads wherever they are, which inside native code (torch, rcl) can abort the process
    ("terminate called ..."); with everything ended it still spent 2-3 s tearing down native
    libraries (measured: atexit done 0.3 s after the signal, the process gone 3.1-3.7 s after it),
    most of the 3 s a node has to exit (test_shutdown) and of the 5 s before launch escalates."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def run_node(node_class, name: str, args=None, finished: Callable[[object], bool] | None = None,
             linger_s: float = 0.0) -> None:
    """Spin ``node_class()`` until SIGINT/SIGTERM, or until ``finished(node)`` holds (finite sources).

    A constructor that raises a start-up error (invalid parameters, a missing input file) prints one
    fatal line and exits with status 2. SIGINT or SIGTERM (once or repeatedly) exits 0 after the
    ordered teardown (which finalises outputs such as bags). ``linger_s`` keeps the process alive
    briefly after a finite source finished, so reliable transports deliver the last messages.
    """
    shutdown = ShutdownRequest().install()
    init_ros(args, name)
    try:
        node = node_class()
    except START_UP_ERRORS as exc:
        shutdown_context_after_failed_start()
        fail_start(name, str(exc))
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        while not shutdown.requested and rclpy.ok() and not (finished is not None and finished(node)):
            executor.spin_once(timeout_sec=0.1)
        if not shutdown.requested and finished is not None and finished(node) and linger_s > 0:
            shutdown.wait(linger_s)
    except ExternalShutdownException:
        pass
    finally:
        if shutdown.requested:
            node.get_logger().info(f"{shutdown.signal_name}: shutting down")
        executor.shutdown(timeout_sec=1.0)
        stop_workers([node])
        destroy_nodes([node], node.get_logger())
        rclpy.try_shutdown()
    exit_process(0)
