"""Gaussian map benchmark: online mapping speed and memory, and rasteriser forward+backward times.
Writes docs/results/gaussian_map_bench.json.

    OMP_NUM_THREADS=1 python benchmarks/gaussian_map_bench.py [--frames 24] [--set NAME=VALUE ...]
        [--sizes 10000 50000 100000 --resolutions 160x120 320x240]
        [--out docs/results/gaussian_map_bench.json]

Mapping: the evaluation's scene (GOCL tabletop world, dataset seed 7 scene 0, the sim_publisher's
320x240 camera + 32x1024 LiDAR, see ``ocgs_ros.mapping.evaluate``) fed frame by frame to the mapping
pipeline at the node's defaults (``MappingConfig()``; ``--set`` changes a dotted setting). Identity
comes from the simulator's object kinds here (the cost of the identity loss does not depend on where
its targets come from, and the benchmark should not need a trained GOCL). Reported: ms per
optimisation iteration (time inside the optimiser / iterations), keyframes integrated per second
(whole ``process`` calls: view crop, growth render, optimisation, pruning, object extraction), final
Gaussian count, and peak resident memory of the mapping process (``VmHWM``). Baseline in the same
run: the same mapping with densification off, so the ratio is what densify/prune costs.

Rasteriser: ``benchmarks/raster_bench.py``'s room scene and timing code, reused (each size in a
fresh process), with its dense baseline at the smallest size.
"""
from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import raster_bench  # noqa: E402  (sibling benchmark: scene + timing code reused, not copied)

from ocgs_ros.atomic_io import atomic_write_json  # noqa: E402
from ocgs_ros.settings import to_flat  # noqa: E402


def run_mapping(config: dict) -> dict:
    """Integrate the benchmark sequence in this (fresh) process; returns timings and memory."""
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    # imported here, in the fresh process whose peak memory is the measurement
    from ocgs_ros.mapping.evaluate import (EvalConfig, OracleIdentity, frame_indices, make_world_config,
                                           mapping_config_from_args, mapping_frame)
    from ocgs_ros.mapping.pipeline import ObjectMappingPipeline
    from ocgs_ros.sim.dataset import scene_seed
    from ocgs_ros.sim.tabletop import TabletopWorld

    cfg = EvalConfig(frames=config["frames"])
    mapping = mapping_config_from_args(config["sets"], None, config["seed"])
    mapping = dataclasses.replace(mapping, mapper=dataclasses.replace(mapping.mapper, densify=config["densify"]))
    world_config = make_world_config(cfg)
    world = TabletopWorld(world_config, seed=scene_seed(cfg.dataset_seed, 0))
    integrated, _ = frame_indices(cfg, world_config.frames_per_orbit)
    frames = [mapping_frame(world, i) for i in integrated]
    identity = OracleIdentity(mapping.gocl.num_codebook_entries)
    for f in frames:
        identity.add_view(world, f, mapping)
    pipeline = ObjectMappingPipeline(mapping, identity=identity)
    mapper = pipeline.mapper
    optimise = mapper._optimise
    optimise_time = [0.0]

    def timed_optimise():  # time spent inside the optimiser only
        start = time.perf_counter()
        out = optimise()
        optimise_time[0] += time.perf_counter() - start
        return out
    mapper._optimise = timed_optimise
    baseline_kib = raster_bench._status_kib("VmRSS")
    start = time.perf_counter()
    for f in frames:
        pipeline.process(f)
    total = time.perf_counter() - start
    return {**config, "ms_per_iteration": 1e3 * optimise_time[0] / max(mapper.iterations, 1),
            "keyframes_per_s": len(mapper.keyframes) / total, "frames_per_s": len(frames) / total,
            "keyframes": len(mapper.keyframes), "iterations_total": mapper.iterations,
            "num_gaussians": mapper.map.num_gaussians, "densify_totals": dict(mapper.densifier.totals),
            "mapping_settings": to_flat(mapping),
            "peak_rss_mb": raster_bench._status_kib("VmHWM") / 1024.0,
            "peak_rss_increase_mb": (raster_bench._status_kib("VmHWM") - baseline_kib) / 1024.0}


def _in_fresh_process(fn, config: dict) -> dict:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(fn, (config,))


def main(argv=None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--frames", type=int, default=24)
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="NAME=VALUE",
                   help="a pipeline setting by its dotted name (default: the node's MappingConfig())")
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000, 100_000])
    p.add_argument("--resolutions", nargs="+", default=["160x120", "320x240"])
    p.add_argument("--channels", type=int, default=19, help="raster feature channels besides depth")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-raster", action="store_true", help="skip the rasteriser rows")
    p.add_argument("--out", default="docs/results/gaussian_map_bench.json")
    args = p.parse_args(argv)

    load_before = os.getloadavg()[0]  # other jobs on this CPU slow every figure down; recorded with them
    mapping = {"frames": args.frames, "sets": args.sets, "seed": args.seed}
    result = _in_fresh_process(run_mapping, {**mapping, "densify": True})
    baseline = _in_fresh_process(run_mapping, {**mapping, "densify": False})
    settings = result["mapping_settings"]
    print(f"mapping {settings['view.process_width']}x{settings['view.process_height']}, {args.frames} frames x "
          f"{settings['mapper.iterations_per_frame']} iterations: "
          f"{result['ms_per_iteration']:.1f} ms/iteration, {result['keyframes_per_s']:.3f} keyframes/s, "
          f"{result['num_gaussians']} Gaussians, peak RSS {result['peak_rss_mb']:.0f} MB")
    ratio = result["ms_per_iteration"] / baseline["ms_per_iteration"]
    print(f"baseline without densification: {baseline['ms_per_iteration']:.1f} ms/iteration, "
          f"{baseline['num_gaussians']} Gaussians -> ratio with/without densify {ratio:.2f}")

    raster_rows, raster_ms = [], {}
    if not args.no_raster:
        resolutions = [tuple(int(v) for v in r.lower().split("x")) for r in args.resolutions]
        configs = [dict(method="torch", gaussians=n, width=w, height=h, channels=args.channels, seed=args.seed,
                        repeats=args.repeats, max_pairs_per_chunk=raster_bench.DEFAULT_MAX_PAIRS_PER_CHUNK)
                   for (w, h) in resolutions for n in args.sizes]
        w, h = min(resolutions, key=lambda r: r[0] * r[1])
        configs.insert(0, dict(method="dense", gaussians=min(args.sizes), width=w, height=h, channels=args.channels,
                               seed=args.seed, repeats=1, max_pairs_per_chunk=None))
        for config in configs:
            row = _in_fresh_process(raster_bench.run_config, config)
            raster_rows.append(row)
            print(f"raster {row['method']:>5} {row['gaussians']:>7} {row['width']}x{row['height']}: "
                  f"fwd+bwd {row['forward_backward_ms']:.1f} ms", flush=True)
            if row["method"] == "torch":
                raster_ms[f"{row['gaussians']}@{row['width']}x{row['height']}"] = row["forward_backward_ms"]
        dense = raster_rows[0]
        same = raster_ms.get(f"{dense['gaussians']}@{dense['width']}x{dense['height']}")
        if same:
            print(f"raster speed-up vs dense baseline at {dense['gaussians']} Gaussians {dense['width']}x"
                  f"{dense['height']}: {dense['forward_backward_ms'] / same:.1f}x")

    out = {
        "ms_per_iteration": result["ms_per_iteration"], "keyframes_per_s": result["keyframes_per_s"],
        "num_gaussians": result["num_gaussians"], "peak_rss_mb": result["peak_rss_mb"],
        "raster_fwd_bwd_ms": raster_ms, "mapping": result, "baseline_no_densify": baseline,
        "densify_cost_ratio": ratio, "raster_rows": raster_rows,
        "raster_speedup_vs_dense": (raster_rows[0]["forward_backward_ms"] /
                                    raster_ms[f"{raster_rows[0]['gaussians']}@{raster_rows[0]['width']}x"
                                              f"{raster_rows[0]['height']}"]) if raster_rows else None,
        "threads": int(os.environ.get("OMP_NUM_THREADS", "0") or 0) or torch.get_num_threads(),
        "cpu_count": os.cpu_count(), "load_average_1min": {"start": load_before, "end": os.getloadavg()[0]},
        "torch": torch.__version__, "python": sys.version.split()[0], "machine": platform.machine(),
        "command": " ".join(["python benchmarks/gaussian_map_bench.py", *argv]),
    }
    atomic_write_json(args.out, out)
    print(f"wrote {args.out}")
    return out


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
