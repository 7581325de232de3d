"""Rasteriser benchmark: forward+backward time and peak memory of the torch (CPU) backend on
map-like scenes, against the plain dense rasteriser as the baseline. Writes docs/results/raster_bench.json.

    OMP_NUM_THREADS=1 python benchmarks/raster_bench.py [--sizes 10000 50000 100000]
        [--resolutions 160x120 320x240] [--channels 19] [--repeats 3] [--out docs/results/raster_bench.json]

Scene: a camera in a room (back wall, floor, ceiling, side walls); Gaussians sit on the visible
surfaces (sampled along random pixel rays), 0.3-1.5 px in size before gsplat's 0.3 px^2 blur,
opacity 0.2-1.0, like a map built from that camera. The render is RGB + identity features
(``--channels`` in total) + expected depth in one call ("RGB+ED"); the loss is a weighted sum of
all channels plus the alpha map, so every parameter gets a gradient.

Each configuration runs in a fresh process (spawn), so its peak resident-memory increase
(``VmHWM`` minus the resident size just before the first render) is its own.
Baseline: every visible Gaussian evaluated at every pixel, composited front to back in dense
``[pixels, Gaussians]`` blocks of pixel rows, back-propagated block by block so it fits in memory —
timed at the smallest size only (its cost is pixels x Gaussians).
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import statistics
import sys
import time

import torch

from ocgs_ros.atomic_io import atomic_write_json
from ocgs_ros.gaussians.raster.compositing import DEFAULT_MAX_PAIRS_PER_CHUNK

ROOM = {"back": 6.0, "floor": 1.2, "ceiling": -1.6, "side": 2.6}  # metres, camera optical frame


def room_scene(num_gaussians: int, width: int, height: int, channels: int, seed: int):
    """Gaussians on the visible surfaces of a box room; returns rasteriser inputs (float32)."""
    g = torch.Generator().manual_seed(seed)
    focal = 0.9 * width  # ~58 degree horizontal field of view at every resolution
    Ks = torch.tensor([[[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1.0]]])
    # rays through random image points (a little beyond the border, as a map extends past the view)
    u = (torch.rand(num_gaussians, generator=g) * 1.1 - 0.55) * width / focal
    v = (torch.rand(num_gaussians, generator=g) * 1.1 - 0.55) * height / focal
    rays = torch.stack([u, v, torch.ones_like(u)], dim=1)
    hits = torch.full((num_gaussians,), ROOM["back"])  # distance along z to the nearest wall
    for axis, bound in ((1, ROOM["floor"]), (1, ROOM["ceiling"]), (0, ROOM["side"]), (0, -ROOM["side"])):
        t = bound / rays[:, axis]
        hits = torch.where((t > 0) & (t < hits), t, hits)
    depth = hits * (1.0 + 0.01 * torch.randn(num_gaussians, generator=g))
    means = rays * depth[:, None]
    metres_per_pixel = depth / focal
    scales = metres_per_pixel[:, None] * (0.3 + 1.2 * torch.rand(num_gaussians, 3, generator=g))
    quats = torch.randn(num_gaussians, 4, generator=g)
    opacities = 0.2 + 0.8 * torch.rand(num_gaussians, generator=g)
    colors = torch.rand(num_gaussians, channels, generator=g)
    viewmats = torch.eye(4)[None]
    return means, quats, scales, opacities, colors, viewmats, Ks


def dense_render_and_backward(means, quats, scales, opacities, colors, viewmats, Ks, width, height,
                              loss_weights=None, max_elements: int = 1 << 22):
    """Baseline: every visible Gaussian at every pixel, composited front to back in dense
    ``[pixels, Gaussians]`` blocks of pixel rows (gsplat's rules, "RGB+ED").

    With ``loss_weights`` it also back-propagates ``sum(image * loss_weights) + sum(alpha)`` block by
    block into the projected quantities, then once through the projection — exact, and without
    holding the whole ``pixels x Gaussians`` graph (10k Gaussians x 19200 pixels would need many GB).
    Returns ``(image [1,H,W,X], alpha [1,H,W,1])`` (detached when back-propagating)."""
    from gsplat.cuda._torch_impl import _fully_fused_projection, _quat_scale_to_covar_preci

    covars, _ = _quat_scale_to_covar_preci(quats, scales, True, False)
    radii, means2d, depths, conics, _ = _fully_fused_projection(means, covars, viewmats, Ks, width, height)
    visible = torch.nonzero((radii[0] > 0).all(-1)).squeeze(1)
    order = visible[torch.argsort(depths[0, visible])]
    projected = [means2d[0, order], conics[0, order], opacities[order],
                 torch.cat([colors[order], depths[0, order, None]], dim=1)]
    leaves = [t.detach().requires_grad_(loss_weights is not None) for t in projected]
    mean, conic, opacity, feats = leaves
    rows_per_block = max(1, max_elements // max(1, order.numel() * width))
    images, alphas = [], []
    for y0 in range(0, height, rows_per_block):
        ys = torch.arange(y0, min(y0 + rows_per_block, height), dtype=mean.dtype)
        xs = torch.arange(width, dtype=mean.dtype) + 0.5
        pixels = torch.stack(torch.broadcast_tensors(xs[None, :], ys[:, None] + 0.5), dim=-1).reshape(-1, 2)
        delta = mean[None] - pixels[:, None]  # [P, G, 2]
        a, b, c = conic.unbind(-1)
        sigma = 0.5 * (a * delta[..., 0] ** 2 + c * delta[..., 1] ** 2) + b * delta[..., 0] * delta[..., 1]
        alpha = torch.clamp_max(opacity * torch.exp(-sigma), 0.999)
        alpha = torch.where((sigma >= 0) & (alpha >= 1 / 255), alpha, torch.zeros_like(alpha))
        trans_incl = torch.cumprod(1 - alpha, dim=1)
        trans_excl = torch.cat([torch.ones_like(trans_incl[:, :1]), trans_incl[:, :-1]], dim=1)
        weights = alpha * trans_excl * (trans_incl > 1e-4)
        image, acc = weights @ feats, weights.sum(1, keepdim=True)
        image = torch.cat([image[:, :-1], image[:, -1:] / acc.clamp_min(1e-10)], dim=1)
        if loss_weights is not None:
            block_weights = loss_weights[0, y0:y0 + ys.numel()].reshape(-1, image.shape[1])
            ((image * block_weights).sum() + acc.sum()).backward()
            image, acc = image.detach(), acc.detach()
        images.append(image)
        alphas.append(acc)
    if loss_weights is not None:
        torch.autograd.backward(projected, [leaf.grad for leaf in leaves])
    return torch.cat(images).reshape(1, height, width, -1), torch.cat(alphas).reshape(1, height, width, 1)


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} missing from /proc/self/status")


def run_config(config: dict) -> dict:
    """One configuration in this (fresh) process: median forward+backward ms and peak memory."""
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    from ocgs_ros.gaussians.raster import rasterize

    width, height = config["width"], config["height"]
    scene = room_scene(config["gaussians"], width, height, config["channels"], config["seed"])
    params = [t.clone().requires_grad_(True) for t in scene[:5]]
    cams = scene[5:]
    loss_weights = torch.rand(1, height, width, config["channels"] + 1, generator=torch.Generator().manual_seed(1))

    def torch_forward():
        image, alpha, meta = rasterize(*params, *cams, width, height, render_mode="RGB+ED", backend="torch",
                                       max_pairs_per_chunk=config["max_pairs_per_chunk"])
        torch_forward.pairs = meta["n_pairs"]
        return image, alpha
    torch_forward.pairs = None

    def timed_run() -> tuple[float, float]:
        """(forward ms, forward+backward ms); the dense baseline interleaves its backward with the
        forward blocks, so its forward is timed separately without autograd."""
        start = time.perf_counter()
        if config["method"] == "dense":
            with torch.no_grad():
                dense_render_and_backward(*params, *cams, width, height)
            mid = time.perf_counter()
            dense_render_and_backward(*params, *cams, width, height, loss_weights)
            end = time.perf_counter()
            return (mid - start) * 1e3, (end - mid) * 1e3
        image, alpha = torch_forward()
        mid = time.perf_counter()
        ((image * loss_weights).sum() + alpha.sum()).backward()
        end = time.perf_counter()
        return (mid - start) * 1e3, (end - start) * 1e3

    baseline_kib = _status_kib("VmRSS")
    forward_ms, total_ms = [], []
    for i in range(config["repeats"] + 1):  # first run is warm-up
        fwd, total = timed_run()
        for p in params:
            p.grad = None
        if i:
            forward_ms.append(fwd)
            total_ms.append(total)
    render = torch_forward
    return {**config, "forward_ms": statistics.median(forward_ms), "forward_backward_ms": statistics.median(total_ms),
            "peak_mem_mib": (_status_kib("VmHWM") - baseline_kib) / 1024.0, "pairs": render.pairs}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000, 100_000])
    parser.add_argument("--resolutions", nargs="+", default=["160x120", "320x240"])
    parser.add_argument("--channels", type=int, default=19, help="feature channels besides depth (RGB + identity)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-pairs-per-chunk", type=int, default=DEFAULT_MAX_PAIRS_PER_CHUNK,
                        help="torch backend memory bound (pixel-Gaussian pairs composited at once)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the dense baseline")
    parser.add_argument("--out", default="docs/results/raster_bench.json")
    args = parser.parse_args(argv)
    resolutions = [tuple(int(v) for v in r.lower().split("x")) for r in args.resolutions]

    configs = [dict(method="torch", gaussians=n, width=w, height=h, channels=args.channels, seed=args.seed,
                    repeats=args.repeats, max_pairs_per_chunk=args.max_pairs_per_chunk)
               for (w, h) in resolutions for n in args.sizes]
    if not args.no_baseline:
        w, h = min(resolutions, key=lambda r: r[0] * r[1])
        configs.insert(0, dict(method="dense", gaussians=min(args.sizes), width=w, height=h,
                               channels=args.channels, seed=args.seed, repeats=1, max_pairs_per_chunk=None))
    context = multiprocessing.get_context("spawn")
    rows = []
    for config in configs:
        with context.Pool(1) as pool:
            rows.append(pool.apply(run_config, (config,)))
        r = rows[-1]
        print(f"{r['method']:>6} {r['gaussians']:>7} {r['width']}x{r['height']}: fwd {r['forward_ms']:8.1f} ms, "
              f"fwd+bwd {r['forward_backward_ms']:8.1f} ms, peak +{r['peak_mem_mib']:7.1f} MiB", flush=True)

    print(f"\n{'method':>6} {'N':>7} {'image':>8} {'fwd ms':>9} {'fwd+bwd ms':>11} {'peak MiB':>9} {'pairs':>9}")
    for r in rows:
        pairs = "-" if r["pairs"] is None else f"{r['pairs']:,}"
        print(f"{r['method']:>6} {r['gaussians']:>7} {r['width']:>4}x{r['height']:<3} {r['forward_ms']:9.1f} "
              f"{r['forward_backward_ms']:11.1f} {r['peak_mem_mib']:9.1f} {pairs:>9}")
    result = {"rows": rows, "channels": args.channels + 1, "render_mode": "RGB+ED",
              "threads": int(os.environ.get("OMP_NUM_THREADS", "0") or 0) or torch.get_num_threads(),
              "torch": torch.__version__, "python": sys.version.split()[0], "machine": platform.machine(),
              "processor": platform.processor()}
    dense = [r for r in rows if r["method"] == "dense"]
    if dense:
        same = [r for r in rows if r["method"] == "torch" and r["gaussians"] == dense[0]["gaussians"]
                and (r["width"], r["height"]) == (dense[0]["width"], dense[0]["height"])]
        if same:
            ratio = dense[0]["forward_backward_ms"] / same[0]["forward_backward_ms"]
            mem_ratio = dense[0]["peak_mem_mib"] / max(same[0]["peak_mem_mib"], 1e-3)
            result["speedup_vs_dense"] = ratio
            result["memory_ratio_dense_over_torch"] = mem_ratio
            print(f"\ntorch backend vs dense baseline at {dense[0]['gaussians']} Gaussians, "
                  f"{dense[0]['width']}x{dense[0]['height']}: {ratio:.1f}x faster (fwd+bwd), "
                  f"{mem_ratio:.1f}x less peak memory")
    atomic_write_json(args.out, result)
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
