"""One-process bring-up for pip-only installs: the same nodes, with the same YAML, as
``ros2 launch ocgs_ros mapping.launch.py`` — in one process on a multi-threaded executor.

Arguments use the launch syntax, so the two read alike::

    bringup sim:=true record:=true duration:=20 output:=runs/demo
    ros2 launch ocgs_ros mapping.launch.py sim:=true record:=true

``NODE_CLASSES`` and ``LAUNCH_ARGUMENTS`` are the single list both sides are checked against
(test/test_launch_parity.py), so the launch file and this command cannot drift apart. DDS settings
are the user's: neither side sets any (our scripts and tests source scripts/ros_env.sh).
"""
from __future__ import annotations

import argparse
import importlib
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import rclpy
from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
from rclpy.exceptions import NameValidationException
from rclpy.executors import ExternalShutdownException
from rclpy.parameter import Parameter
from rclpy.signals import SignalHandlerOptions
from rclpy.validate_namespace import validate_namespace

from ocgs_ros.atomic_io import atomic_write_json
from ocgs_ros.ros.executors import OrderlyMultiThreadedExecutor
from ocgs_ros.ros.node_main import (SHUTDOWN_GRACE_S, START_UP_ERRORS, RCLError, ShutdownRequest, destroy_nodes,
                                    exit_process, fail_start, node_workers, shutdown_context_after_failed_start,
                                    stop_workers)

#: executable name (setup.py console script and launch ``executable=``) → node class
NODE_CLASSES: dict[str, str] = {
    "sim_publisher": "ocgs_ros.nodes.sim_publisher:SimPublisher",
    "bag_play": "ocgs_ros.nodes.bag_play:BagPlayer",
    "bag_record": "ocgs_ros.nodes.bag_record:BagRecorder",
    "object_mapping_node": "ocgs_ros.nodes.object_mapping_node:ObjectMappingNode",
    "bev_perception_node": "ocgs_ros.nodes.bev_perception_node:BevPerceptionNode",
}

#: perception nodes and the sensor topics they subscribe by default (remapped by the launch arguments
#: of the same name, in the launch file and here alike)
SENSOR_REMAPS: dict[str, str] = {
    "image_topic": "/camera/image_raw",
    "camera_info_topic": "/camera/camera_info",
    "points_topic": "/lidar/points",
}

#: launch arguments whose values are free text (paths, names, topics): the launch file passes them
#: as strings (``ParameterValue(..., value_type=str)``), so ``bag:=2024_01_01`` stays a path
STRING_ARGUMENTS = ("config", "world", "bag", "output", "namespace", *SENSOR_REMAPS, "image_topics",
                    "camera_info_topics")

#: launch arguments holding topic lists: bev_perception_node's cameras, one topic each in the model's
#: order (several cameras cannot be one launch_ros remapping, so they become the node's list
#: parameters, in the launch file and here alike: camera_list_overrides)
CAMERA_LIST_ARGUMENTS = ("image_topics", "camera_info_topics")

#: launch arguments that switch something on or off (true/false)
BOOLEAN_ARGUMENTS = ("use_sim_time", "sim", "record", "mapping", "bev", "rviz")

#: launch argument → (default, description); mapping.launch.py declares exactly these.
LAUNCH_ARGUMENTS: dict[str, tuple[str, str]] = {
    "config": ("", "Parameter YAML for all nodes (default: the package's config/ocgs.yaml)."),
    "namespace": ("", "ROS namespace for every node (as PushRosNamespace; default: none). The YAML's "
                      "/**/<node> sections apply under any namespace."),
    "use_sim_time": ("false", "Use /clock (from the simulator or a bag) instead of wall time."),
    "sim": ("true", "Start the simulated camera+LiDAR world (sim_publisher)."),
    "world": ("tabletop", "Simulated world: tabletop, tabletop_gocl (the tabletop GOCL is trained on) or driving."),
    "bag": ("", "Replay this bag instead of simulating (overrides sim)."),
    "record": ("false", "Record the sensor streams to a bag in the output folder."),
    "output": ("", "Output folder for this run (default runs/<timestamp>, the time of start-up)."),
    "mapping": ("true", "Start object_mapping_node (GOCL + object-aware Gaussian map)."),
    "bev": ("false", "Start bev_perception_node (camera+LiDAR BEV detections and map layers)."),
    "image_topic": (SENSOR_REMAPS["image_topic"], "Camera image topic the perception nodes subscribe."),
    "camera_info_topic": (SENSOR_REMAPS["camera_info_topic"], "CameraInfo topic the perception nodes subscribe."),
    "points_topic": (SENSOR_REMAPS["points_topic"], "LiDAR PointCloud2 topic the perception nodes subscribe."),
    "rviz": ("false", "Start rviz2 with config/ocgs.rviz (Gaussians, objects, BEV boxes, map layers, camera)."),
    "image_topics": ("", "BEV node's Image topics, one per camera in the model's order: [/cam_front/image_raw,"
                         "/cam_back/image_raw,...] ('' = the YAML's image_topics)."),
    "camera_info_topics": ("", "BEV node's CameraInfo topics in the same order ('' = the YAML's "
                               "camera_info_topics)."),
}

#: bring-up only (launch has its own process control): stop after this many seconds.
DURATION_HELP = ("Stop after this many seconds, whatever else (0 = until Ctrl-C, or until a bag has played "
                 "and the nodes have drained).")
#: seconds a finished run (duration, finite source) lets each worker finish its frame, so the
#: figures handed to ``before_shutdown`` and the summary are final
IDLE_WAIT_S = 30.0
#: how long bag_play waits for the perception nodes to subscribe before playing anyway (s); their
#: start-up (checkpoints, models) is over by then: the bring-up starts the player last
BAG_SUBSCRIBER_WAIT_S = 30.0
#: a played bag may still have frames in flight (DDS, the synchronizer, the workers): the run ends
#: once the perception nodes are idle and have received nothing for DRAIN_QUIET_S, or after
#: DRAIN_TIMEOUT_S (s); a 4 ms loopback delivery makes 0.5 s a generous quiet period
DRAIN_QUIET_S = 0.5
DRAIN_TIMEOUT_S = 60.0


class StartUpError(ValueError):
    """A bring-up that cannot start: bad arguments, a missing file, a node refusing its parameters."""


def default_config_path() -> Path:
    """config/ocgs.yaml from the source tree, or from the installed share folder."""
    here = Path(__file__).resolve().parent.parent / "config" / "ocgs.yaml"
    if here.is_file():
        return here
    try:
        return Path(get_package_share_directory("ocgs_ros")) / "config" / "ocgs.yaml"
    except PackageNotFoundError:
        return here


def default_output_dir() -> str:
    """``runs/<timestamp>``: where a run writes when ``output`` is not given (launch and bring-up alike)."""
    return f"runs/{datetime.now():%Y%m%d_%H%M%S}"


def _truthy(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off", ""):
        return False
    raise ValueError(f"expected true/false, got {value!r}")


def _flag(arguments: dict[str, str], name: str) -> bool:
    try:
        return _truthy(arguments[name])
    except ValueError as exc:
        raise StartUpError(f"{name}: {exc}") from None


def default_rviz_config_path() -> Path:
    return default_config_path().with_name("ocgs.rviz")


@dataclass
class NodePlan:
    executable: str
    overrides: dict[str, Any] = field(default_factory=dict)
    #: (from, to) topic remappings, as launch_ros ``Node(remappings=...)``
    remappings: list[tuple[str, str]] = field(default_factory=list)
    #: ROS namespace ('' = none), as launch_ros ``PushRosNamespace``
    namespace: str = ""

    def cli_args(self) -> list[str]:
        """The namespace and remappings as node-local ROS arguments (what launch_ros passes)."""
        rules = ([f"__ns:={_absolute(self.namespace)}"] if self.namespace else []) + \
            [f"{source}:={target}" for source, target in self.remappings]
        args = ["--ros-args"] if rules else []
        for rule in rules:
            args += ["-r", rule]
        return args


def _absolute(namespace: str) -> str:
    return namespace if namespace.startswith("/") else f"/{namespace}"


def sensor_remappings(arguments: dict[str, str]) -> list[tuple[str, str]]:
    """Remappings of the default sensor topics to the ones named in the launch arguments."""
    return [(default, arguments[name]) for name, default in SENSOR_REMAPS.items() if arguments[name] != default]


def topic_list(name: str, text: str) -> list[str]:
    """``[/a/image, /b/image]`` or ``/a/image,/b/image`` -> topic names; StartUpError if empty."""
    inner = text.strip()
    if inner.startswith("[") and inner.endswith("]"):
        inner = inner[1:-1]
    topics = [topic.strip().strip("'\"") for topic in inner.split(",")]
    if not topics or not all(topics):
        raise StartUpError(f"{name}: expected a list of topics like [/cam_front/image_raw,/cam_back/image_raw], "
                           f"got {text!r}")
    return topics


def camera_list_overrides(arguments) -> dict[str, list[str]]:
    """bev_perception_node's camera list parameters from the launch arguments that name them (an
    empty argument leaves the YAML's list); StartUpError for a malformed list."""
    return {key: topic_list(key, arguments[key]) for key in CAMERA_LIST_ARGUMENTS if arguments.get(key)}


def plan_nodes(arguments: dict[str, str], output: Path) -> list[NodePlan]:
    """Which nodes to start, with per-node overrides, from launch-style arguments."""
    use_sim_time = _flag(arguments, "use_sim_time")
    common = {"use_sim_time": use_sim_time}
    namespace = arguments.get("namespace", "")
    plans: list[NodePlan] = []
    if arguments["bag"]:
        plans.append(NodePlan("bag_play", {**common, "bag": arguments["bag"], "publish_clock": use_sim_time},
                              namespace=namespace))
    elif _flag(arguments, "sim"):
        plans.append(NodePlan("sim_publisher", {**common, "world": arguments["world"],
                                                "publish_clock": use_sim_time}, namespace=namespace))
    if _flag(arguments, "record"):
        plans.append(NodePlan("bag_record", {**common, "output": str(output / "sensors_bag")}, namespace=namespace))
    remaps = sensor_remappings(arguments)
    if _flag(arguments, "mapping"):
        plans.append(NodePlan("object_mapping_node", dict(common), remaps, namespace))
    if _flag(arguments, "bev"):
        plans.append(NodePlan("bev_perception_node", {**common, **camera_list_overrides(arguments)}, remaps,
                              namespace))
    return plans


def parse_arguments(argv: list[str]) -> tuple[dict[str, str], float, list[str]]:
    """Split ``key:=value`` launch arguments from ``--duration`` and pass-through ``--ros-args``.

    Raises StartUpError (one line) for a malformed, unknown or invalid argument.
    """
    ros_args: list[str] = []
    if "--ros-args" in argv:
        idx = argv.index("--ros-args")
        argv, ros_args = argv[:idx], argv[idx:]
    parser = argparse.ArgumentParser(
        prog="bringup",
        description=__doc__.split("\n\n")[0],
        epilog="Launch arguments (key:=value): "
        + "; ".join(f"{k} (default {d!r}): {h}" for k, (d, h) in LAUNCH_ARGUMENTS.items()),
    )
    parser.add_argument("--duration", type=float, default=0.0, help=DURATION_HELP)
    parser.add_argument("launch_arguments", nargs="*", metavar="key:=value")
    ns = parser.parse_args(argv)
    arguments = {k: d for k, (d, _) in LAUNCH_ARGUMENTS.items()}
    for token in ns.launch_arguments:
        key, sep, value = token.partition(":=")
        if not sep:
            raise StartUpError(f"expected key:=value, got {token!r}")
        if key == "duration":
            try:
                ns.duration = float(value)
            except ValueError:
                raise StartUpError(f"duration must be a number of seconds, got {value!r}") from None
            continue
        if key not in arguments:
            raise StartUpError(f"unknown launch argument {key!r}; known: {', '.join(sorted(arguments))} and duration")
        if key in CAMERA_LIST_ARGUMENTS:
            topic_list(key, value)  # a malformed list is refused here, in one line
        arguments[key] = value
    if arguments["namespace"]:
        try:
            validate_namespace(_absolute(arguments["namespace"]))
        except NameValidationException as exc:
            raise StartUpError(f"namespace {arguments['namespace']!r} is not a valid ROS namespace: "
                               f"{str(exc).splitlines()[0]}") from None
    return arguments, ns.duration, ros_args


def check_inputs(arguments: dict[str, str], config: Path) -> None:
    """Refuse, before any node starts, what would only fail later: missing files and paths."""
    for name in BOOLEAN_ARGUMENTS:
        _flag(arguments, name)
    if not config.is_file():
        raise StartUpError(f"parameter file {config} not found")
    if arguments["bag"] and not Path(arguments["bag"]).exists():
        raise StartUpError(f"bag {arguments['bag']} not found")


def _node_class(executable: str):
    module_name, class_name = NODE_CLASSES[executable].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def _source_finished(node) -> bool:
    """A finite source (a bag player) has published everything."""
    done = getattr(node, "done", None)
    return done is not None and done.is_set()


def _sink_finished(node) -> bool:
    """A node with limits of its own (a recorder's max_messages / max_duration_s) is done."""
    return bool(getattr(node, "finished", False))


def _perception_nodes(nodes) -> list:
    """The nodes that build frames from sensor input (PerceptionNode: ``frame_topics``, ``idle``)."""
    return [node for node in nodes if callable(getattr(node, "idle", None)) and hasattr(node, "frame_topics")]


def bag_wait_overrides(consumers) -> dict[str, Any]:
    """bag_play parameters making it wait until the already started perception nodes subscribe to
    their inputs (resolved names, once per node: a topic two nodes read waits for both)."""
    topics = [topic for node in _perception_nodes(consumers) for topic in node.frame_topics]
    return {"wait_for_topics": topics, "wait_for_subscribers_s": BAG_SUBSCRIBER_WAIT_S} if topics else {}


class Drain:
    """After a bag has played: done once every perception node is idle and no input has reached
    them for ``quiet_s``; :meth:`timed_out` bounds the wait."""

    def __init__(self, nodes, quiet_s: float = DRAIN_QUIET_S, timeout_s: float = DRAIN_TIMEOUT_S):
        self._nodes = _perception_nodes(nodes)
        self._quiet_s = quiet_s
        self._received = self._inputs()
        self._quiet_since = time.monotonic()
        self._deadline = self._quiet_since + timeout_s

    def _inputs(self) -> int:
        return sum(node.inputs_received for node in self._nodes)

    def drained(self) -> bool:
        now, received = time.monotonic(), self._inputs()
        if received != self._received or not all(node.idle() for node in self._nodes):
            self._received, self._quiet_since = received, now
            return False
        return now - self._quiet_since >= self._quiet_s

    def timed_out(self) -> bool:
        return time.monotonic() >= self._deadline


def _start_node(plan: NodePlan):
    """Construct one planned node; a node refusing its parameters or files is a StartUpError."""
    overrides = [Parameter(k, value=v) for k, v in plan.overrides.items()]
    try:
        return _node_class(plan.executable)(parameter_overrides=overrides, cli_args=plan.cli_args() or None)
    except (*START_UP_ERRORS, RCLError) as exc:
        message = " ".join(str(exc).split())
        raise StartUpError(message if message.startswith(plan.executable) else f"{plan.executable}: {message}") \
            from exc


def run(argv: list[str] | None = None, before_shutdown=None, shutdown: ShutdownRequest | None = None) -> dict[str, Any]:
    """Bring the planned nodes up, spin until the duration, a played bag's drained end, a recorder's
    limit or SIGINT/SIGTERM, tear down in order.

    ``before_shutdown(nodes_by_name, output)`` (optional) runs after the executor stopped and before
    the nodes are destroyed: the demo uses it to save the map and render views from the live nodes.
    ``shutdown`` is the caller's signal handling (``main`` installs one for the whole process);
    without one, this call installs its own and restores the previous handlers on return.
    Raises StartUpError (a ValueError) when the run cannot start.
    """
    arguments, duration, ros_args = parse_arguments(list(sys.argv[1:] if argv is None else argv))
    config = Path(arguments["config"]) if arguments["config"] else default_config_path()
    check_inputs(arguments, config)
    output = Path(arguments["output"] or default_output_dir())
    plans = plan_nodes(arguments, output)

    own_signals = shutdown is None
    shutdown = ShutdownRequest().install() if own_signals else shutdown
    try:
        # The params file is a global ROS argument, exactly as launch passes it: each node picks the
        # section that matches it (/**/<node name>, under any namespace).
        rclpy.init(args=["bringup", "--ros-args", "--params-file", str(config), *ros_args[1:]],
                   signal_handler_options=SignalHandlerOptions.NO)
    except RCLError as exc:
        if own_signals:
            shutdown.uninstall()
        raise StartUpError(f"cannot initialise ROS with {config} {' '.join(ros_args)}: {exc}") from None
    try:
        return _run_nodes(plans, arguments, config, output, duration, before_shutdown, shutdown)
    finally:
        rclpy.try_shutdown()
        if own_signals:
            shutdown.uninstall()


def _run_nodes(plans, arguments, config, output, duration, before_shutdown, shutdown) -> dict[str, Any]:
    log = rclpy.logging.get_logger("bringup")
    executor = OrderlyMultiThreadedExecutor()  # its shutdown joins the running callbacks first
    nodes = []
    try:
        # Consumers first, sources last: a bag player starts publishing from its constructor, once
        # the consumers it is told about have subscribed.
        for plan in reversed(plans):
            if plan.executable == "bag_play":
                plan = replace(plan, overrides={**plan.overrides, **bag_wait_overrides(nodes)})
            nodes.append(_start_node(plan))
    except StartUpError:
        destroy_nodes(nodes, log)
        shutdown_context_after_failed_start()
        raise
    for node in nodes:
        executor.add_node(node)
    output.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    summary: dict[str, Any] = {"config": str(config), "arguments": arguments, "nodes": [p.executable for p in plans]}
    log.info(f"started {[p.executable for p in plans]} with {config}; output {output}")
    rviz = _start_rviz(log, arguments["use_sim_time"]) if _flag(arguments, "rviz") else None
    # The executor spins in its own thread (callbacks run on its pool as they become ready);
    # this thread only watches the clock, the signals and the nodes, so it never delays a callback.
    spinner = _Spinner(executor, log)
    spinner.start()
    deadline = started + duration if duration > 0 else None
    failure = None
    drain: Drain | None = None
    try:
        while rclpy.ok():
            if shutdown.wait(0.05):
                log.info(f"{shutdown.signal_name}: shutting down")
                break
            if deadline is not None and time.monotonic() >= deadline:
                log.info(f"duration {duration:.1f} s reached")
                break
            if any(_sink_finished(n) for n in nodes):
                log.info("a finite node finished; stopping")
                break
            if drain is None and any(_source_finished(n) for n in nodes):
                log.info("bag finished; draining")
                drain = Drain(nodes)
            if drain is not None and drain.drained():
                log.info("drained; stopping")
                break
            if drain is not None and drain.timed_out():
                log.warning(f"not drained after {DRAIN_TIMEOUT_S:.0f} s (a node still busy or still receiving); "
                            "stopping")
                break
    finally:
        # Stop dispatching before anything is torn down, so no callback runs on a destroyed entity.
        spinner.stop()
        executor.shutdown(timeout_sec=2.0)
        if rviz is not None:
            rviz.terminate()
        if shutdown.requested:  # interrupted: bounded teardown, the frame in hand gets a short grace
            workers_stopped = stop_workers(nodes, SHUTDOWN_GRACE_S)
        else:  # a finished run: let workers finish the frame in hand so the figures below are final
            for worker in (w for node in nodes for w in node_workers(node)):
                worker.wait_idle(timeout_s=IDLE_WAIT_S)
            workers_stopped = stop_workers(nodes, SHUTDOWN_GRACE_S)
        if before_shutdown is not None:
            try:
                summary["before_shutdown"] = before_shutdown({n.get_name(): n for n in nodes}, output)
            except Exception as exc:  # noqa: BLE001 - re-raised once the nodes are down
                failure = exc
        summary["node_stats"] = _node_stats(nodes)
        destroy_nodes(nodes, log)
    if failure is not None:
        raise failure
    summary["wall_s"] = round(time.monotonic() - started, 3)
    summary["output"] = str(output)
    summary["interrupted_by"] = shutdown.signal_name
    summary["workers_stopped"] = workers_stopped
    atomic_write_json(output / "bringup_summary.json", summary)
    return summary


def _node_stats(nodes) -> dict[str, dict]:
    """Each node's own figures (``stats()``), by node name."""
    figures = {}
    for node in nodes:
        stats = getattr(node, "stats", None)
        if not callable(stats):
            continue
        if any(worker.running for worker in node_workers(node)):
            # its frame in hand was abandoned: stats() would wait for the locks that frame holds
            figures[node.get_name()] = {"skipped": "worker busy at shutdown"}
        else:
            figures[node.get_name()] = stats()
    return figures


class _Spinner(threading.Thread):
    """Spins the executor until :meth:`stop`. Its own loop rather than ``executor.spin()``, so that
    it has ended before ``executor.shutdown()``: spin() racing shutdown can hand a ready callback to
    the already closed thread pool."""

    def __init__(self, executor, log):
        super().__init__(name="bringup_executor", daemon=True)
        self._executor = executor
        self._log = log
        self._stopping = threading.Event()

    def run(self) -> None:
        while not self._stopping.is_set():
            try:
                self._executor.spin_once(timeout_sec=0.1)
            except ExternalShutdownException:  # the context went down: the main thread tears down
                return
            except Exception as exc:  # noqa: BLE001 - a failing callback must not end the bring-up
                self._log.error(f"callback failed: {type(exc).__name__}: {exc}", throttle_duration_sec=5.0)

    def stop(self) -> None:
        self._stopping.set()
        self.join()


def _start_rviz(log, use_sim_time: str):
    """rviz2 with our display config, when installed (it is not pip-installable)."""
    exe = shutil.which("rviz2")
    if exe is None:
        log.warning("rviz:=true but rviz2 is not installed (it needs a full ROS 2 install); continuing without it")
        return None
    return subprocess.Popen([exe, "-d", str(default_rviz_config_path()), "--ros-args",
                             "-p", f"use_sim_time:={str(_truthy(use_sim_time)).lower()}"])


def main(argv: list[str] | None = None) -> None:
    # One handler for the whole process: SIGINT and SIGTERM (from launch, a supervisor or a test)
    # end the run the same way, and repeats are ignored while the teardown runs.
    shutdown = ShutdownRequest().install()
    try:
        summary = run(argv, shutdown=shutdown)
    except START_UP_ERRORS as exc:
        fail_start("bringup", str(exc))
    print(f"bringup: done in {summary['wall_s']} s; outputs in {summary['output']}", flush=True)
    exit_process(0)


if __name__ == "__main__":
    main()
