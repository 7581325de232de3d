"""sim_to_bag: simulate straight into a ROS 2 bag (no DDS), deterministic from a seed.

    sim_to_bag --out runs/sim_bag --world tabletop --frames 50 --rate 5 --storage mcap
    sim_to_bag --out runs/surround_bag --world driving --cameras surround --width 256 --height 144 \
        --staggered-cameras --frames 20 --rate 10

The bag holds exactly what sim_publisher would publish (same topics, same messages), so it can be
replayed with bag_play / ros2 bag play into the mapping and BEV nodes.
"""
from __future__ import annotations

import argparse

from tqdm import tqdm

from ocgs_ros.ros import conversions
from ocgs_ros.ros.bags import BagWriter
from ocgs_ros.ros.sim_messages import CAMERA_RIGS, SimStream, make_world, topic_qos

DEFAULT_START_NS = 1_700_000_000_000_000_000  # a fixed epoch, so a seed gives byte-stable stamps


def write_sim_bag(out, world: str = "tabletop", frames: int = 20, rate_hz: float = 5.0, seed: int = 0,
                  storage: str = "mcap", image_width: int = 320, image_height: int = 240, lidar_beams: int = 32,
                  lidar_azimuth_steps: int = 1024, ground_truth: bool = True, start_ns: int = DEFAULT_START_NS,
                  progress: bool = False, cameras: str = "front", staggered_cameras: bool = False):
    """Write ``frames`` simulated frames to a bag at ``out``; returns the bag path. ``cameras``
    ("front" or "surround": six nuScenes-style cameras of ``image_width x image_height`` each) and
    ``staggered_cameras`` (each camera stamped at its own trigger time) apply to the driving world."""
    if frames <= 0 or rate_hz <= 0:
        raise ValueError(f"frames and rate must be positive, got frames={frames}, rate={rate_hz}")
    stream = SimStream(make_world(world, seed, image_width, image_height, lidar_beams, lidar_azimuth_steps,
                                  cameras, staggered_cameras))
    period_ns = int(round(1e9 / rate_hz))
    with BagWriter(out, storage=storage) as writer:
        stamp = conversions.ns_to_stamp(start_ns)
        for topic, msg in stream.static_messages(stamp):
            writer.write(topic, msg, start_ns, topic_qos(topic))
        for index in tqdm(range(frames), desc="simulating", unit="frame", disable=not progress):
            stamp_ns = start_ns + index * period_ns
            for topic, msg in stream.frame_messages(index, conversions.ns_to_stamp(stamp_ns)).all(ground_truth):
                writer.write(topic, msg, stamp_ns, topic_qos(topic))
    return writer.path


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="sim_to_bag", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="bag folder to create")
    parser.add_argument("--world", choices=["tabletop", "driving"], default="tabletop")
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--rate", type=float, default=5.0, help="frame rate of the recorded stamps (Hz)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--storage", choices=["mcap", "sqlite3"], default="mcap")
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--lidar-beams", type=int, default=32)
    parser.add_argument("--lidar-azimuth-steps", type=int, default=1024)
    parser.add_argument("--no-ground-truth", action="store_true", help="sensor topics only")
    parser.add_argument("--cameras", choices=CAMERA_RIGS, default="front",
                        help="driving camera rig: one forward camera (/camera/...) or six surround cameras "
                             "(/cam_front/..., /cam_front_left/..., nuScenes layout), each --width x --height")
    parser.add_argument("--staggered-cameras", action="store_true",
                        help="driving: each camera fires (and is stamped) at its own time after the LiDAR")
    a = parser.parse_args(argv)
    path = write_sim_bag(a.out, a.world, a.frames, a.rate, a.seed, a.storage, a.width, a.height, a.lidar_beams,
                         a.lidar_azimuth_steps, not a.no_ground_truth, progress=True, cameras=a.cameras,
                         staggered_cameras=a.staggered_cameras)
    print(f"sim_to_bag: wrote {path}")


if __name__ == "__main__":
    main()
