"""sim_dataset: write simulated training datasets to disk.

    sim_dataset tabletop --out data/tabletop_train --scenes 2000 --views 4 --width 64 --height 64 --seed 0
    sim_dataset driving --out data/driving_train --scenes 200 --views 8 --seed 0
    sim_dataset driving --cameras surround --width 256 --height 144 --out data/surround_train --scenes 200 --views 8

Held-out data is the same command with another seed (scenes never seen in training). Re-running a
command resumes: finished scenes are kept.
"""
from __future__ import annotations

import argparse

from .dataset import write_driving_dataset, write_tabletop_dataset
from .driving import surround_config


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="sim_dataset", description=__doc__.split("\n\n")[0])
    parser.add_argument("world", choices=["tabletop", "driving"])
    parser.add_argument("--out", required=True, help="dataset folder (created; resumable)")
    parser.add_argument("--scenes", type=int, required=True)
    parser.add_argument("--views", type=int, default=4, help="views (tabletop) or frames (driving) per scene")
    parser.add_argument("--width", type=int, default=64, help="tabletop image width (driving: surround cameras, 256)")
    parser.add_argument("--height", type=int, default=64, help="tabletop image height (driving: surround cameras, 144)")
    parser.add_argument("--cameras", choices=["front", "surround"], default="front",
                        help="driving camera rig: one forward camera or six surround cameras (nuScenes layout)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--frame-stride", type=int, default=5, help="driving: frames skipped between samples")
    parser.add_argument("--with-lidar", action="store_true", help="tabletop: also store LiDAR sweeps")
    a = parser.parse_args(argv)
    if a.scenes <= 0 or a.views <= 0:
        parser.error("--scenes and --views must be positive")
    if a.world == "tabletop":
        root = write_tabletop_dataset(a.out, a.scenes, a.views, a.width, a.height, a.seed, with_lidar=a.with_lidar)
    else:
        config = surround_config(a.width, a.height) if a.cameras == "surround" else None
        root = write_driving_dataset(a.out, a.scenes, a.views, a.seed, config=config, frame_stride=a.frame_stride)
    print(f"sim_dataset: {a.world} dataset ready in {root}")


if __name__ == "__main__":
    main()
