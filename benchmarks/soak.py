"""Soak test: both perception nodes fed at 10 Hz on loopback DDS for a long run (default 30 min),
watching memory, latency and errors over time.

    OMP_NUM_THREADS=1 python benchmarks/soak.py [--minutes 30] [--rate 10] [--out docs/results/soak.json]

``object_mapping_node`` and ``bev_perception_node`` run as separate processes with the package YAML
(``config/ocgs.yaml``), as a user starts them. This process is the sensor rig: it replays
pre-rendered simulator frames in a loop — a tabletop stream for the mapping node, a driving stream
for the BEV node (its own topics and frame ids) — stamped with the wall clock at publication like a
live driver. Replaying instead of running ``sim_publisher`` keeps the rate at 10 Hz: rendering a
driving frame alone takes longer than 0.1 s on a small CPU, and the render would compete with the
nodes for it.

Recorded in the JSON (and drawn in the PNG beside it): the resident memory (RSS) of each node, with
the processes it started (the mapping pipeline's own), every ``--sample-s`` seconds and its slope
(MB/min, least squares) over the last 15 minutes (the second half of shorter runs); per
``--window-s`` window and node, the outputs received and their stamp-to-arrival latency median /
p90; errors (log lines at ERROR, tracebacks, rejected input frames by reason from
/diagnostics, nodes that died); the machine load (``os.getloadavg``) before and after; the command.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from loopback import keep_dds_on_loopback  # noqa: E402 - benchmarks/, beside this script
from process_memory import status_mb  # noqa: E402 - benchmarks/, beside this script

REPO = keep_dds_on_loopback()

import numpy as np  # noqa: E402

SLOPE_WINDOW_MIN = 15.0
DRIVING_PREFIX = "/driving"
#: frame ids of the driving stream: its own tree beside the tabletop's (both hang off "map")
DRIVING_IDS = ("map", "ego", "ego_camera_optical_frame", "ego_lidar_link")
NODES = {
    "object_mapping_node": ("ocgs_ros.nodes.object_mapping_node", "/object_mapping_node/objects"),
    "bev_perception_node": ("ocgs_ros.nodes.bev_perception_node", "/bev_perception_node/detections"),
}


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="soak duration (min)")
    parser.add_argument("--rate", type=float, default=10.0, help="sensor frame rate of each stream (Hz)")
    parser.add_argument("--sample-s", type=float, default=5.0, help="RSS sampling period (s)")
    parser.add_argument("--window-s", type=float, default=60.0, help="latency window (s)")
    parser.add_argument("--frames", type=int, default=24, help="distinct frames replayed per stream")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--startup-timeout-s", type=float, default=180.0)
    parser.add_argument("--mapping-param", action="append", default=[], metavar="KEY:=VALUE",
                        help="extra object_mapping_node parameter (repeatable)")
    parser.add_argument("--bev-param", action="append", default=[], metavar="KEY:=VALUE",
                        help="extra bev_perception_node parameter (repeatable)")
    parser.add_argument("--out", default="docs/results/soak.json", help="JSON result; the plot goes beside it")
    return parser.parse_args(argv)


def render_streams(count: int, seed: int):
    """(one /tf_static message for both rigs, [stream][frame] -> {topic: message}): ``count`` frames
    of each stream, sensor topics of the driving stream under :data:`DRIVING_PREFIX`."""
    from tf2_msgs.msg import TFMessage

    from ocgs_ros.ros import conversions
    from ocgs_ros.ros.sim_messages import FrameIds, SimStream, make_world

    streams = {"": SimStream(make_world("tabletop", seed, 320, 240, 32, 1024)),
               DRIVING_PREFIX: SimStream(make_world("driving", seed, 352, 128, 32, 1024), FrameIds(*DRIVING_IDS))}
    stamp = conversions.ns_to_stamp(0)
    # one latched message with both rigs: a second one on /tf_static would replace the first for late joiners
    static = TFMessage(transforms=[t for stream in streams.values()
                                   for t in dict(stream.static_messages(stamp))["/tf_static"].transforms])
    rendered = []
    for prefix, stream in streams.items():
        step = max(1, (getattr(stream.world, "default_num_frames", 0) or count) // count)
        rendered.append([{(topic if topic == "/tf" else prefix + topic): msg
                          for topic, msg in stream.frame_messages(i * step, stamp).sensors} for i in range(count)])
    return static, rendered


def node_command(name: str, extra: list[str]) -> list[str]:
    module = NODES[name][0]
    cmd = [sys.executable, "-m", module, "--ros-args"]
    if (REPO / "config" / "ocgs.yaml").is_file():
        cmd += ["--params-file", str(REPO / "config" / "ocgs.yaml")]
    if name == "bev_perception_node":
        extra = [f"image_topics:=[{DRIVING_PREFIX}/camera/image_raw]",
                 f"camera_info_topics:=[{DRIVING_PREFIX}/camera/camera_info]",
                 f"points_topic:={DRIVING_PREFIX}/lidar/points", f"ego_frame:={DRIVING_IDS[1]}", *extra]
    for item in extra:
        cmd += ["-p", item]
    return cmd


def slope_mb_per_min(samples: list[dict], name: str, window_min: float) -> float | None:
    """Least-squares RSS slope over the samples in the last ``window_min`` minutes."""
    end = samples[-1]["t_s"] if samples else 0.0
    points = [(s["t_s"] / 60.0, s[name]) for s in samples if s.get(name) is not None
              and s["t_s"] >= end - window_min * 60.0]
    if len(points) < 3:
        return None
    t, mb = np.array(points).T
    return round(float(np.polyfit(t, mb, 1)[0]), 3)


def latency_summary(latencies_s: list[float]) -> dict:
    ms = np.asarray(latencies_s) * 1e3
    if ms.size == 0:
        return {"outputs": 0, "latency_ms_median": None, "latency_ms_p90": None}
    median, p90 = np.percentile(ms, [50, 90])
    return {"outputs": int(ms.size), "latency_ms_median": round(float(median), 1),
            "latency_ms_p90": round(float(p90), 1)}


def log_errors(text: str) -> dict:
    lines = text.splitlines()
    return {"error_lines": sum("[ERROR]" in line for line in lines),
            "tracebacks": sum("Traceback" in line for line in lines),
            "first_errors": [line[:300] for line in lines if "[ERROR]" in line or "Traceback" in line][:5]}


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ocgs_ros.atomic_io import atomic_save_figure

    fig, (ax_rss, ax_lat) = plt.subplots(2, 1, figsize=(8, 7), sharex=True)
    for name in NODES:
        samples = [(s["t_s"] / 60.0, s[name]) for s in result["rss_samples"] if s.get(name) is not None]
        if samples:
            ax_rss.plot(*np.array(samples).T, label=f"{name} ({result['rss_slope_mb_per_min'][name]} MB/min)")
        windows = [(w["t_end_s"] / 60.0, w[name]["latency_ms_median"], w[name]["latency_ms_p90"])
                   for w in result["windows"] if w[name]["latency_ms_median"] is not None]
        if windows:
            t, median, p90 = np.array(windows, dtype=float).T
            line, = ax_lat.plot(t, median, "o-", label=f"{name} median")
            ax_lat.plot(t, p90, "s--", color=line.get_color(), label=f"{name} p90")
    ax_rss.set_ylabel("RSS (MB)")
    ax_rss.legend(fontsize=8)
    ax_lat.set_ylabel("stamp -> output latency (ms)")
    ax_lat.set_xlabel("time (min)")
    ax_lat.legend(fontsize=8)
    fig.suptitle(f"soak: {result['duration_min']} min at {result['rate_hz']} Hz")
    atomic_save_figure(fig, path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from ocgs_ros_interfaces.msg import Detection3DArray, ObjectInstanceArray

    from ocgs_ros.atomic_io import atomic_write_json
    from ocgs_ros.ros import conversions, qos
    from ocgs_ros.ros.sim_messages import topic_qos

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    log_dir = out.with_suffix("")
    log_dir = log_dir.parent / f"{log_dir.name}_logs"
    log_dir.mkdir(exist_ok=True)
    load_before = os.getloadavg()
    static, streams = render_streams(args.frames, args.seed)
    print(f"soak: rendered {args.frames} frames per stream; starting the nodes")

    procs, logs = {}, {}
    for name, extra in (("object_mapping_node", args.mapping_param), ("bev_perception_node", args.bev_param)):
        logs[name] = open(log_dir / f"{name}.log", "w")
        procs[name] = subprocess.Popen(node_command(name, extra), stdout=logs[name], stderr=subprocess.STDOUT,
                                       cwd=REPO, env=dict(os.environ))
    rclpy.init()
    node = rclpy.create_node("soak_rig")
    pubs: dict[str, object] = {"/tf_static": node.create_publisher(type(static), "/tf_static", topic_qos("/tf_static"))}
    for frames in streams:
        for topic, msg in frames[0].items():
            pubs.setdefault(topic, node.create_publisher(type(msg), topic, topic_qos(topic)))
    received = {name: [] for name in NODES}  # latencies (s) of the current window
    diagnostics: dict[str, dict] = {}

    def on_output(name):
        return lambda msg: received[name].append(time.time_ns() * 1e-9 - conversions.stamp_to_ns(msg.header.stamp) * 1e-9)

    node.create_subscription(ObjectInstanceArray, NODES["object_mapping_node"][1], on_output("object_mapping_node"),
                             qos.LATCHED)
    node.create_subscription(Detection3DArray, NODES["bev_perception_node"][1], on_output("bev_perception_node"),
                             qos.RELIABLE)
    node.create_subscription(DiagnosticArray, "/diagnostics", lambda m: diagnostics.update(
        {s.hardware_id: {kv.key: kv.value for kv in s.values} for s in m.status}), qos.RELIABLE)

    result: dict = {"command": "python benchmarks/soak.py " + " ".join(sys.argv[1:] if argv is None else argv),
                    "rate_hz": args.rate, "frames_per_stream": args.frames,
                    "node_commands": {name: " ".join(node_command(name, extra)[1:]) for name, extra in
                                      (("object_mapping_node", args.mapping_param),
                                       ("bev_perception_node", args.bev_param))},
                    "load_avg_before": [round(v, 2) for v in load_before]}
    try:
        sensor_topics = [t for t in pubs if t.endswith(("/image_raw", "/points"))]
        deadline = time.monotonic() + args.startup_timeout_s
        while not all(pubs[t].get_subscription_count() for t in sensor_topics):
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs.values()):
                raise RuntimeError(f"nodes did not come up; logs in {log_dir}")
            rclpy.spin_once(node, timeout_sec=0.1)
        for transform in static.transforms:
            transform.header.stamp = node.get_clock().now().to_msg()
        pubs["/tf_static"].publish(static)

        samples, windows = [], []
        published = 0
        start = time.monotonic()
        end = start + args.minutes * 60.0
        next_frame, next_sample, window_start = start, start, start
        print(f"soak: running {args.minutes} min at {args.rate} Hz; logs in {log_dir}")
        while True:
            now = time.monotonic()
            if now >= next_frame:
                stamp = node.get_clock().now().to_msg()
                for frames in streams:
                    for topic, msg in frames[published % len(frames)].items():
                        if topic == "/tf":
                            for t in msg.transforms:
                                t.header.stamp = stamp
                        else:
                            msg.header.stamp = stamp
                        pubs[topic].publish(msg)
                published += 1
                next_frame += 1.0 / args.rate
            if now >= next_sample:
                samples.append({"t_s": round(now - start, 1),
                                **{name: status_mb(p.pid, "VmRSS") for name, p in procs.items()}})
                next_sample += args.sample_s
            if now - window_start >= args.window_s or now >= end:
                windows.append({"t_start_s": round(window_start - start, 1), "t_end_s": round(now - start, 1),
                                **{name: latency_summary(received[name]) for name in NODES}})
                for lat in received.values():
                    lat.clear()
                window_start = now
            if now >= end or any(p.poll() is not None for p in procs.values()):
                break
            rclpy.spin_once(node, timeout_sec=max(0.0, min(next_frame, next_sample) - time.monotonic()))
        elapsed = time.monotonic() - start
    finally:
        exit_codes = {}
        alive_at_end = {name: p.poll() is None for name, p in procs.items()}
        for name, p in procs.items():
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for name, p in procs.items():
            try:
                exit_codes[name] = p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                exit_codes[name] = p.wait()
            logs[name].close()
        node.destroy_node()
        rclpy.try_shutdown()

    errors = {}
    for name in NODES:
        rejected = {k.split("/", 1)[1]: int(v) for k, v in diagnostics.get(name, {}).items()
                    if k.startswith("rejected/")}
        errors[name] = {**log_errors((log_dir / f"{name}.log").read_text(errors="replace")),
                        "rejected": rejected, "alive_at_end": alive_at_end[name], "exit_code": exit_codes[name]}
    slope_window = min(SLOPE_WINDOW_MIN, elapsed / 120.0)  # the last 15 min, or the second half of a short run
    result.update({
        "duration_min": round(elapsed / 60.0, 2), "frames_published_per_stream": published,
        "rss_sample_s": args.sample_s, "rss_samples": samples,
        "rss_slope_window_min": round(slope_window, 2),
        "rss_slope_mb_per_min": {name: slope_mb_per_min(samples, name, slope_window) for name in NODES},
        "rss_mb_first_last": {name: [next((s[name] for s in samples if s.get(name) is not None), None),
                                     next((s[name] for s in reversed(samples) if s.get(name) is not None), None)]
                              for name in NODES},
        "window_s": args.window_s, "windows": windows,
        "final_diagnostics": {name: diagnostics.get(name, {}) for name in NODES},
        "errors": errors,
        "load_avg_after": [round(v, 2) for v in os.getloadavg()],
        "cpu_count": os.cpu_count(),
    })
    atomic_write_json(out, result)
    plot(result, out.with_suffix(".png"))
    print(f"soak: {result['duration_min']} min, RSS slope (MB/min) {result['rss_slope_mb_per_min']}, errors "
          f"{ {n: (e['error_lines'], e['tracebacks'], sum(e['rejected'].values())) for n, e in errors.items()} } "
          f"-> {out}")
    return result


if __name__ == "__main__":
    main()
