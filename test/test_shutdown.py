"""Clean shutdown on every path (issue 15): SIGINT, SIGTERM or two SIGINTs end a running bring-up
with both perception nodes, or a standalone node, with exit 0 within 3 s and nothing in the output
that tells of a teardown gone wrong. The signals land while the workers are busy (both nodes have
published), so a frame in hand is cut short: it must neither hang the exit nor count as a reject."""
from __future__ import annotations

import json
import signal
import subprocess
import threading
import time

import pytest
from conftest import REPO, spin_until

from ocgs_ros.latest_worker import LatestWorker
from ocgs_ros.ros import qos

CONFIG = str(REPO / "config" / "ocgs.yaml")
#: what launch allows before escalating is 5 s; the issue asks for 3
EXIT_WITHIN_S = 3.0
#: output that tells of a teardown gone wrong (a publish on a dead context, an unretrieved
#: executor exception, a KeyboardInterrupt mid-teardown, a native abort)
BAD_OUTPUT = ("Traceback", "never retrieved", "RCLError", "terminate called", "KeyboardInterrupt",
              "context is invalid")
#: a small camera keeps the simulator cheap on a loaded CPU; only sim_publisher declares these
SMALL_CAMERA = ["-p", "image_width:=160", "-p", "image_height:=120"]


def _markers(ros_node):
    from visualization_msgs.msg import MarkerArray

    objects, detections = [], []
    ros_node.create_subscription(MarkerArray, "/object_mapping_node/object_markers", objects.append, qos.LATCHED)
    ros_node.create_subscription(MarkerArray, "/bev_perception_node/detection_markers", detections.append,
                                 qos.RELIABLE)
    return objects, detections


def _signal_and_time(procs, signals: list[signal.Signals], log_has) -> float:
    """Send ``signals`` to every process (each repeat once the first is being handled), then wait
    for all to exit; returns the seconds from the first signal to the last exit."""
    started = time.monotonic()
    for index, signum in enumerate(signals):
        if index:  # the repeat must arrive during teardown, not merge with the first signal
            deadline = time.monotonic() + EXIT_WITHIN_S
            while not all(log_has(p) or p.proc.poll() is not None for p in procs) and time.monotonic() < deadline:
                time.sleep(0.01)
        for proc in procs:
            if proc.proc.poll() is None:
                proc.proc.send_signal(signum)
    for proc in procs:
        try:
            proc.proc.wait(timeout=EXIT_WITHIN_S + 5.0)
        except subprocess.TimeoutExpired:
            pass
    return time.monotonic() - started


def _assert_clean(proc, elapsed_s: float) -> None:
    output = proc.output()
    assert proc.proc.returncode == 0, output[-3000:]
    assert elapsed_s <= EXIT_WITHIN_S, f"exit took {elapsed_s:.2f} s\n{output[-3000:]}"
    for text in BAD_OUTPUT:
        assert text not in output, f"{text!r} in the output:\n{output[-3000:]}"


@pytest.mark.parametrize("signals", [[signal.SIGINT], [signal.SIGTERM], [signal.SIGINT, signal.SIGINT]],
                         ids=["sigint", "sigterm", "sigint_twice"])
def test_bringup_with_both_perception_nodes_stops_cleanly(ros_node, node_process, tmp_path, signals):
    objects, detections = _markers(ros_node)
    output = tmp_path / "run"
    bringup = node_process("ocgs_ros.bringup", "sim:=true", "mapping:=true", "bev:=true", f"output:={output}",
                           "--ros-args", *SMALL_CAMERA)
    assert spin_until(ros_node, lambda: objects and detections, 75.0, processes=[bringup]), bringup.output()[-3000:]

    elapsed = _signal_and_time([bringup], signals, lambda p: "shutting down" in p.output())
    _assert_clean(bringup, elapsed)
    summary = json.loads((output / "bringup_summary.json").read_text())
    assert summary["interrupted_by"] == signals[0].name
    for name, stats in summary["node_stats"].items():
        # a frame cut short by the shutdown is no bad input
        assert "processing" not in stats.get("rejected", {}), (name, stats)


def test_standalone_nodes_stop_cleanly(ros_node, node_process):
    objects, _ = _markers(ros_node)
    mapper = node_process("ocgs_ros.nodes.object_mapping_node", "--ros-args", "--params-file", CONFIG)
    sim = node_process("ocgs_ros.nodes.sim_publisher", "--ros-args", "--params-file", CONFIG, *SMALL_CAMERA)
    procs = [mapper, sim]
    assert spin_until(ros_node, lambda: objects, 75.0, processes=procs), mapper.output()[-3000:]

    elapsed = _signal_and_time(procs, [signal.SIGINT, signal.SIGINT], lambda p: "shutting down" in p.output())
    for proc in procs:
        _assert_clean(proc, elapsed)


def test_a_worker_stop_is_bounded_by_the_grace_and_a_cut_short_frame_is_no_failure():
    started, release, errors = threading.Event(), threading.Event(), []

    def process(item):
        started.set()
        release.wait(60.0)  # a long frame, held until the test lets it go
        raise RuntimeError("publisher's context is invalid")  # what a frame meets once its node is gone

    worker = LatestWorker(process, on_error=lambda item, exc: errors.append(exc))
    worker.submit("in hand")
    assert started.wait(5.0)
    worker.submit("waiting")
    worker.request_stop(grace_s=0.2)
    # a later stop() with a long timeout (what a node's destroy_node passes) returns at the grace
    stopper = threading.Thread(target=worker.stop, kwargs={"timeout_s": 60.0})
    stopper.start()
    stopper.join(10.0)
    assert not stopper.is_alive() and worker.running  # the frame in hand is abandoned, not waited for
    assert worker.stats.dropped == 1  # the waiting frame
    release.set()
    assert worker.wait_idle(5.0)
    assert worker.stats.interrupted == 1 and worker.stats.failed == 0 and errors == []
    assert worker.stop(timeout_s=5.0) and not worker.running
