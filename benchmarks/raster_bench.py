"""Rasteriser benchmark: forward+backward time of the CPU (torch) backend for 10k/50k/100k Gaussians
at 160x120 and 320x240, with peak memory. Baseline in the same run: compositing without tile
binning (every Gaussian tested at every pixel, pixel chunks), at the smallest size.

    OMP_NUM_THREADS=2 python benchmarks/raster_bench.py [--out docs/results/raster_bench.json]
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import sys
import time

import torch
from gsplat.cuda._torch_impl import _fully_fused_projection, _quat_scale_to_covar_preci

from ocgs_ros.atomic_io import atomic_write_json
from ocgs_ros.gaussians.raster import rasterize_torch


def map_like_scene(n: int, width: int, seed: int = 0):
    """Gaussians spread through the camera frustum at 2–6 m, a few pixels across, as in a map."""
    g = torch.Generator().manual_seed(seed)
    z = torch.rand(n, generator=g) * 4 + 2
    x = (torch.rand(n, generator=g) - 0.5) * z * 1.2
    y = (torch.rand(n, generator=g) - 0.5) * z * 0.9
    means = torch.stack([x, y, z], 1)
    scales = torch.exp(torch.empty(n, 3).uniform_(-5.0, -3.5, generator=g))
    quats = torch.randn(n, 4, generator=g)
    opacities = torch.rand(n, generator=g) * 0.8 + 0.1
    colors = torch.rand(n, 3 + 16, generator=g)  # RGB + a 16-d identity feature, as the map renders
    f = width * 0.85
    Ks = torch.tensor([[[f, 0, width / 2], [0, f, width * 3 / 8], [0, 0, 1]]])
    return means, quats, scales, opacities, colors, torch.eye(4)[None], Ks


def untiled_baseline(means, quats, scales, opacities, colors, viewmats, Ks, width, height, chunk=256):
    covars, _ = _quat_scale_to_covar_preci(quats, scales, True, False)
    radii, m2, depths, conics, _ = _fully_fused_projection(means, covars, viewmats, Ks, width, height)
    ids = torch.nonzero((radii[0] > 0).all(-1)).squeeze(1)
    ids = ids[torch.argsort(depths[0][ids])]
    m2, con, op, col = m2[0][ids], conics[0][ids], opacities[ids], colors[ids]
    ys, xs = torch.meshgrid(torch.arange(height, dtype=means.dtype), torch.arange(width, dtype=means.dtype),
                            indexing="ij")
    pix = torch.stack([xs.ravel(), ys.ravel()], 1)
    out = []
    for start in range(0, len(pix), chunk):
        d = pix[start:start + chunk, None, :] - m2[None]
        sigma = 0.5 * (con[:, 0] * d[..., 0] ** 2 + con[:, 2] * d[..., 1] ** 2) + con[:, 1] * d[..., 0] * d[..., 1]
        alpha = torch.clamp_max(op * torch.exp(-sigma), 0.99)
        alpha = torch.where((sigma >= 0) & (alpha >= 1 / 255), alpha, torch.zeros_like(alpha))
        T = torch.cumprod(1 - alpha, 1)
        T_excl = torch.cat([torch.ones_like(T[:, :1]), T[:, :-1]], 1)
        out.append((alpha * T_excl * (T > 1e-4)) @ col)
    return torch.cat(out).view(height, width, -1)


def time_fwd_bwd(fn, scene, repeats):
    times = []
    for r in range(repeats + 1):
        leaves = [t.clone().requires_grad_(i < 5) for i, t in enumerate(scene)]
        start = time.perf_counter()
        out = fn(*leaves)
        (out[0] if isinstance(out, tuple) else out).sum().backward()
        if r:  # first run is warm-up
            times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", default="10000,50000,100000")
    parser.add_argument("--sizes", default="160x120,320x240")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline-count", type=int, default=2000)
    parser.add_argument("--out", default="docs/results/raster_bench.json")
    args = parser.parse_args(argv)
    results = {"raster_fwd_bwd_ms": {}, "threads": torch.get_num_threads()}
    for size in args.sizes.split(","):
        w, h = map(int, size.split("x"))
        for n in map(int, args.counts.split(",")):
            scene = map_like_scene(n, w)
            ms = time_fwd_bwd(lambda *s: rasterize_torch(*s, w, h), scene, args.repeats)
            results["raster_fwd_bwd_ms"][f"{n}@{size}"] = round(ms, 1)
            print(f"torch backend  {n:>7d} Gaussians  {size:>8s}  fwd+bwd {ms:9.1f} ms", flush=True)
    # The untiled baseline keeps every pixel-Gaussian pair in the autograd graph (what tiling
    # avoids), so it is measured at a count it can hold in memory, against ours at the same count.
    w, h = map(int, args.sizes.split(",")[0].split("x"))
    n = args.baseline_count
    scene = map_like_scene(n, w)
    base = time_fwd_bwd(lambda *s: untiled_baseline(*s, w, h), scene, 1)
    ours = time_fwd_bwd(lambda *s: rasterize_torch(*s, w, h), scene, args.repeats)
    results["baseline_untiled_fwd_bwd_ms"] = {f"{n}@{w}x{h}": round(base, 1)}
    results["tiled_same_scene_fwd_bwd_ms"] = {f"{n}@{w}x{h}": round(ours, 1)}
    results["speedup_vs_untiled"] = round(base / ours, 2)
    print(f"untiled baseline {n} Gaussians {w}x{h}: {base:.1f} ms  -> tiled is {base / ours:.1f}x faster")
    results["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    results.update({"platform": platform.platform(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
                    "command": "python benchmarks/raster_bench.py " + " ".join(sys.argv[1:] if argv is None else argv)})
    print(f"peak RSS {results['peak_rss_mb']} MB")
    atomic_write_json(args.out, results)
    return results


if __name__ == "__main__":
    main()
