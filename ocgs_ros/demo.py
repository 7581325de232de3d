"""The main job on the built-in simulated world: bring the nodes up for a bounded time, record
what they publish, and leave in ``runs/<timestamp>/`` what a person (and CI) can check.

    python -m ocgs_ros.demo [duration:=20] [world:=tabletop] [output:=runs/<ts>] [other bring-up args]

Outputs: ``sensors_bag/`` (mcap), ``sensors.png`` (camera frames with the LiDAR drawn in through
the recorded extrinsics), ``metrics.json`` (per-topic rates, LiDAR/camera ground-truth agreement
measured on the recorded stream), ``bringup_summary.json``.
"""
from __future__ import annotations

import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np

DEFAULT_DURATION_S = 20.0


def instance_agreement(frames: list[dict], tf_buffer) -> tuple[float, int]:
    """LiDAR/camera ground-truth agreement measured on the *recorded messages* (extrinsics from the
    bag's /tf_static, intrinsics from CameraInfo), i.e. through the whole ROS path."""
    from ocgs_ros.ros import conversions
    from ocgs_ros.sim.consistency import lidar_camera_instance_agreement

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
    from ocgs_ros.ros.bag_report import lidar_overlay, save_overlay_sheet, synchronized_frames, topic_statistics

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


def main(argv: list[str] | None = None) -> None:
    from ocgs_ros import bringup
    from ocgs_ros.atomic_io import atomic_write_json

    args = list(sys.argv[1:] if argv is None else argv)
    given = {a.split(":=", 1)[0] for a in args if ":=" in a}
    if "output" not in given:
        args.append(f"output:=runs/{datetime.now():%Y%m%d_%H%M%S}")
    if "duration" not in given:
        args.append(f"duration:={DEFAULT_DURATION_S}")
    args = ["sim:=true", "record:=true"] + [a for a in args if a.split(":=", 1)[0] not in ("sim", "record")]
    started = time.monotonic()
    summary = bringup.run(args)
    output = Path(summary["output"])
    metrics = {"command": "bash scripts/demo.sh " + " ".join(argv or sys.argv[1:]), **analyse_run(output)}
    metrics["wall_s"] = round(time.monotonic() - started, 2)
    metrics["bringup"] = summary
    atomic_write_json(output / "metrics.json", metrics)
    print(f"demo: {metrics['synchronized_frames']} frames recorded; LiDAR/camera instance agreement "
          f"{metrics['lidar_camera_instance_agreement']:.4f}; outputs in {output}")


if __name__ == "__main__":
    main()
