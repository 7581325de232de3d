"""object_mapping_node over real DDS (loopback only): end-to-end latency (sensor stamp -> objects
published), the input rate it sustains without queueing, and the dropped-frame ratio at 10 Hz.

    OMP_NUM_THREADS=1 python benchmarks/node_bench.py [--rates 2 5 10] [--frames 30] [--out runs/node_bench]

The node runs in its own process with the package YAML (sizes overridden below for this CPU). This
process replays pre-rendered simulator frames (so rendering does not compete with the node) at
each rate, stamped with the wall clock at publication like a live driver, and times the
``~/objects`` messages that come back (the newest-wins worker bounds the queue by design; the
figure that shows it is ``outputs_after_input_stopped``, at most 2, whatever the input rate). Between rates the map is cleared with ``~/reset_map``.

Baseline, measured in the same run before the node starts: the node's own work per frame (GOCL +
map update + object extraction called directly, no ROS) on the same frames; the k-th object
message is compared with the k-th directly integrated frame (same map size). ``latency /
baseline`` and ``latency - baseline`` are what DDS, the synchronizer, TF and waiting for the worker
add to the work.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from loopback import keep_dds_on_loopback  # noqa: E402 - benchmarks/, beside this script

REPO = keep_dds_on_loopback()

import numpy as np  # noqa: E402

from ocgs_ros.atomic_io import atomic_save_figure  # noqa: E402

#: the node's pipeline settings (MappingConfig, dotted names) and its own, overriding the package YAML
PIPELINE_PARAMS = {"view.process_width": 80, "view.process_height": 60, "mapper.iterations_per_frame": 4,
                   "view.max_points": 3000}
NODE_PARAMS = {"publish_gaussians_period_s": 5.0}


def render_frames(count: int, width: int, height: int, seed: int):
    from ocgs_ros.ros import conversions
    from ocgs_ros.ros.sim_messages import SimStream, make_world

    stream = SimStream(make_world("tabletop", seed, width, height, 32, 1024))
    static = dict(stream.static_messages(conversions.ns_to_stamp(time.time_ns())))
    step = max(1, stream.world.config.frames_per_orbit // count)
    frames = [dict(stream.frame_messages(i * step, conversions.ns_to_stamp(0)).sensors) for i in range(count)]
    return stream, static, frames


def direct_baseline(stream, frames, gocl_checkpoint: str) -> list[float]:
    """Seconds of the node's work for the 1st, 2nd, ... integrated frame: the node's pipeline with
    the same settings, called directly on the converted messages (no ROS); the k-th output of the
    node is compared with the k-th entry (same map size)."""
    from ocgs_ros.mapping.config import MappingConfig
    from ocgs_ros.mapping.pipeline import MappingFrame, ObjectMappingPipeline
    from ocgs_ros.ros import conversions
    from ocgs_ros.ros.sensor_frames import camera_from_messages, cloud_points
    from ocgs_ros.settings import from_flat
    import torch

    torch.set_num_threads(1)
    pipeline = ObjectMappingPipeline(from_flat(MappingConfig, {**PIPELINE_PARAMS, "gocl.checkpoint": gocl_checkpoint}))
    world = stream.world
    times = []
    for frame in frames:
        started = time.perf_counter()
        camera = camera_from_messages(frame["/camera/image_raw"], frame["/camera/camera_info"])
        points = cloud_points(frame["/lidar/points"])
        T_world_base = conversions.transform_stamped_to_matrix(frame["/tf"].transforms[0])
        pipeline.process(MappingFrame(camera.rgb, camera.K, T_world_base @ world.T_base_camera, points,
                                      T_world_base @ world.T_base_lidar))
        times.append(time.perf_counter() - started)
    return times


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[0.5, 1.0, 2.0, 5.0, 10.0],
                        help="input rates (Hz)")
    parser.add_argument("--frames", type=int, default=20, help="frames published per rate")
    parser.add_argument("--gocl", default="", help="GOCL checkpoint (default: the shipped one, else 'none')")
    parser.add_argument("--width", type=int, default=160)
    parser.add_argument("--height", type=int, default=120)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout-s", type=float, default=120.0, help="per-rate time limit")
    parser.add_argument("--out", default="runs/node_bench")
    args = parser.parse_args(argv)

    import rclpy
    from ocgs_ros_interfaces.msg import ObjectInstanceArray
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2
    from std_srvs.srv import Trigger
    from tf2_msgs.msg import TFMessage
    from tqdm import tqdm

    from ocgs_ros import models
    from ocgs_ros.atomic_io import atomic_write_json
    from ocgs_ros.ros import conversions, qos

    gocl = args.gocl or (str(models.GOCL_TABLETOP) if models.GOCL_TABLETOP.is_file() else "none")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stream, static, frames = render_frames(args.frames, args.width, args.height, args.seed)
    # baseline before the node starts, so the two never compete for the CPU
    baseline = np.array(direct_baseline(stream, frames, gocl))
    print(f"baseline (direct work per frame, no ROS): median {np.median(baseline) * 1e3:.1f} ms")

    cmd = [sys.executable, "-m", "ocgs_ros.nodes.object_mapping_node", "--ros-args", "--params-file",
           str(REPO / "config" / "ocgs.yaml"), "-p", f"gocl.checkpoint:={gocl}"]
    for key, value in {**PIPELINE_PARAMS, **NODE_PARAMS}.items():
        cmd += ["-p", f"{key}:={value}"]
    log = open(out / "node.log", "w")
    node_proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=dict(os.environ))
    rclpy.init()
    node = rclpy.create_node("node_bench")
    received: list[tuple[int, int]] = []  # (stamp ns, receive wall ns)
    node.create_subscription(ObjectInstanceArray, "/object_mapping_node/objects",
                             lambda m: received.append((conversions.stamp_to_ns(m.header.stamp), time.time_ns())),
                             qos.LATCHED)
    pubs = {"/camera/image_raw": node.create_publisher(Image, "/camera/image_raw", qos.SENSOR_DATA),
            "/camera/camera_info": node.create_publisher(CameraInfo, "/camera/camera_info", qos.SENSOR_DATA),
            "/lidar/points": node.create_publisher(PointCloud2, "/lidar/points", qos.SENSOR_DATA),
            "/tf": node.create_publisher(TFMessage, "/tf", qos.TF)}
    tf_static = node.create_publisher(TFMessage, "/tf_static", qos.TF_STATIC)
    reset = node.create_client(Trigger, "/object_mapping_node/reset_map")
    results: dict = {"command": "python benchmarks/node_bench.py " + " ".join(sys.argv[1:] if argv is None else argv),
                     "gocl_checkpoint": gocl, "node_params": {**PIPELINE_PARAMS, **NODE_PARAMS},
                     "camera": [args.width, args.height],
                     "frames_per_rate": args.frames, "rates": []}
    try:
        deadline = time.monotonic() + 120
        while not (reset.service_is_ready() and all(p.get_subscription_count() for p in pubs.values())):
            rclpy.spin_once(node, timeout_sec=0.1)
            if time.monotonic() > deadline or node_proc.poll() is not None:
                raise SystemExit(f"object_mapping_node did not come up; see {out / 'node.log'}")
        tf_static.publish(static["/tf_static"])
        for rate in args.rates:
            future = reset.call_async(Trigger.Request())
            rclpy.spin_until_future_complete(node, future, timeout_sec=60)
            received.clear()
            sent: list[int] = []
            period = 1.0 / rate
            next_t = time.monotonic()
            for frame in tqdm(frames, desc=f"{rate:g} Hz", leave=False):
                while time.monotonic() < next_t:
                    rclpy.spin_once(node, timeout_sec=max(0.0, next_t - time.monotonic()))
                stamp_ns = time.time_ns()
                stamp = conversions.ns_to_stamp(stamp_ns)
                frame["/tf"].transforms[0].header.stamp = stamp
                for topic in ("/tf", "/camera/camera_info", "/lidar/points", "/camera/image_raw"):
                    msg = frame[topic]
                    if topic != "/tf":
                        msg.header.stamp = stamp
                    pubs[topic].publish(msg)
                sent.append(stamp_ns)
                next_t += period
            # wait for the frame in hand to finish (newest-wins: at most one more output)
            settle = time.monotonic() + min(args.timeout_s, 30.0)
            last_count = -1
            while time.monotonic() < settle:
                rclpy.spin_once(node, timeout_sec=0.2)
                if received and received[-1][0] == sent[-1]:
                    break
                if len(received) != last_count:
                    last_count, settle = len(received), max(settle, time.monotonic() + 10.0)
            sent_set = set(sent)
            lat = np.array([(r - s) / 1e6 for s, r in received if s in sent_set])
            span_s = (sent[-1] - sent[0]) / 1e9 if len(sent) > 1 else 0.0
            direct = baseline[:len(lat)] * 1e3  # k-th output vs k-th directly integrated frame
            entry = {
                "input_rate_hz": rate,
                "achieved_input_rate_hz": round((len(sent) - 1) / span_s, 2) if span_s else None,
                "frames_sent": len(sent), "frames_mapped": int(len(lat)),
                "dropped_frame_ratio": round(1.0 - len(lat) / len(sent), 3),
                "processed_rate_hz": round(len(lat) / ((received[-1][1] - sent[0]) / 1e9), 2) if received else None,
                "latency_ms_median": round(float(np.median(lat)), 1) if len(lat) else None,
                "latency_ms_p90": round(float(np.percentile(lat, 90)), 1) if len(lat) else None,
                "latency_vs_direct_work": round(float(np.median(lat / direct)), 2) if len(lat) else None,
                # what DDS, sync, TF and waiting for the worker add to the work itself
                "overhead_ms_median": round(float(np.median(lat - direct)), 1) if len(lat) else None,
                # newest-wins: once the input stops at most the frame in hand and one waiting frame are left
                "outputs_after_input_stopped": sum(1 for s, r in received if s in sent_set and r > sent[-1]),
            }
            results["rates"].append(entry)
            print(json.dumps(entry))
    finally:
        node_proc.send_signal(signal.SIGINT)
        try:
            node_proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            node_proc.kill()
        node.destroy_node()
        rclpy.try_shutdown()
        log.close()

    results["baseline_direct_work_ms"] = [round(t * 1e3, 1) for t in baseline]
    results["baseline_direct_work_ms_median"] = round(float(np.median(baseline)) * 1e3, 1)
    sustained = [e["input_rate_hz"] for e in results["rates"] if e["dropped_frame_ratio"] <= 0.05]
    results["max_sustained_rate_hz_without_drops"] = max(sustained) if sustained else None
    at10 = next((e for e in results["rates"] if e["input_rate_hz"] == 10.0), None)
    results["dropped_frame_ratio_at_10hz"] = at10["dropped_frame_ratio"] if at10 else None
    atomic_write_json(out / "node_bench.json", results)
    _plot(results, out / "node_bench.png")
    print(f"baseline (direct work per frame, median over {len(baseline)} frames): "
          f"{results['baseline_direct_work_ms_median']} ms")
    for e in results["rates"]:
        print(f"{e['input_rate_hz']:>5g} Hz in: latency median {e['latency_ms_median']} ms "
              f"({e.get('latency_vs_direct_work')}x direct work), p90 {e['latency_ms_p90']} ms, "
              f"overhead {e['overhead_ms_median']} ms, dropped {e['dropped_frame_ratio']:.2f}, mapped {e['processed_rate_hz']} Hz, "
              f"{e['outputs_after_input_stopped']} output(s) after the input stopped")
    print(f"max input rate mapped without drops: {results['max_sustained_rate_hz_without_drops']} Hz; "
          f"dropped-frame ratio at 10 Hz: {results['dropped_frame_ratio_at_10hz']}")
    print(f"results: {out / 'node_bench.json'}")
    return results


def _plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rates = [e["input_rate_hz"] for e in results["rates"]]
    fig, (a, b) = plt.subplots(1, 2, figsize=(8, 3))
    a.plot(rates, [e["latency_ms_median"] or np.nan for e in results["rates"]], "o-", label="median")
    a.plot(rates, [e["latency_ms_p90"] or np.nan for e in results["rates"]], "s--", label="p90")
    a.axhline(results["baseline_direct_work_ms_median"], color="gray", linestyle=":", label="direct work")
    a.set_xlabel("input rate (Hz)")
    a.set_ylabel("stamp -> objects (ms)")
    a.legend(fontsize=7)
    b.plot(rates, [e["dropped_frame_ratio"] for e in results["rates"]], "o-")
    b.set_xlabel("input rate (Hz)")
    b.set_ylabel("dropped-frame ratio")
    fig.tight_layout()
    atomic_save_figure(fig, path, dpi=110)


if __name__ == "__main__":
    main()
