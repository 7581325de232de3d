"""The one ``main()`` every ocgs_ros node uses: init, construct, spin, clean teardown."""
from __future__ import annotations

import time
from typing import Callable

import rclpy
from rclpy.executors import ExternalShutdownException


def run_node(node_class, name: str, args=None, finished: Callable[[object], bool] | None = None,
             linger_s: float = 0.0) -> None:
    """Spin ``node_class()`` until shutdown, or until ``finished(node)`` holds (finite sources).

    A constructor that raises ``ValueError`` (invalid parameters, a missing input file) logs one
    fatal line and exits with status 2; Ctrl-C / SIGINT exits 0 after ``destroy_node`` (which
    finalises outputs such as bags). ``linger_s`` keeps the process alive briefly after a finite
    source finished, so reliable transports deliver the last messages.
    """
    rclpy.init(args=args)
    node = None
    try:
        node = node_class()
        while rclpy.ok() and not (finished is not None and finished(node)):
            rclpy.spin_once(node, timeout_sec=0.1)
        if finished is not None and finished(node) and linger_s > 0:
            time.sleep(linger_s)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except ValueError as exc:
        rclpy.logging.get_logger(name).fatal(str(exc))
        raise SystemExit(2) from exc
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
