"""The main job on the built-in simulated worlds: bring the nodes up for a bounded time and leave in
``runs/<timestamp>/`` what a person (and CI) can check.

    python -m ocgs_ros.demo [duration:=60] [bev_duration:=20] [output:=runs/<ts>] [other bring-up args]

1. Tabletop world (``tabletop_gocl`` by default, the one the shipped GOCL model is trained on;
   ``world:=tabletop`` for the larger one) -> ``sim_publisher`` + ``object_mapping_node`` (+
   ``bag_record``), one process, the same nodes and YAML as ``ros2 launch ocgs_ros
   mapping.launch.py``, plus the size parameters of ``WORLD_PARAMETERS`` (as ``--ros-args -p``).
2. Driving world -> ``sim_publisher`` + ``bev_perception_node``.

Outputs: ``map/tabletop.{ply,identity.json,objects.json}`` (the saved object map),
``held_out_view.png`` (simulator RGB / map render / identity / instances / ground-truth instances
from a view the mapper never received), ``bev/bev.png`` (BEV map layers predicted vs ground truth,
detections vs ground-truth boxes), ``sensors_bag/`` + ``sensors.png`` (the recorded stream with the
LiDAR drawn in through the recorded extrinsics), ``metrics.json`` (object recall at 3D IoU 0.25,
end-to-end latency, input rate, dropped-frame ratio, wall time, the command) and the bring-ups'
``bringup_summary.json``.
"""
from __future__ import annotations

import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np

from ocgs_ros import bringup
from ocgs_ros.atomic_io import atomic_write_json
from ocgs_ros.ros import conversions
from ocgs_ros.ros.bag_report import lidar_overlay, save_overlay_sheet, synchronized_frames, topic_statistics
from ocgs_ros.ros.run_report import bev_report, plain_json, tabletop_report
from ocgs_ros.sim.consistency import lidar_camera_instance_agreement

DEFAULT_DURATION_S = 60.0
DEFAULT_BEV_DURATION_S = 20.0
#: the tabletop the shipped GOCL model is trained on, with square images as in its training, the map
#: built at the camera's 128x128 with the node's live defaults (time budget per frame; issue 16)
DEFAULT_WORLD = "tabletop_gocl"
WORLD_PARAMETERS = {"tabletop_gocl": {"image_width": 128, "image_height": 128, "view.process_width": 128,
                                      "view.process_height": 128},
                    # the driving camera's 352x128 at half size: the shipped BEV model's input size
                    "driving": {"image_width": 176, "image_height": 64}}


def instance_agreement(frames: list[dict], tf_buffer) -> tuple[float, int]:
    """LiDAR/camera ground-truth agreement measured on the *recorded messages* (extrinsics from the
    bag's /tf_static, intrinsics from CameraInfo), i.e. through the whole ROS path."""

    bridge = conversions.CvBridge()
    agreeing = visible = 0
    for frame in frames:
        camera = conversions.camera_info_to_model(frame["/camera/camera_info"])
        labeled = conversions.pointcloud2_to_array(frame["/sim/lidar/labeled_points"])
        T_cam_lidar = tf_buffer.lookup_matrix(frame["/camera/image_raw"].header.frame_id,
                                              frame["/sim/lidar/labeled_points"].header.frame_id, frame["stamp_ns"])
        a, v = lidar_camera_instance_agreement(
            np.stack([labeled["x"], labeled["y"], labeled["z"]], axis=1), labeled["instance"], T_cam_lidar,
            camera.K, bridge.imgmsg_to_cv2(frame["/sim/camera/depth"]),
            bridge.imgmsg_to_cv2(frame["/sim/camera/instance"]).astype(np.int32))
        agreeing, visible = agreeing + a, visible + v
    return (agreeing / visible if visible else float("nan")), visible


def analyse_run(output: Path) -> dict:
    bag = output / "sensors_bag"
    stats = topic_statistics(bag)
    tf_buffer, frames = synchronized_frames(
        bag, extra_topics=("/sim/camera/instance", "/sim/camera/depth", "/sim/lidar/labeled_points"))
    if not frames:
        raise RuntimeError(f"no synchronised camera+LiDAR frames in {bag}; topics: {sorted(stats)}")
    picks = np.linspace(0, len(frames) - 1, num=min(6, len(frames))).round().astype(int)
    save_overlay_sheet([lidar_overlay(frames[i], tf_buffer) for i in picks], output / "sensors.png")
    agreement, visible = instance_agreement(frames, tf_buffer)
    return {
        "topics": stats,
        "synchronized_frames": len(frames),
        "lidar_camera_instance_agreement": round(agreement, 4),
        "lidar_points_visible_in_camera": visible,
    }


def _node_figures(stats: dict, duration_s: float) -> dict:
    """The issue's node figures from a perception node's ``stats()`` over a run of ``duration_s``."""
    return {
        "end_to_end_latency_ms_median": stats.get("latency_ms_median"),
        "input_rate_hz": round(stats["frames_synchronised"] / duration_s, 3),
        "processed_rate_hz": round(stats["frames_processed"] / duration_s, 3),
        "dropped_frame_ratio": stats["dropped_ratio"],
        "frames_synchronised": stats["frames_synchronised"],
        "frames_processed": stats["frames_processed"],
        "frames_rejected": stats["rejected"],
    }


def _split(args: list[str], key: str, default: float) -> tuple[float, list[str]]:
    value, rest = default, []
    for a in args:
        if a.startswith(f"{key}:="):
            value = float(a.split(":=", 1)[1])
        else:
            rest.append(a)
    return value, rest


def _run_part(name: str, args: list[str], before_shutdown) -> dict:
    """One bring-up of the demo; a bad start-up is one line and exit 2, an interrupted run (Ctrl-C)
    ends the demo with exit 0 and no metrics (its figures would describe a cut-short run)."""
    try:
        summary = bringup.run(args, before_shutdown=before_shutdown)
    except bringup.StartUpError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    if summary.get("interrupted_by"):
        print(f"demo: {name} run interrupted by {summary['interrupted_by']}; outputs so far in {summary['output']}")
        raise SystemExit(0)
    return summary


def main(argv: list[str] | None = None) -> None:
    given_args = list(sys.argv[1:] if argv is None else argv)
    duration, args = _split(given_args, "duration", DEFAULT_DURATION_S)
    bev_duration, args = _split(args, "bev_duration", DEFAULT_BEV_DURATION_S)
    given = {a.split(":=", 1)[0] for a in args if ":=" in a}
    if "output" not in given:
        args.append(f"output:=runs/{datetime.now():%Y%m%d_%H%M%S}")
    output = Path(next(a.split(":=", 1)[1] for a in args if a.startswith("output:=")))
    world = next((a.split(":=", 1)[1] for a in args if a.startswith("world:=")), DEFAULT_WORLD)
    if "--ros-args" in args:
        cut = args.index("--ros-args")
        args, ros_args = args[:cut], args[cut + 1:]
    else:
        ros_args = []
    fixed = ("sim", "record", "world", "mapping", "bev", "output")
    rest = [a for a in args if a.split(":=", 1)[0] not in fixed]
    world_args = [arg for key, value in WORLD_PARAMETERS.get(world, {}).items() for arg in ("-p", f"{key}:={value}")]
    tabletop_ros = ["--ros-args", *world_args, *ros_args] if world_args or ros_args else []
    driving_args = [arg for key, value in WORLD_PARAMETERS["driving"].items() for arg in ("-p", f"{key}:={value}")]
    driving_ros = ["--ros-args", *driving_args, *ros_args]
    started = time.monotonic()

    # 1. tabletop: sensors -> object map
    tabletop = _run_part("tabletop", ["sim:=true", "record:=true", f"world:={world}", "mapping:=true",
                                               "bev:=false", f"output:={output}", f"duration:={duration}", *rest,
                                               *tabletop_ros],
                         before_shutdown=lambda nodes, out: tabletop_report(nodes["object_mapping_node"],
                                                                            nodes["sim_publisher"], out))
    mapping_stats = tabletop["node_stats"]["object_mapping_node"]
    # 2. driving: sensors -> BEV detections and map layers
    driving = _run_part("driving", ["sim:=true", "record:=false", "world:=driving", "mapping:=false",
                                             "bev:=true", f"output:={output / 'bev'}", f"duration:={bev_duration}",
                                             *rest, *driving_ros],
                        before_shutdown=lambda nodes, out: bev_report(nodes["bev_perception_node"],
                                                                      nodes["sim_publisher"], out))
    bev_stats = driving["node_stats"]["bev_perception_node"]

    report = tabletop["before_shutdown"]
    metrics = {
        # exactly what ran; scripts/demo.sh (the README command) calls it with output:=runs/<timestamp>
        "command": " ".join(["python -m ocgs_ros.demo", *given_args]),
        "readme_command": "bash scripts/demo.sh",
        "object_recall_iou25": report["object_recall_iou25"],
        **_node_figures(mapping_stats, tabletop["wall_s"]),
        "wall_s": None,
        "tabletop": {**report, "world": world, "world_parameters": WORLD_PARAMETERS.get(world, {}),
                     "node_stats": mapping_stats, "duration_s": duration},
        "bev": {**driving["before_shutdown"], "world_parameters": WORLD_PARAMETERS["driving"], **_node_figures(bev_stats, driving["wall_s"]),
                "model_ms_median": bev_stats.get("model_ms_median"), "duration_s": bev_duration},
        "sensors": analyse_run(output),
        "bringup": {"tabletop": tabletop, "driving": driving},
    }
    metrics["wall_s"] = round(time.monotonic() - started, 2)
    metrics = plain_json(metrics)
    atomic_write_json(output / "metrics.json", metrics)
    print(f"demo: object recall @ IoU 0.25 {metrics['object_recall_iou25']:.3f} "
          f"({report['objects_published']} objects published, {report['ground_truth_objects']} in the world); "
          f"latency median {metrics['end_to_end_latency_ms_median']} ms; input {metrics['input_rate_hz']} Hz, "
          f"dropped {metrics['dropped_frame_ratio']:.2f}; BEV {metrics['bev'].get('detections')} detections; "
          f"{metrics['wall_s']} s; outputs in {output}")


if __name__ == "__main__":
    main()
