"""gaussian_map_evaluate: the object-aware Gaussian map on simulated tabletop scenes GOCL never saw.

    OMP_NUM_THREADS=1 python -m ocgs_ros.gaussians.evaluate [--checkpoint ocgs_ros/models/gocl_tabletop.pt]
        [--scenes 6 --frames 24 --heldout 6 --width 96 --height 96 --iterations 15]
        [--out docs/results/gaussian_map.json --figure docs/results/gaussian_map.png] [--seed 0]

Scenes: GOCL's tabletop world (:func:`ocgs_ros.ocl.data.gocl_tabletop_config`: 2-5 objects, 40°
camera) with dataset seed 7 (GOCL trains on seed 0, is evaluated on seed 1), a square camera (GOCL
squeezes other aspect ratios) and the simulated LiDAR. So that cross-scene identity can be measured
at all with a few scenes, scenes are taken in index order, skipping any that shares no object kind
with the scenes already taken (ground-truth kinds choose *which* test scenes, never tune anything).

Per scene: ``--frames`` posed frames evenly spread over the orbit are integrated (camera + LiDAR
from the simulator, identity targets from ``GoclSegmenter.segment``); ``--heldout`` other frames,
half-way between integrated ones, are only rendered. Two maps are built with the same pipeline:

* **codebook** — identity supervised by GOCL's per-pixel codebook distribution (channel = entry + 1);
* **baseline** — identity supervised by raw slot indices (channel = slot index; slot 0 is background),
  what a slot model without a global codebook offers before any mask association.

Metrics on held-out views: PSNR/SSIM of the rendered RGB; identity mIoU (rendered instance mask of
the tracked objects vs the ground-truth instance mask, Hungarian-matched per view, mean over visible
objects); cross-view consistency (per GT object and view where it covers >= ``--min-pixels``
pixels, does the majority rendered entry over its pixels equal its majority over all views; an
object whose overall majority is background fails in every view; rendered and GOCL per-pixel
entries alike are read with ``map.entries_from_logits``: background if P(background) >= 0.5, else
the most probable entry);
cross-scene identity (kinds present in >= 2 scenes whose majority entries agree) and its
complement, kind collisions (pairs of identified objects of different kinds sharing a label);
instance recall
(GT objects whose axis-aligned 3D box, the AABB of the simulator's oriented box, is matched by an
instance AABB with IoU >= 0.5, Hungarian one-to-one). GOCL's own per-frame consistency on the same
held-out views is reported alongside, to separate what the map adds from what GOCL gives.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ocgs_ros.atomic_io import atomic_save_figure, atomic_write_json
from ocgs_ros.gaussians.eval_metrics import IdentityVotes, box_recall, gt_box_aabb, matched_instance_iou, psnr
from ocgs_ros.gaussians.losses import ssim
from ocgs_ros.gaussians.map import GaussianMapConfig, entries_from_logits
from ocgs_ros.gaussians.mapper import MapperConfig, OnlineMapper
from ocgs_ros.gaussians.objects import ObjectConfig, ObjectTracker, render_instance_mask
from ocgs_ros.ocl.checkpoint import load_checkpoint
from ocgs_ros.ocl.data import gocl_tabletop_config
from ocgs_ros.ocl.segment import DEFAULT_MASK_TEMPERATURE, PIXEL_PROB_FLOOR, GoclSegmenter
from ocgs_ros.sim.dataset import scene_seed
from ocgs_ros.sim.tabletop import TabletopWorld

TARGETS = {"cross_view_consistency": 0.95, "instance_recall_iou50": 0.9}
DEFAULT_OUT = "docs/results/gaussian_map.json"


@dataclass(frozen=True)
class EvalConfig:
    dataset_seed: int = 7
    scenes: int = 6
    scene_pool: int = 60  # scene indices considered when picking scenes that share kinds
    frames: int = 24
    heldout: int = 6
    width: int = 96
    height: int = 96
    hfov_deg: float = 40.0
    lidar_beams: int = 32
    lidar_azimuth_steps: int = 512
    iterations: int = 15
    max_gaussians: int = 20_000
    min_pixels: int = 20
    identity_targets: str = "soft"  # MapperConfig.identity_targets (soft won on dev seed 5, see docs)
    seed: int = 0


@dataclass
class SimFrame:
    index: int
    rgb: np.ndarray
    instance: np.ndarray
    kind: np.ndarray
    K: np.ndarray
    T_world_cam: np.ndarray
    points_world: np.ndarray


def make_world_config(cfg: EvalConfig):
    base = gocl_tabletop_config(cfg.width, cfg.height)
    return dataclasses.replace(base, camera=dataclasses.replace(base.camera, hfov_deg=cfg.hfov_deg),
                               lidar=dataclasses.replace(base.lidar, beams=cfg.lidar_beams,
                                                         azimuth_steps=cfg.lidar_azimuth_steps))


def pick_scenes(cfg: EvalConfig, world_config) -> list[int]:
    """Scene indices of dataset ``cfg.dataset_seed``: index order, each sharing an object kind with
    the ones already taken (the first is scene 0); falls back to plain order if the pool runs out."""
    chosen, kinds = [0], {o.kind_id for o in TabletopWorld(world_config, scene_seed(cfg.dataset_seed, 0)).objects}
    for index in range(1, cfg.scene_pool):
        if len(chosen) >= cfg.scenes:
            break
        world_kinds = {o.kind_id for o in TabletopWorld(world_config, scene_seed(cfg.dataset_seed, index)).objects}
        if world_kinds & kinds:
            chosen.append(index)
            kinds |= world_kinds
    index = 1
    while len(chosen) < cfg.scenes:
        if index not in chosen:
            chosen.append(index)
        index += 1
    return chosen[:cfg.scenes]


def frame_indices(cfg: EvalConfig, frames_per_orbit: int) -> tuple[list[int], list[int]]:
    step = frames_per_orbit / cfg.frames
    integrated = [int(round(k * step)) % frames_per_orbit for k in range(cfg.frames)]
    stride = cfg.frames / max(cfg.heldout, 1)
    heldout = [int(round((int(k * stride) + 0.5) * step)) % frames_per_orbit for k in range(cfg.heldout)]
    heldout = [h for h in dict.fromkeys(heldout) if h not in integrated]
    return integrated, heldout


def sim_frame(world: TabletopWorld, index: int) -> SimFrame:
    f = world.frame(index)
    T = f.T_world_base @ f.T_base_lidar
    points = f.lidar.points.astype(np.float64) @ T[:3, :3].T + T[:3, 3]
    return SimFrame(index, f.camera.rgb, f.camera.instance, f.camera.kind, f.camera.K, f.camera.T_world_cam, points)


class GoclIdentity:
    """Identity source of the evaluation: GOCL's ``segment`` on the camera images."""

    name = "gocl"

    def __init__(self, segmenter: GoclSegmenter):
        self.segmenter = segmenter
        self.num_entries = segmenter.model.config.codebook_size

    def __call__(self, frames: list[SimFrame]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(pixel_codebook_logits [B,M+1,H,W], masks [B,K,H,W])`` of the frames' images."""
        images = torch.stack([torch.from_numpy(f.rgb).permute(2, 0, 1).float() / 255.0 for f in frames])
        seg = self.segmenter.segment(images)
        return seg.pixel_codebook_logits, seg.masks


class OracleIdentity:
    """Development reference, not a result: targets from ground truth (entry = object kind, slot =
    instance id), i.e. a perfect GOCL. Shows what the map does with perfect identity targets."""

    name = "oracle_ground_truth"

    def __init__(self, num_entries: int = 32, num_slots: int = 6):
        self.num_entries, self.num_slots = num_entries, num_slots

    def __call__(self, frames: list[SimFrame]) -> tuple[torch.Tensor, torch.Tensor]:
        kind = torch.from_numpy(np.stack([f.kind for f in frames])).long()
        inst = torch.from_numpy(np.stack([f.instance for f in frames])).long().clamp_max(self.num_slots - 1)
        probs = torch.nn.functional.one_hot(kind + 1, self.num_entries + 1).permute(0, 3, 1, 2).float()
        masks = torch.nn.functional.one_hot(inst, self.num_slots).permute(0, 3, 1, 2).float()
        return probs.clamp_min(PIXEL_PROB_FLOOR).log(), masks


def slot_index_logits(masks: torch.Tensor, channels: int) -> torch.Tensor:
    """Baseline targets: GOCL's soft masks ``[K,H,W]`` (slot 0 = background) as log-probabilities
    over ``channels`` classes with class = slot index — no codebook."""
    if masks.shape[0] > channels:
        raise ValueError(f"{masks.shape[0]} slots do not fit in {channels} identity channels")
    probs = torch.full((channels, *masks.shape[1:]), PIXEL_PROB_FLOOR)
    probs[:masks.shape[0]] = masks.clamp_min(PIXEL_PROB_FLOOR)
    return probs.log()


def _render(mapper: OnlineMapper, frame: SimFrame):
    view = torch.as_tensor(np.linalg.inv(frame.T_world_cam), dtype=torch.float32)
    K = torch.as_tensor(frame.K, dtype=torch.float32)
    with torch.no_grad():
        rgb, _, logits, _ = mapper.render(view, K, frame.rgb.shape[1], frame.rgb.shape[0])
    return rgb.clamp(0, 1).numpy(), entries_from_logits(logits).numpy(), view.numpy()


def evaluate(cfg: EvalConfig, identity, progress: bool = True) -> tuple[dict, dict]:
    """Run the evaluation with ``identity`` (:class:`GoclIdentity` or :class:`OracleIdentity`);
    returns ``(results, figure_data)``."""
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    world_config = make_world_config(cfg)
    scenes = pick_scenes(cfg, world_config)
    num_entries = identity.num_entries
    map_config = GaussianMapConfig(num_codebook_entries=num_entries, max_gaussians=cfg.max_gaussians)
    mapper_config = MapperConfig(iterations_per_frame=cfg.iterations, densify_every=4 * cfg.iterations,
                                 densify_start_iter=4 * cfg.iterations, identity_targets=cfg.identity_targets,
                                 seed=cfg.seed)
    votes = {"codebook": IdentityVotes(), "baseline": IdentityVotes(), "gocl_frames": IdentityVotes()}
    psnrs, ssims, ious, recalls, per_scene = [], [], [], [], []
    iteration_times, figure = [], None
    integrated_ids, heldout_ids = frame_indices(cfg, world_config.frames_per_orbit)
    bar = tqdm(total=len(scenes) * (2 * len(integrated_ids) + len(heldout_ids)), desc="gaussian map eval",
               disable=not progress)
    for scene_index in scenes:
        world = TabletopWorld(world_config, seed=scene_seed(cfg.dataset_seed, scene_index))
        frames = [sim_frame(world, i) for i in integrated_ids]
        heldout = [sim_frame(world, i) for i in heldout_ids]
        pixel_logits, masks = identity(frames + heldout)
        mappers = {}
        for variant in ("codebook", "baseline"):
            mapper = OnlineMapper(map_config, mapper_config)
            start, iterations = time.perf_counter(), mapper.iterations
            for i, f in enumerate(frames):
                target = pixel_logits[i] if variant == "codebook" else slot_index_logits(masks[i], num_entries + 1)
                mapper.integrate(f.rgb, f.K, f.T_world_cam, f.points_world, target)
                bar.update(1)
            iteration_times.append((time.perf_counter() - start) / max(mapper.iterations - iterations, 1))
            mappers[variant] = mapper
        tracker = ObjectTracker(ObjectConfig())
        objects = tracker.update(mappers["codebook"].map)

        gt_objects = {o.instance_id: o for o in world.objects}
        scene_ious = []
        for h, f in enumerate(heldout):
            rgb, entries, view = _render(mappers["codebook"], f)
            _, slots, _ = _render(mappers["baseline"], f)
            target = f.rgb.astype(np.float64) / 255.0
            psnrs.append(psnr(rgb, target))
            ssims.append(float(ssim(torch.from_numpy(rgb).float(), torch.from_numpy(target).float())))
            instance_mask = render_instance_mask(mappers["codebook"], objects, view, f.K, f.rgb.shape[1], f.rgb.shape[0])
            gocl_entries = entries_from_logits(pixel_logits[len(frames) + h], dim=0).numpy()
            visible = [g for g in gt_objects if (f.instance == g).sum() >= cfg.min_pixels]
            for g in visible:
                pixels = f.instance == g
                key, kind = (scene_index, g), gt_objects[g].kind_id
                votes["codebook"].add(key, kind, entries[pixels])
                votes["baseline"].add(key, kind, slots[pixels])
                votes["gocl_frames"].add(key, kind, gocl_entries[pixels])
            view_ious = matched_instance_iou(instance_mask, f.instance, visible)
            scene_ious.extend(view_ious.values())
            if figure is None:
                figure = {"rgb": f.rgb, "rendered": rgb, "entries": entries, "instances": instance_mask,
                          "gt_instances": f.instance, "scene": scene_index, "frame": f.index}
            bar.update(1)
        ious.extend(scene_ious)
        gt_boxes = [gt_box_aabb(o.center, o.size, o.yaw) for o in world.objects]
        matched, box_ious = box_recall(gt_boxes, [(o.aabb_min, o.aabb_max) for o in objects])
        recalls.append((matched, len(gt_boxes)))
        per_scene.append({
            "scene_index": scene_index, "world_seed": scene_seed(cfg.dataset_seed, scene_index),
            "objects": [{"instance_id": o.instance_id, "kind_id": o.kind_id, "kind_name": o.kind_name,
                         "box_iou": round(iou, 4),
                         "held_out_identity": votes["codebook"].object_summary((scene_index, o.instance_id))}
                        for o, iou in zip(world.objects, box_ious)],
            "num_instances": len(objects), "num_gaussians": mappers["codebook"].map.num_gaussians,
            "baseline_num_gaussians": mappers["baseline"].map.num_gaussians,
            "identity_miou": float(np.mean(scene_ious)) if scene_ious else None,
            "instances_recalled": matched,
            "densify": dict(mappers["codebook"].densifier.totals),
            "non_finite_pruned": mappers["codebook"].non_finite_pruned,
        })
    bar.close()
    cross_scene, kind_entries = votes["codebook"].cross_scene()
    baseline_cross_scene, _ = votes["baseline"].cross_scene()
    total_matched, total_gt = sum(m for m, _ in recalls), sum(n for _, n in recalls)
    results = {
        "identity_source": identity.name,
        "psnr": float(np.mean(psnrs)), "ssim": float(np.mean(ssims)),
        "identity_miou": float(np.mean(ious)) if ious else None,
        "cross_view_consistency": votes["codebook"].cross_view_consistency(),
        "cross_scene_consistency": cross_scene,
        "cross_scene_kinds": {str(k): v for k, v in kind_entries.items()},
        "instance_recall_iou50": total_matched / total_gt if total_gt else None,
        "instance_box_iou": _box_description(ObjectConfig()),
        "baseline_slot_index_cross_view_consistency": votes["baseline"].cross_view_consistency(),
        "baseline_slot_index_cross_scene_consistency": baseline_cross_scene,
        "kind_collisions": votes["codebook"].kind_collisions(),
        "baseline_slot_index_kind_collisions": votes["baseline"].kind_collisions(),
        "gocl_per_frame_cross_view_consistency": votes["gocl_frames"].cross_view_consistency(),
        "cross_view_consistency_identified_objects": votes["codebook"].identified_cross_view_consistency(),
        "baseline_cross_view_consistency_identified_objects": votes["baseline"].identified_cross_view_consistency(),
        "objects_identified_fraction": votes["codebook"].identified_fraction(),
        "baseline_objects_identified_fraction": votes["baseline"].identified_fraction(),
        "num_gaussians": int(np.mean([s["num_gaussians"] for s in per_scene])),
        "integrate_ms_per_iteration": 1000.0 * float(np.mean(iteration_times)),  # whole integrate() calls
        "targets": TARGETS,
        "sizes": {**dataclasses.asdict(cfg), "scene_indices": scenes, "integrated_frames": integrated_ids,
                  "heldout_frames": heldout_ids, "codebook_entries": num_entries,
                  "mapper": dataclasses.asdict(mapper_config), "map": dataclasses.asdict(map_config),
                  "objects": dataclasses.asdict(ObjectConfig())},
        "per_scene": per_scene,
    }
    return results, figure


def _box_description(config: ObjectConfig) -> str:
    return (f"axis-aligned 3D IoU (GT: AABB of the simulator's oriented box; instance: AABB of its Gaussians, "
            f"centre +- {config.box_sigma:g} std, {100 * config.box_trim:g}% trimmed per face, bottom snapped "
            f"to the support within {100 * config.support_snap:g} cm; support at its Gaussians' centres + "
            f"{config.support_top_sigma:g} std along up; Gaussians under {100 * config.ground_clearance:g} cm "
            f"above it neither join objects nor widen the footprint by over "
            f"{100 * config.footprint_margin:g} cm)")


def save_figure(path: Path, figure: dict) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def colour_labels(labels, background):
        rng = np.random.default_rng(1)
        palette = rng.uniform(0.15, 1.0, size=(int(max(labels.max(), 0)) + 2, 3))
        out = palette[np.clip(labels, 0, None)]
        out[labels == background] = 0.0
        return out

    panels = [("camera (held-out)", figure["rgb"]), ("rendered RGB", figure["rendered"]),
              ("rendered codebook entry", colour_labels(figure["entries"], -1)),
              ("instance mask (object ids)", colour_labels(figure["instances"], 0)),
              ("GT instances", colour_labels(figure["gt_instances"], 0))]
    fig, axes = plt.subplots(1, len(panels), figsize=(3 * len(panels), 3.2))
    for ax, (title, image) in zip(axes, panels):
        ax.imshow(image, interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.suptitle(f"scene {figure['scene']} (dataset seed 7), frame {figure['frame']}", fontsize=10)
    fig.tight_layout()
    atomic_save_figure(fig, path, dpi=100)


def _finite(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def main(argv: list[str] | None = None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    from ocgs_ros.models import GOCL_TABLETOP

    d = EvalConfig()
    p = argparse.ArgumentParser(prog="gaussian_map_evaluate", description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", default=str(GOCL_TABLETOP), help="GOCL checkpoint (identity source)")
    p.add_argument("--out", default=DEFAULT_OUT)
    p.add_argument("--figure", default=None, help="PNG of a held-out view (default: --out with .png)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--dataset-seed", type=int, default=d.dataset_seed, help="scene seed (GOCL: 0 train, 1 held out)")
    p.add_argument("--scenes", type=int, default=d.scenes)
    p.add_argument("--frames", type=int, default=d.frames, help="integrated frames per scene")
    p.add_argument("--heldout", type=int, default=d.heldout, help="held-out (never integrated) views per scene")
    p.add_argument("--width", type=int, default=d.width)
    p.add_argument("--height", type=int, default=d.height)
    p.add_argument("--iterations", type=int, default=d.iterations, help="optimisation iterations per frame")
    p.add_argument("--max-gaussians", type=int, default=d.max_gaussians)
    p.add_argument("--lidar-beams", type=int, default=d.lidar_beams)
    p.add_argument("--lidar-azimuth-steps", type=int, default=d.lidar_azimuth_steps)
    p.add_argument("--identity-targets", choices=("hard", "soft"), default=d.identity_targets,
                   help="GOCL supervision: confidence-weighted argmax class, or its full distribution")
    p.add_argument("--mask-temperature", type=float, default=DEFAULT_MASK_TEMPERATURE,
                   help="GoclSegmenter mask temperature (sharper soft masks below 1)")
    p.add_argument("--no-flip-average", action="store_true",
                   help="GOCL per-pixel distributions of the image alone, not averaged with its mirror image")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--oracle-identity", action="store_true",
                   help="development reference: ground-truth identity targets instead of GOCL (not a result)")
    args = p.parse_args(argv)
    if min(args.scenes, args.frames, args.heldout, args.width, args.height, args.iterations) < 1:
        p.error("--scenes, --frames, --heldout, --width, --height and --iterations must be >= 1")
    if not args.mask_temperature > 0:
        p.error("--mask-temperature must be > 0")
    torch.set_num_threads(args.threads)
    cfg = EvalConfig(dataset_seed=args.dataset_seed, scenes=args.scenes, frames=args.frames, heldout=args.heldout,
                     width=args.width, height=args.height, iterations=args.iterations,
                     max_gaussians=args.max_gaussians, lidar_beams=args.lidar_beams,
                     lidar_azimuth_steps=args.lidar_azimuth_steps, identity_targets=args.identity_targets,
                     seed=args.seed)
    checkpoint, meta = Path(args.checkpoint), {}
    if args.oracle_identity:
        identity = OracleIdentity()
    else:
        model, _, meta = load_checkpoint(checkpoint)
        identity = GoclIdentity(GoclSegmenter(model, mask_temperature=args.mask_temperature,
                                              flip_average=not args.no_flip_average))
    started = time.perf_counter()
    results, figure = evaluate(cfg, identity, progress=not args.no_progress)
    out = Path(args.out)
    figure_path = Path(args.figure) if args.figure else out.with_suffix(".png")
    out.parent.mkdir(parents=True, exist_ok=True)
    save_figure(figure_path, figure)
    results.update({
        "checkpoint": None if args.oracle_identity else str(checkpoint), "checkpoint_step": meta.get("step"),
        "checkpoint_run": (meta.get("extra") or {}).get("command"),
        "mask_temperature": None if args.oracle_identity else args.mask_temperature,
        "flip_average": None if args.oracle_identity else not args.no_flip_average,
        "figure": str(figure_path), "wall_time_s": time.perf_counter() - started,
        "command": " ".join(["python -m ocgs_ros.gaussians.evaluate", *argv]),
    })
    results = _finite(results)
    atomic_write_json(out, results)
    for key in ("psnr", "ssim", "identity_miou", "cross_view_consistency", "cross_scene_consistency",
                "instance_recall_iou50", "baseline_slot_index_cross_view_consistency",
                "gocl_per_frame_cross_view_consistency", "num_gaussians", "integrate_ms_per_iteration"):
        value = results[key]
        print(f"{key}: {value:.4f}" if isinstance(value, float) else f"{key}: {value}")
    print(f"wrote {out} and {figure_path}")
    return results


if __name__ == "__main__":
    main()
