"""One-process bring-up for pip-only installs: the same nodes, with the same YAML, as
``ros2 launch ocgs_ros mapping.launch.py`` — in one process on a multi-threaded executor.

Arguments use the launch syntax, so the two read alike::

    bringup sim:=true record:=true duration:=20 output:=runs/demo
    ros2 launch ocgs_ros mapping.launch.py sim:=true record:=true

``NODE_CLASSES`` and ``LAUNCH_ARGUMENTS`` are the single list both sides are checked against
(test/test_launch_parity.py), so the launch file and this command cannot drift apart.
"""
from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

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

#: launch argument → (default, description); mapping.launch.py declares exactly these.
LAUNCH_ARGUMENTS: dict[str, tuple[str, str]] = {
    "config": ("", "Parameter YAML for all nodes (default: the package's config/ocgs.yaml)."),
    "use_sim_time": ("false", "Use /clock (from the simulator or a bag) instead of wall time."),
    "sim": ("true", "Start the simulated camera+LiDAR world (sim_publisher)."),
    "world": ("tabletop", "Simulated world: tabletop, tabletop_gocl (the tabletop GOCL is trained on) or driving."),
    "bag": ("", "Replay this bag instead of simulating (overrides sim)."),
    "record": ("false", "Record the sensor streams to a bag in the output folder."),
    "output": ("", "Output folder for this run (default runs/<timestamp>)."),
    "mapping": ("true", "Start object_mapping_node (GOCL + object-aware Gaussian map)."),
    "bev": ("false", "Start bev_perception_node (camera+LiDAR BEV detections and map layers)."),
    "image_topic": (SENSOR_REMAPS["image_topic"], "Camera image topic the perception nodes subscribe."),
    "camera_info_topic": (SENSOR_REMAPS["camera_info_topic"], "CameraInfo topic the perception nodes subscribe."),
    "points_topic": (SENSOR_REMAPS["points_topic"], "LiDAR PointCloud2 topic the perception nodes subscribe."),
    "rviz": ("false", "Start rviz2 with config/ocgs.rviz (Gaussians, objects, BEV boxes, map layers, camera)."),
}

#: bring-up only (launch has its own process control): stop after this many seconds.
DURATION_HELP = "Stop after this many seconds (0 = until Ctrl-C or until a finite source ends)."


def default_config_path() -> Path:
    """config/ocgs.yaml from the source tree, or from the installed share folder."""
    here = Path(__file__).resolve().parent.parent / "config" / "ocgs.yaml"
    if here.is_file():
        return here
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory("ocgs_ros")) / "config" / "ocgs.yaml"
    except Exception:  # noqa: BLE001
        return here


def _truthy(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off", ""):
        return False
    raise ValueError(f"expected true/false, got {value!r}")


def default_rviz_config_path() -> Path:
    return default_config_path().with_name("ocgs.rviz")


@dataclass
class NodePlan:
    executable: str
    overrides: dict[str, Any] = field(default_factory=dict)
    #: (from, to) topic remappings, as launch_ros ``Node(remappings=...)``
    remappings: list[tuple[str, str]] = field(default_factory=list)

    def cli_args(self) -> list[str]:
        """The remappings as node-local ROS arguments (what launch_ros passes for ``remappings``)."""
        if not self.remappings:
            return []
        args = ["--ros-args"]
        for source, target in self.remappings:
            args += ["-r", f"{source}:={target}"]
        return args


def sensor_remappings(arguments: dict[str, str]) -> list[tuple[str, str]]:
    """Remappings of the default sensor topics to the ones named in the launch arguments."""
    return [(default, arguments[name]) for name, default in SENSOR_REMAPS.items() if arguments[name] != default]


def plan_nodes(arguments: dict[str, str], output: Path) -> list[NodePlan]:
    """Which nodes to start, with per-node overrides, from launch-style arguments."""
    use_sim_time = _truthy(arguments["use_sim_time"])
    common = {"use_sim_time": use_sim_time}
    plans: list[NodePlan] = []
    if arguments["bag"]:
        plans.append(NodePlan("bag_play", {**common, "bag": arguments["bag"], "publish_clock": use_sim_time}))
    elif _truthy(arguments["sim"]):
        plans.append(NodePlan("sim_publisher", {**common, "world": arguments["world"],
                                                "publish_clock": use_sim_time}))
    if _truthy(arguments["record"]):
        plans.append(NodePlan("bag_record", {**common, "output": str(output / "sensors_bag")}))
    remaps = sensor_remappings(arguments)
    if _truthy(arguments["mapping"]):
        plans.append(NodePlan("object_mapping_node", dict(common), remaps))
    if _truthy(arguments["bev"]):
        plans.append(NodePlan("bev_perception_node", dict(common), remaps))
    return plans


def parse_arguments(argv: list[str]) -> tuple[dict[str, str], float, list[str]]:
    """Split ``key:=value`` launch arguments from ``--duration`` and pass-through ``--ros-args``."""
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
            parser.error(f"expected key:=value, got {token!r}")
        if key == "duration":
            ns.duration = float(value)
            continue
        if key not in arguments:
            parser.error(f"unknown launch argument {key!r}; known: {sorted(arguments)} and duration")
        arguments[key] = value
    return arguments, ns.duration, ros_args


def _node_class(executable: str):
    module_name, class_name = NODE_CLASSES[executable].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def _finished(node) -> bool:
    """A finite source (a bag player, a recorder with limits) says it is done."""
    done = getattr(node, "done", None)
    return bool(getattr(node, "finished", False) or (done is not None and done.is_set()))


def run(argv: list[str] | None = None, before_shutdown=None) -> dict[str, Any]:
    """Bring the planned nodes up, spin until the duration or a finite source ends, tear down.

    ``before_shutdown(nodes_by_name, output)`` (optional) runs after the executor stopped and before
    the nodes are destroyed: the demo uses it to save the map and render views from the live nodes.
    """
    import rclpy
    from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
    from rclpy.parameter import Parameter

    from ocgs_ros.atomic_io import atomic_write_json

    arguments, duration, ros_args = parse_arguments(list(sys.argv[1:] if argv is None else argv))
    config = Path(arguments["config"]) if arguments["config"] else default_config_path()
    if not config.is_file():
        raise SystemExit(f"bringup: parameter file {config} not found")
    output = Path(arguments["output"] or f"runs/{datetime.now():%Y%m%d_%H%M%S}")
    output.mkdir(parents=True, exist_ok=True)
    plans = plan_nodes(arguments, output)

    # The params file is a global ROS argument, exactly as launch passes it: each node picks the
    # section under its own name.
    rclpy.init(args=["bringup", "--ros-args", "--params-file", str(config), *ros_args[1:]])
    log = rclpy.logging.get_logger("bringup")
    executor = MultiThreadedExecutor()
    nodes = []
    rviz = None
    failure = None
    started = time.monotonic()
    summary: dict[str, Any] = {"config": str(config), "arguments": arguments, "nodes": [p.executable for p in plans]}
    try:
        for plan in plans:
            overrides = [Parameter(k, value=v) for k, v in plan.overrides.items()]
            node = _node_class(plan.executable)(parameter_overrides=overrides, cli_args=plan.cli_args() or None)
            nodes.append(node)
            executor.add_node(node)
        log.info(f"started {[p.executable for p in plans]} with {config}; output {output}")
        rviz = _start_rviz(log) if _truthy(arguments["rviz"]) else None
        # The executor spins in its own thread (callbacks run on its pool as they become ready);
        # this thread only watches the clock and the nodes, so it never delays a callback.
        spinner = threading.Thread(target=executor.spin, name="bringup_executor", daemon=True)
        spinner.start()
        deadline = started + duration if duration > 0 else None
        while rclpy.ok() and spinner.is_alive():
            time.sleep(0.05)
            if deadline is not None and time.monotonic() >= deadline:
                log.info(f"duration {duration:.1f} s reached")
                break
            if any(_finished(n) for n in nodes):
                log.info("a finite source finished; stopping")
                break
    except (KeyboardInterrupt, ExternalShutdownException):
        log.info("interrupted")
    finally:
        # Stop dispatching before destroying nodes, so no callback runs on a destroyed entity.
        executor.shutdown(timeout_sec=5.0)
        if rviz is not None:
            rviz.terminate()
        for node in nodes:  # let workers finish the frame in hand so the figures below are final
            worker = getattr(node, "worker", None)
            if worker is not None:
                worker.wait_idle(timeout_s=30.0)
        if before_shutdown is not None:
            try:
                summary["before_shutdown"] = before_shutdown({n.get_name(): n for n in nodes}, output)
            except Exception as exc:  # noqa: BLE001 - re-raised once the nodes are down
                failure = exc
        for node in nodes:
            stats = getattr(node, "stats", None)
            if callable(stats):
                summary.setdefault("node_stats", {})[node.get_name()] = stats()
            node.destroy_node()
        rclpy.try_shutdown()
    if failure is not None:
        raise failure
    summary["wall_s"] = round(time.monotonic() - started, 3)
    summary["output"] = str(output)
    atomic_write_json(output / "bringup_summary.json", summary)
    return summary


def _start_rviz(log):
    """rviz2 with our display config, when installed (it is not pip-installable)."""
    import shutil
    import subprocess

    exe = shutil.which("rviz2")
    if exe is None:
        log.warning("rviz:=true but rviz2 is not installed (it needs a full ROS 2 install); continuing without it")
        return None
    return subprocess.Popen([exe, "-d", str(default_rviz_config_path())])


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    # SIGTERM (e.g. from a supervisor or a test) should end the run as cleanly as Ctrl-C:
    # nodes destroyed, bags closed, summary written.
    signal.signal(signal.SIGTERM, _interrupt)
    summary = run(argv)
    print(f"bringup: done in {summary['wall_s']} s; outputs in {summary['output']}")


if __name__ == "__main__":
    main()
