"""Simulator benchmark: camera (RGB-D) frame and LiDAR sweep times, and LiDAR/camera ground-truth
agreement. Writes docs/results/sim_bench.json.

    python benchmarks/sim_bench.py [--repeats 10] [--out docs/results/sim_bench.json]

Baseline in the same run: the same ray casts with bounding-sphere culling switched off.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import numpy as np

from ocgs_ros.atomic_io import atomic_write_json
from ocgs_ros.sim.consistency import lidar_camera_instance_agreement
from ocgs_ros.sim.driving import DrivingWorld
from ocgs_ros.sim.tabletop import TabletopWorld
from ocgs_ros.sim.types import TabletopConfig


def median_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--agreement-scenes", type=int, default=5)
    parser.add_argument("--out", default="docs/results/sim_bench.json")
    args = parser.parse_args(argv)

    config = TabletopConfig.from_dict({"camera": {"width": 320, "height": 240},
                                       "lidar": {"beams": 32, "azimuth_steps": 1024}})
    world = TabletopWorld(config, seed=args.seed)
    frame = world.frame(0)
    T_cam = frame.camera.T_world_cam
    T_lidar = frame.lidar.T_world_lidar

    def rgbd():
        world.render_camera(T_cam, world.K, 320, 240)

    def sweep():
        world.scan_lidar(T_lidar, config.lidar)

    results = {"rgbd_frame_ms": median_ms(rgbd, args.repeats), "lidar_sweep_ms": median_ms(sweep, args.repeats)}
    world.scene.cull = False
    results["baseline_no_culling_rgbd_frame_ms"] = median_ms(rgbd, args.repeats)
    results["baseline_no_culling_lidar_sweep_ms"] = median_ms(sweep, args.repeats)
    world.scene.cull = True
    results["culling_speedup_rgbd"] = results["baseline_no_culling_rgbd_frame_ms"] / results["rgbd_frame_ms"]
    results["culling_speedup_lidar"] = results["baseline_no_culling_lidar_sweep_ms"] / results["lidar_sweep_ms"]
    results["tabletop_objects"] = len(world.objects)

    driving = DrivingWorld(seed=args.seed)
    results["driving_frame_ms"] = median_ms(lambda: driving.frame(5), max(3, args.repeats // 2))
    driving.frame(5)
    ego = driving.ego_pose(5)
    results["driving_lidar_sweep_ms"] = median_ms(
        lambda: driving.scan_lidar(ego @ driving.T_ego_lidar, driving.config.lidar), args.repeats)
    cam = driving.config.cameras[0]
    results["driving_camera_ms"] = median_ms(
        lambda: driving.render_camera(ego @ driving.T_ego_cams[0], driving.Ks[0], cam.width, cam.height), args.repeats)

    agreeing = visible = 0
    for scene in range(args.agreement_scenes):
        w = TabletopWorld(config, seed=args.seed + 100 + scene)
        for index in range(0, config.frames_per_orbit, config.frames_per_orbit // 6):
            f = w.frame(index)
            a, v = lidar_camera_instance_agreement(
                f.lidar.points, f.lidar.instance, np.linalg.inv(f.T_base_camera) @ f.T_base_lidar,
                f.camera.K, f.camera.depth, f.camera.instance)
            agreeing, visible = agreeing + a, visible + v
    results["lidar_camera_instance_agreement"] = agreeing / visible
    results["lidar_camera_visible_points"] = visible

    results = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in results.items()}
    results.update({
        "rgbd_resolution": "320x240", "lidar_resolution": "32x1024", "repeats": args.repeats,
        "platform": platform.platform(), "cpu_count": os.cpu_count(), "numpy": np.__version__,
        "command": "python benchmarks/sim_bench.py " + " ".join(sys.argv[1:] if argv is None else argv),
    })
    for key, value in results.items():
        print(f"{key:40s} {value}")
    atomic_write_json(args.out, results)
    return results


if __name__ == "__main__":
    main()
