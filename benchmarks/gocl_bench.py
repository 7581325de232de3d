"""GOCL inference benchmark: time per image of ``GoclSegmenter.segment`` on the CPU for the ``cpu``
and ``default`` presets at their own resolution, batch 1 and batch 8, plus one training step of
each (batch 8) for reference.

    OMP_NUM_THREADS=1 python benchmarks/gocl_bench.py [--checkpoint ocgs_ros/models/gocl_tabletop.pt] \\
        [--threads 1] [--out docs/results/gocl_bench.json]

Inference time does not depend on the weights, so untrained models are timed unless a checkpoint
is given (then its config replaces the ``cpu`` preset).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import sys
import time

import torch

from ocgs_ros.atomic_io import atomic_write_json
from ocgs_ros.ocl import GoclConfig, GoclModel, GoclSegmenter, build_optimizer, load_checkpoint, train_step


def median_seconds(fn, repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_model(name: str, model: GoclModel, repeats: int, train_repeats: int) -> dict:
    cfg = model.config
    segmenter = GoclSegmenter(model.eval())
    out = {"resolution": f"{cfg.image_width}x{cfg.image_height}", "slots": cfg.num_slots,
           "codebook_size": cfg.codebook_size,
           "parameters": sum(p.numel() for p in model.parameters())}
    for batch in (1, 8):
        images = torch.rand(batch, 3, cfg.image_height, cfg.image_width)
        seconds = median_seconds(lambda: segmenter.segment(images), repeats)
        out[f"ms_per_image_batch{batch}"] = round(1000 * seconds / batch, 3)
        print(f"{name}: segment batch {batch}: {1000 * seconds / batch:.2f} ms/image", flush=True)
    optimizer = build_optimizer(model)
    images = torch.rand(8, 3, cfg.image_height, cfg.image_width)
    step = iter(range(10 ** 9))
    seconds = median_seconds(lambda: train_step(model, optimizer, images, next(step)), train_repeats, warmup=1)
    out["train_step_batch8_s"] = round(seconds, 4)
    print(f"{name}: train step batch 8: {seconds:.3f} s", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--train-repeats", type=int, default=5)
    parser.add_argument("--skip-default", action="store_true", help="time only the cpu preset")
    parser.add_argument("--out", default="docs/results/gocl_bench.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.checkpoint:
        cpu_model, _, _ = load_checkpoint(args.checkpoint)
    else:
        cpu_model = GoclModel(GoclConfig.cpu())
    result = {"cpu_preset": bench_model("cpu", cpu_model, args.repeats, args.train_repeats)}
    # Baseline in the same run: the same slot-attention model without the codebook, i.e. what the
    # global codebook costs at inference (quantisation inside every slot-attention iteration).
    plain = GoclModel(dataclasses.replace(cpu_model.config, use_codebook=False))
    result["cpu_preset_no_codebook"] = bench_model("cpu, no codebook", plain, args.repeats, args.train_repeats)
    result["codebook_inference_cost_ratio"] = round(
        result["cpu_preset"]["ms_per_image_batch1"] / result["cpu_preset_no_codebook"]["ms_per_image_batch1"], 3)
    print(f"gocl_bench: codebook / no-codebook inference time (batch 1): {result['codebook_inference_cost_ratio']:.2f}x")
    if not args.skip_default:
        result["default_preset"] = bench_model("default", GoclModel(GoclConfig.default()),
                                               max(3, args.repeats // 4), 2)
    result.update(threads=args.threads, checkpoint=args.checkpoint, torch=torch.__version__,
                  platform=platform.platform(), command=" ".join(["python benchmarks/gocl_bench.py", *argv]),
                  load_average_1_5_15=[round(v, 2) for v in os.getloadavg()],
                  note="medians of repeated runs; load_average shows how busy the CPU was at the end")
    atomic_write_json(args.out, result)
    print(f"gocl_bench: wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
