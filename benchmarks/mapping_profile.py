"""Where one mapping frame's time goes: the pipeline's stages, timed exclusively (a stage's time
excludes the stages nested in it), per integrated frame, 1 thread.

    OMP_NUM_THREADS=1 python benchmarks/mapping_profile.py [--profiles before after] [--world stream] [--frames 16]
                                                           [--set NAME=VALUE ...] [--out FILE]

Profiles (several in one run, so they share the machine's load): ``before`` — the code path before
issue 16 at the then node defaults (160x120, 8 iterations, vectorised compositing, objects after
every frame); ``after`` — the node's defaults now, frames fed as the node feeds them (live: time
budget, objects every ``objects_period_s``); ``baseline64`` — the benchmark baseline (64x64, 4
iterations, the old path); ``offline`` — today's defaults fed as the evaluator feeds them
(exactly ``iterations_per_frame``, objects after every frame). ``--set`` changes a setting in every
profile. Frames are the simulator's: ``--world evaluator`` (default) the evaluator's tabletop world
(dataset seed 7, scene 0, 320x240 camera, 32x1024 LiDAR) spread over one orbit; ``--world stream``
node_bench's stream (sim_publisher's tabletop, more objects and a map of ~6.7k Gaussians at 128x128)
as the node integrates it, every third frame of 10 Hz. The first ``--warmup`` frames are integrated
but not counted (the map is still nearly empty). Stages are timed by wrapping the library's
functions in this process; nothing in the library is changed. Message building is timed on the
objects of each frame with the node's own conversion functions.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ocgs_ros.gaussians import mapper as mapper_module  # noqa: E402
from ocgs_ros.gaussians.densify import DensifyController  # noqa: E402
from ocgs_ros.gaussians.objects import ObjectTracker  # noqa: E402
from ocgs_ros.gaussians.objects import extraction as extraction_module  # noqa: E402
from ocgs_ros.gaussians.objects import support as support_module  # noqa: E402
from ocgs_ros.mapping import pipeline as pipeline_module  # noqa: E402
from ocgs_ros.mapping.config import MappingConfig  # noqa: E402
from ocgs_ros.mapping.evaluate import EvalConfig, make_world_config, mapping_frame  # noqa: E402
from ocgs_ros.atomic_io import atomic_write_json  # noqa: E402
from ocgs_ros.settings import from_flat, parse_set_options  # noqa: E402
from ocgs_ros.sim.dataset import scene_seed  # noqa: E402
from ocgs_ros.sim.tabletop import TabletopWorld  # noqa: E402
from ocgs_ros.sim.types import TabletopConfig  # noqa: E402


class StageTimer:
    """Exclusive wall time per stage name: a wrapped call's time minus that of wrapped calls nested in it."""

    def __init__(self):
        self.exclusive = defaultdict(float)
        self.calls = defaultdict(int)
        self._local = threading.local()  # per thread: live object extraction runs in its own

    @property
    def _stack(self) -> list[list]:  # [name, child seconds] of the calls open in this thread
        if not hasattr(self._local, "stack"):
            self._local.stack = []
        return self._local.stack

    def wrap(self, owner, attribute: str, name: str) -> None:
        original = getattr(owner, attribute)
        timer = self

        def timed(*args, **kwargs):
            timer._stack.append([name, 0.0])
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - started
                _, children = timer._stack.pop()
                timer.exclusive[name] += elapsed - children
                timer.calls[name] += 1
                if timer._stack:
                    timer._stack[-1][1] += elapsed

        setattr(owner, attribute, timed)

    def reset(self) -> None:
        self.exclusive.clear()
        self.calls.clear()


def instrument(timer: StageTimer) -> None:
    P, M = pipeline_module.ObjectMappingPipeline, mapper_module.OnlineMapper
    timer.wrap(P, "process", "other (pipeline bookkeeping, locks, RNG)")
    timer.wrap(P, "_prepare", "input conversion (fit, crop, LiDAR in view)")
    timer.wrap(M, "integrate", "mapper bookkeeping (depth projection, targets, keyframes)")
    timer.wrap(M, "_grow", "growth (new Gaussians, KD-tree scales)")
    timer.wrap(M, "_optimise", "optimisation loop overhead (zero_grad, .item())")
    # growth renders once without gradients, each iteration once with: both counted here
    timer.wrap(M, "render_with_meta", "render forward (projection, pairs, compositing)")
    for loss in ("photometric_loss", "depth_loss", "identity_loss_soft", "identity_loss"):
        timer.wrap(mapper_module, loss, "losses")
    timer.wrap(torch.Tensor, "backward", "backward (autograd through rasteriser and losses)")
    timer.wrap(torch.optim.Adam, "step", "Adam steps")
    timer.wrap(DensifyController, "before_backward", "densify (statistics, refinement)")
    timer.wrap(DensifyController, "after_backward", "densify (statistics, refinement)")
    timer.wrap(M, "_prune", "prune (transparent, non-finite)")
    timer.wrap(ObjectTracker, "update",
               "object extraction (live: in the frame; in a background thread with objects_period_s > 0)")
    # the extraction's own parts (the module attributes extract_instances calls through)
    timer.wrap(support_module, "fit_support_plane", "extraction: support plane (RANSAC)")
    timer.wrap(support_module.SupportSurface, "height_near", "extraction: support heights under objects")
    timer.wrap(extraction_module, "_boxed_object", "extraction: boxes")
    timer.wrap(extraction_module, "unknown_clusters", "extraction: unknown-kind clusters")


def identity_stage(timer: StageTimer, pipeline) -> None:
    if pipeline.identity is not None:
        timer.wrap(pipeline.identity, "pixel_logits", "GOCL (flip-averaged)")


def message_building_ms(objects) -> float:
    """The node's ~/objects and ~/object_markers conversions (ROS message types; skipped without ROS)."""
    try:
        from ocgs_ros.ros import conversions
    except ImportError:
        return float("nan")
    started = time.perf_counter()
    stamp = conversions.ns_to_stamp(0)
    instances = conversions.map_objects_to_msg(objects, "map", stamp)
    conversions.instance_markers(instances.objects, "map", stamp)
    return (time.perf_counter() - started) * 1e3


#: (settings, live) of each profile; the old path is reachable by settings (docs/mapping_speed.md)
OLD_PATH = {"mapper.fused_compositing": False, "mapper.frame_budget_ms": 0.0, "objects_period_s": 0.0,
            "mapper.grow_background_margin": 0.0, "mapper.grow_render_scale": 1.0,
            "mapper.live_init_opacity": 0.0, "mapper.live_pixel_stride": 1, "mapper.live_keyframe_rotation": False,
            "mapper.live_densify_window": 0, "mapper.live_grow_covered_sigma": 0.0,
            "mapper.live_densify_min_iterations": 0}
PROFILES = {
    "before": ({**OLD_PATH, "mapper.iterations_per_frame": 8}, False),
    "after": ({}, True),
    "baseline64": ({**OLD_PATH, "view.process_width": 64, "view.process_height": 64,
                    "mapper.iterations_per_frame": 4}, False),
    "offline": ({}, False),
}


#: node_bench's stream: sim_publisher's tabletop world (320x240 camera, 32x1024 LiDAR, world seed 0) at
#: 10 Hz, of which the node integrates about every third frame at 128x128 (3-3.5 frames/s)
STREAM_CAMERA, STREAM_LIDAR, STREAM_STRIDE = {"width": 320, "height": 240}, {"beams": 32, "azimuth_steps": 1024}, 3


def profile_frames(world_name: str, frames: int) -> list:
    """``evaluator``: the evaluator's tabletop (dataset seed 7, scene 0), ``frames`` spread over one
    orbit; ``stream``: node_bench's stream world, every ``STREAM_STRIDE``-th consecutive frame."""
    if world_name == "stream":
        world = TabletopWorld(TabletopConfig.from_dict({"camera": STREAM_CAMERA, "lidar": STREAM_LIDAR}), seed=0)
        return [mapping_frame(world, i * STREAM_STRIDE) for i in range(frames)]
    world = TabletopWorld(make_world_config(EvalConfig()), scene_seed(7, 0))
    per_orbit = world.config.frames_per_orbit
    return [mapping_frame(world, int(i * per_orbit / frames)) for i in range(frames)]


def profile(settings: dict, frames: int, warmup: int, live: bool, timer: StageTimer, world: str = "evaluator") -> dict:
    torch.set_num_threads(1)
    mapping_frames = profile_frames(world, frames)
    timer.reset()
    pipeline = pipeline_module.ObjectMappingPipeline(from_flat(MappingConfig, settings))
    identity_stage(timer, pipeline)
    totals, messages, iterations = [], [], []
    for index, frame in enumerate(mapping_frames):
        if index == warmup:
            timer.reset()
        iterations_before = pipeline.mapper.iterations
        started = time.perf_counter()
        update = pipeline.process(frame, live=live)
        elapsed = time.perf_counter() - started
        if index >= warmup:
            totals.append(elapsed * 1e3)
            messages.append(message_building_ms(update.objects))
            iterations.append(pipeline.mapper.iterations - iterations_before)
    counted = len(totals)
    stages = {name: round(seconds * 1e3 / counted, 1) for name, seconds in
              sorted(timer.exclusive.items(), key=lambda item: -item[1])}
    stages["message building (~/objects, ~/object_markers)"] = round(float(np.nanmean(messages)), 1)
    return {"settings": settings, "live": live, "world": world, "frames": frames, "counted_frames": counted,
            "frame_ms_mean": round(float(np.mean(totals)), 1), "frame_ms_median": round(float(np.median(totals)), 1),
            "iterations_per_frame_mean": round(float(np.mean(iterations)), 2),
            "gaussians_at_end": pipeline.map.num_gaussians, "stages_ms_per_frame": stages,
            "load_average": os.getloadavg()}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profiles", nargs="+", default=["before", "after"], choices=sorted(PROFILES))
    parser.add_argument("--world", choices=["evaluator", "stream"], default="evaluator",
                        help="evaluator: its tabletop, frames over one orbit; stream: node_bench's world and stream "
                             f"(every {STREAM_STRIDE}rd frame of 10 Hz, as the node integrates it)")
    parser.add_argument("--frames", type=int, default=16, help="frames integrated")
    parser.add_argument("--warmup", type=int, default=4, help="first frames integrated but not counted")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="a pipeline setting")
    parser.add_argument("--out", default="", help="JSON result (optional)")
    args = parser.parse_args(argv)
    try:
        overrides = parse_set_options(args.set)
        from_flat(MappingConfig, overrides)  # names and values checked before minutes of mapping
    except (ValueError, TypeError) as exc:
        parser.error(str(exc))
    timer = StageTimer()
    instrument(timer)
    result = {"command": "python benchmarks/mapping_profile.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "profiles": {}}
    for name in args.profiles:
        settings, live = PROFILES[name]
        entry = profile({**settings, **overrides}, args.frames, args.warmup, live, timer, args.world)
        result["profiles"][name] = entry
        print(f"{name}: settings {entry['settings'] or 'defaults'}, live {live}: {entry['frame_ms_mean']} ms per "
              f"frame (mean; median {entry['frame_ms_median']}), {entry['iterations_per_frame_mean']} iterations "
              f"per frame, {entry['gaussians_at_end']} Gaussians at the end, load {entry['load_average']}")
    names = list(result["profiles"])
    print("| stage | " + " | ".join(names) + " |\n|---|" + "---|" * len(names))
    stages = dict.fromkeys(s for p in result["profiles"].values() for s in p["stages_ms_per_frame"])
    for stage in stages:
        print(f"| {stage} | " + " | ".join(str(result["profiles"][n]["stages_ms_per_frame"].get(stage, 0.0))
                                            for n in names) + " |")
    print("| **frame (mean)** | " + " | ".join(str(result["profiles"][n]["frame_ms_mean"]) for n in names) + " |")
    if args.out:
        atomic_write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
