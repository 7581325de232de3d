"""The live path's map quality on the demo world, repeatably: a dev screen for live-only settings.

    OMP_NUM_THREADS=1 python benchmarks/live_quality.py [--seeds 0 1 2 3 4 5 6] [--set NAME=VALUE ...]
                                                       [--frames 120] [--stride 2] [--out FILE]

The node's frames are live (``process(frame, live=True)``): one or two iterations a frame under the
time budget, new Gaussians grown for a map that is never revisited offline. The demo measures that
path, but one demo run is one seed, with timing that never repeats (recall 0.6, 0.8 and 1.0 in
three runs of the same code). Here the demo world (``tabletop_gocl``, 128x128 camera, 32x1024
LiDAR, the shipped GOCL model) is fed as a newest-wins worker at ~3-5 frames/s sees a 10 Hz
stream: every ``--stride``-th frame, with ``mapper.frame_budget_ms`` at 1 ms, so exactly one
iteration a frame and the same map on every run. Per world seed it reports: object recall and
precision at 3D IoU 0.25 (the demo's figure), the held-out views' matched instance IoU and PSNR
(three views lifted 8 cm off the trajectory, as the demo's), the Gaussians at the end, and ms per
frame (wall, including the simulator's rendering; the load is recorded). Seeds of the demo world
are plain integers; the demo itself runs seed 0.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ocgs_ros.evaluation import ground_truth_boxes, match_objects  # noqa: E402
from ocgs_ros.gaussians.eval_metrics import matched_instance_iou, psnr  # noqa: E402
from ocgs_ros.mapping.config import MappingConfig  # noqa: E402
from ocgs_ros.mapping.eval_scenes import mapping_frame  # noqa: E402
from ocgs_ros.mapping.pipeline import ObjectMappingPipeline  # noqa: E402
from ocgs_ros.ros import conversions  # noqa: E402
from ocgs_ros.ros.run_report import HELD_OUT_INDEX, held_out_view  # noqa: E402
from ocgs_ros.ros.sim_messages import make_world, tabletop_objects_message  # noqa: E402
from ocgs_ros.atomic_io import atomic_write_json  # noqa: E402
from ocgs_ros.settings import from_flat, parse_set_options  # noqa: E402

#: the demo's world and view (ocgs_ros.demo.WORLD_PARAMETERS), one iteration a frame
WORLD, SIZE = "tabletop_gocl", 128
BASE = {"view.process_width": SIZE, "view.process_height": SIZE, "mapper.frame_budget_ms": 1.0}
#: held-out views: the demo's, and two more along the orbit (trajectory indices)
HELD_OUT = (HELD_OUT_INDEX, HELD_OUT_INDEX + 17.3, HELD_OUT_INDEX + 41.7)


def run_seed(seed: int, settings: dict, frames: int, stride: int) -> dict:
    world = make_world(WORLD, seed, SIZE, SIZE, 32, 1024)
    pipeline = ObjectMappingPipeline(from_flat(MappingConfig, {**BASE, **settings}))
    started = time.perf_counter()
    for i in range(frames):
        pipeline.process(mapping_frame(world, i * stride), live=True)
    ms_per_frame = (time.perf_counter() - started) / frames * 1e3
    published = conversions.map_objects_to_msg(pipeline.objects(), "map", 0)
    objects = match_objects(ground_truth_boxes(tabletop_objects_message(world.objects).data),
                            conversions.instances_to_boxes(published.objects), iou_threshold=0.25)
    ious, psnrs = [], []
    for index in HELD_OUT:
        T_world_cam = held_out_view(world, index)
        rendered, _ = pipeline.render(world.K, T_world_cam, SIZE, SIZE)
        instances = pipeline.render_instances(world.K, T_world_cam, SIZE, SIZE)
        truth = world.render_camera(T_world_cam, world.K, SIZE, SIZE)
        ids = [int(i) for i in np.unique(truth.instance) if i != 0]
        ious += list(matched_instance_iou(instances, truth.instance, ids).values())
        psnrs.append(psnr(rendered, truth.rgb.astype(np.float64) / 255.0))
    return {"seed": seed, "recall_iou25": objects["recall"], "precision_iou25": objects["precision"],
            "published": objects["predicted_objects"], "instance_iou": float(np.mean(ious)) if ious else None,
            "psnr_db": float(np.mean(psnrs)), "gaussians": pipeline.map.num_gaussians, "ms_per_frame": ms_per_frame}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(7)), help="demo-world seeds")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="a pipeline setting")
    parser.add_argument("--frames", type=int, default=120, help="frames integrated per seed")
    parser.add_argument("--stride", type=int, default=2, help="every stride-th frame of the 10 Hz orbit")
    parser.add_argument("--out", default="", help="JSON result (optional)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    try:
        settings = parse_set_options(args.set)
        from_flat(MappingConfig, settings)  # names and values checked before minutes of mapping
    except (ValueError, TypeError) as exc:
        parser.error(str(exc))
    load_before = os.getloadavg()
    rows = [run_seed(seed, settings, args.frames, args.stride) for seed in args.seeds]
    summary = {key: {"mean": round(float(np.mean([r[key] for r in rows])), 3),
                     "std": round(float(np.std([r[key] for r in rows])), 3)}
               for key in rows[0] if key != "seed" and all(r[key] is not None for r in rows)}
    result = {"command": "python benchmarks/live_quality.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "settings": settings, "frames": args.frames, "stride": args.stride, "seeds": rows, "summary": summary,
              "load_average": [round(x, 2) for x in load_before],
              "load_average_after": [round(x, 2) for x in os.getloadavg()]}
    for row in rows:
        print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}))
    print("mean ± std: " + ", ".join(f"{k} {v['mean']} ± {v['std']}" for k, v in summary.items()))
    if args.out:
        atomic_write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
