"""gaussian_map_evaluate: the mapping pipeline, as the node runs it, on tabletop scenes GOCL never saw.

    OMP_NUM_THREADS=1 python -m ocgs_ros.mapping.evaluate [--checkpoint shipped]
        [--scenes 6 --frames 24 --heldout 6] [--set view.process_width=96 --set view.process_height=96 ...]
        [--out docs/results/gaussian_map.json --figure docs/results/gaussian_map.png] [--seed 0]
    OMP_NUM_THREADS=1 python -m ocgs_ros.mapping.evaluate --novel   # -> docs/results/novel_objects.json

``--novel`` evaluates the world variant with object kinds GOCL never saw instead, with and without
the geometric path for unknown-kind objects (:mod:`ocgs_ros.mapping.evaluate_novel`).

What is measured is :class:`~ocgs_ros.mapping.pipeline.ObjectMappingPipeline` at ``MappingConfig()``
— the node's own defaults (160x120 view, 6000 LiDAR points in view, 8 iterations per frame, 60 000
Gaussians at most, flip-averaged GOCL at mask temperature 0.5, the default object extraction);
``--set NAME=VALUE`` changes one dotted setting (the node's parameter names) and is recorded.

Scenes: GOCL's tabletop world (:func:`ocgs_ros.ocl.data.gocl_tabletop_config`: 2-5 objects, 40°
camera) with the sim_publisher's default sensors (camera 320x240, LiDAR 32x1024) and dataset seed 7
(GOCL trains on seed 0, is evaluated on seed 1). Frames reach the pipeline as they reach the node:
the image at the camera's resolution, the LiDAR sweep in its own frame, both poses. So that
cross-scene identity can be measured at all with a few scenes, scenes are taken in index order,
skipping any that shares no object kind with the scenes already taken (ground-truth kinds choose
*which* test scenes, never tune anything).

Per scene: ``--frames`` posed frames evenly spread over the orbit are integrated; ``--heldout``
other frames, half-way between integrated ones, are only rendered, at the view size. Two pipelines:

* **codebook** — identity from GOCL's per-pixel codebook distribution (channel = entry + 1);
* **baseline** — identity from raw slot indices (channel = slot index; slot 0 is background), what a
  slot model without a global codebook offers before any mask association.

Metrics on held-out views: PSNR/SSIM of the rendered RGB; identity mIoU (rendered instance mask of
the map's objects vs the ground-truth instance mask, Hungarian-matched per view, mean over visible
objects); cross-view consistency (per GT object and view where it covers >= ``--min-pixels``
pixels, does the majority rendered entry over its pixels equal its majority over all views; an
object whose overall majority is background fails in every view; rendered and GOCL per-pixel
entries alike are read with ``map.entries_from_logits``: background if P(background) >= 0.5, else
the most probable entry); cross-scene identity (kinds present in >= 2 scenes whose majority
entries agree) and its complement, kind collisions (pairs of identified objects of different kinds
sharing a label); instance recall and precision at 3D IoU 0.25 and 0.5 (the simulator's oriented
boxes vs the objects' gravity-aligned oriented boxes, :mod:`ocgs_ros.evaluation.boxes`, Hungarian
one-to-one). GOCL's own per-frame consistency on the same held-out views is reported alongside, to
separate what the map adds from what GOCL gives.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ocgs_ros.atomic_io import atomic_write_json
from ocgs_ros.evaluation.boxes import match_boxes
from ocgs_ros.gaussians.eval_metrics import IdentityVotes, matched_instance_iou, psnr
from ocgs_ros.gaussians.losses import ssim
from ocgs_ros.gaussians.map import entries_from_logits
from ocgs_ros.gaussians.objects import ObjectConfig
from ocgs_ros.mapping.config import MappingConfig
from ocgs_ros.mapping.eval_scenes import (EvalConfig, build_scene_map, frame_indices, gt_box,
                                          held_out_view, make_world_config, mapping_frame)
from ocgs_ros.mapping.evaluate_novel import DEFAULT_NOVEL_OUT, evaluate_novel, save_novel_figure, summary_lines
from ocgs_ros.mapping.figures import colour_labels, save_panels
from ocgs_ros.mapping.identity import GoclIdentity, SlotIndexIdentity, load_segmenter
from ocgs_ros.mapping.pipeline import MappingFrame, ObjectMappingPipeline, view_image
from ocgs_ros.ocl.segment import PIXEL_PROB_FLOOR
from ocgs_ros.settings import from_flat, parse_set_options, to_flat
from ocgs_ros.sim.dataset import scene_seed
from ocgs_ros.sim.tabletop import TabletopWorld

TARGETS = {"cross_view_consistency": 0.95, "instance_recall_iou50": 0.9}
RECALL_IOUS = (0.25, 0.5)
DEFAULT_OUT = "docs/results/gaussian_map.json"


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


class OracleIdentity:
    """Development reference, not a result: identity from ground truth (entry = object kind), i.e. a
    perfect GOCL. The ground-truth kind image of each processed view is registered by its pixels
    beforehand (:meth:`add`), so the pipeline runs unchanged."""

    name = "oracle_ground_truth"

    def __init__(self, num_entries: int = 32):
        self.num_entries = num_entries
        self._kinds: dict[str, np.ndarray] = {}

    @staticmethod
    def _key(rgb: np.ndarray) -> str:
        return f"{rgb.shape}:{hashlib.sha1(np.ascontiguousarray(rgb).tobytes()).hexdigest()}"

    def add(self, rgb: np.ndarray, kind: np.ndarray) -> None:
        self._kinds[self._key(rgb)] = kind

    def add_view(self, world, frame: MappingFrame, config: MappingConfig) -> None:
        """Register the kind image of ``frame`` as the pipeline will process it."""
        rgb, K = view_image(frame.rgb, frame.K, config.view)
        self.add(rgb, world.render_camera(frame.T_world_cam, K, rgb.shape[1], rgb.shape[0]).kind)

    def pixel_logits(self, rgb: np.ndarray) -> torch.Tensor:
        kind = self._kinds.get(self._key(rgb))
        if kind is None:
            raise KeyError("OracleIdentity: no ground truth registered for this image")
        classes = torch.from_numpy(np.asarray(kind)).long() + 1  # background kind -1 -> channel 0
        probs = torch.nn.functional.one_hot(classes, self.num_entries + 1).permute(2, 0, 1).float()
        return probs.clamp_min(PIXEL_PROB_FLOOR).log()


def evaluate(cfg: EvalConfig, mapping: MappingConfig, identities, progress: bool = True) -> tuple[dict, dict]:
    """Run the evaluation; ``identities`` maps "codebook" and "baseline" to identity sources
    (GOCL and its slot indices, or the oracle for both). Returns ``(results, figure_data)``."""
    world_config = make_world_config(cfg)
    scenes = pick_scenes(cfg, world_config)
    votes = {"codebook": IdentityVotes(), "baseline": IdentityVotes(), "gocl_frames": IdentityVotes()}
    psnrs, ssims, ious, per_scene, figure = [], [], [], [], None
    matches = {iou: [] for iou in RECALL_IOUS}
    iteration_times = []
    integrated_ids, heldout_ids = frame_indices(cfg, world_config.frames_per_orbit)
    bar = tqdm(total=len(scenes) * (2 * len(integrated_ids) + len(heldout_ids)), desc="gaussian map eval",
               disable=not progress)
    for scene_index in scenes:
        world = TabletopWorld(world_config, seed=scene_seed(cfg.dataset_seed, scene_index))
        frames = [mapping_frame(world, i) for i in integrated_ids]
        heldout = [held_out_view(world, i, mapping) for i in heldout_ids]
        pipelines = {}
        for variant in ("codebook", "baseline"):
            identity = identities[variant]
            if isinstance(identity, OracleIdentity):
                for f in frames:
                    identity.add_view(world, f, mapping)
                for h in heldout:
                    identity.add(h.rgb, h.kind)
            pipeline = ObjectMappingPipeline(mapping, identity=identity)
            start = time.perf_counter()
            for f in frames:
                build_scene_map(pipeline, [f])
                bar.update(1)
            iteration_times.append((time.perf_counter() - start) / max(pipeline.mapper.iterations, 1))
            pipelines[variant] = pipeline
        codebook = pipelines["codebook"]
        objects = codebook.objects()

        gt_objects = {o.instance_id: o for o in world.objects}
        scene_ious = []
        for h in heldout:
            width, height = h.rgb.shape[1], h.rgb.shape[0]
            rgb, entries = codebook.render(h.K, h.T_world_cam, width, height)
            _, slots = pipelines["baseline"].render(h.K, h.T_world_cam, width, height)
            target = h.rgb.astype(np.float64) / 255.0
            psnrs.append(psnr(rgb, target))
            ssims.append(float(ssim(torch.from_numpy(rgb).float(), torch.from_numpy(target).float())))
            instance_mask = codebook.render_instances(h.K, h.T_world_cam, width, height)
            gocl_entries = entries_from_logits(identities["codebook"].pixel_logits(h.rgb), dim=0).numpy()
            visible = [g for g in gt_objects if (h.instance == g).sum() >= cfg.min_pixels]
            for g in visible:
                pixels = h.instance == g
                key, kind = (scene_index, g), gt_objects[g].kind_id
                votes["codebook"].add(key, kind, entries[pixels])
                votes["baseline"].add(key, kind, slots[pixels])
                votes["gocl_frames"].add(key, kind, gocl_entries[pixels])
            view_ious = matched_instance_iou(instance_mask, h.instance, visible)
            scene_ious.extend(view_ious.values())
            if figure is None:
                figure = {"rgb": h.rgb, "rendered": rgb, "entries": entries, "instances": instance_mask,
                          "gt_instances": h.instance, "scene": scene_index, "frame": h.index,
                          "dataset_seed": cfg.dataset_seed}
            bar.update(1)
        ious.extend(scene_ious)
        gt_boxes, pred_boxes = [gt_box(o) for o in world.objects], [o.box() for o in objects]
        scene_matches = {iou: match_boxes(gt_boxes, pred_boxes, iou) for iou in RECALL_IOUS}
        for iou, match in scene_matches.items():
            matches[iou].append(match)
        assigned_iou = scene_matches[RECALL_IOUS[0]].assigned_iou_per_gt()  # Hungarian partner's IoU
        stats = codebook.stats()
        per_scene.append({
            "scene_index": scene_index, "world_seed": scene_seed(cfg.dataset_seed, scene_index),
            "objects": [{"instance_id": o.instance_id, "kind_id": o.kind_id, "kind_name": o.kind_name,
                         "box_iou": round(float(iou), 4),
                         "held_out_identity": votes["codebook"].object_summary((scene_index, o.instance_id))}
                        for o, iou in zip(world.objects, assigned_iou)],
            "num_instances": len(objects), "num_gaussians": stats["gaussians"],
            "baseline_num_gaussians": pipelines["baseline"].stats()["gaussians"],
            "identity_miou": float(np.mean(scene_ious)) if scene_ious else None,
            **{f"instances_recalled_iou{round(100 * iou)}": m.matched for iou, m in scene_matches.items()},
            "frames_rejected": stats["rejected"],
            "densify": dict(codebook.mapper.densifier.totals),
            "non_finite_pruned": stats["non_finite_pruned"],
        })
    bar.close()
    cross_scene, kind_entries = votes["codebook"].cross_scene()
    baseline_cross_scene, _ = votes["baseline"].cross_scene()
    results = {
        "identity_source": identities["codebook"].name,
        "psnr": float(np.mean(psnrs)), "ssim": float(np.mean(ssims)),
        "identity_miou": float(np.mean(ious)) if ious else None,
        "cross_view_consistency": votes["codebook"].cross_view_consistency(),
        "cross_scene_consistency": cross_scene,
        "cross_scene_kinds": {str(k): v for k, v in kind_entries.items()},
        **_recall_figures(matches),
        "instance_box_iou": _box_description(mapping.objects),
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
        "integrate_ms_per_iteration": 1000.0 * float(np.mean(iteration_times)),  # whole process() calls
        "targets": TARGETS,
        "sizes": {**dataclasses.asdict(cfg), "scene_indices": scenes, "integrated_frames": integrated_ids,
                  "heldout_frames": heldout_ids, "codebook_entries": identities["codebook"].num_entries},
        "mapping_settings": to_flat(mapping),
        "mapping_config": _plain(dataclasses.asdict(mapping)),
        "per_scene": per_scene,
    }
    return results, figure


def _recall_figures(matches: dict[float, list]) -> dict:
    out = {}
    for iou, scene_matches in matches.items():
        matched = sum(m.matched for m in scene_matches)
        num_gt, num_pred = sum(m.num_gt for m in scene_matches), sum(m.num_pred for m in scene_matches)
        tag = f"iou{round(100 * iou)}"
        out[f"instance_recall_{tag}"] = matched / num_gt if num_gt else None
        out[f"instance_precision_{tag}"] = matched / num_pred if num_pred else None
    return out


def _extent_cap(config: ObjectConfig) -> str:
    ratio = config.box_extent_ratio
    return f" (one reaching over {ratio:g}x the object's median counted at the median)" if ratio > 0 else ""


def _box_description(config: ObjectConfig) -> str:
    return (f"oriented 3D IoU (ocgs_ros.evaluation.boxes; GT: the simulator's box; instance: its gravity-aligned "
            f"box over its Gaussians, centre +- {config.box_sigma:g} std{_extent_cap(config)}, "
            f"{100 * config.box_trim:g}% trimmed per face, bottom snapped to the support within "
            f"{100 * config.support_snap:g} cm; support at its "
            f"Gaussians' centres + {config.support_top_sigma:g} std along up; Gaussians under "
            f"{100 * config.ground_clearance:g} cm above it neither join objects nor widen the footprint by over "
            f"{100 * config.footprint_margin:g} cm), Hungarian one-to-one, at IoU "
            + " and ".join(f"{iou:g}" for iou in RECALL_IOUS))


def save_figure(path: Path, figure: dict) -> None:
    panels = [("camera (held-out)", figure["rgb"]), ("rendered RGB", figure["rendered"]),
              ("rendered codebook entry", colour_labels(figure["entries"], -1)),
              ("instance mask (object ids)", colour_labels(figure["instances"], 0)),
              ("GT instances", colour_labels(figure["gt_instances"], 0))]
    save_panels(path, panels,
                f"scene {figure['scene']} (dataset seed {figure['dataset_seed']}), frame {figure['frame']}")


def _plain(obj):
    """JSON-ready: tuples as lists, non-finite floats as None."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def mapping_config_from_args(sets: list[str], checkpoint: str | None, seed: int | None) -> MappingConfig:
    """``MappingConfig()`` with ``--set NAME=VALUE`` settings (dotted names), ``--checkpoint`` and
    ``--seed`` applied; raises ValueError naming every bad one."""
    values = parse_set_options(sets)
    if checkpoint is not None:
        values["gocl.checkpoint"] = checkpoint
    if seed is not None:
        values["seed"] = seed
    return from_flat(MappingConfig, values)


def main(argv: list[str] | None = None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    d = EvalConfig()
    p = argparse.ArgumentParser(prog="gaussian_map_evaluate", description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", default=None, help="GOCL checkpoint (= --set gocl.checkpoint=...; default: shipped)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="NAME=VALUE",
                   help="a pipeline setting by its dotted name, e.g. view.process_width=96 (repeatable)")
    p.add_argument("--out", default=None, help=f"results JSON (default: {DEFAULT_OUT}; with --novel "
                                                  f"{DEFAULT_NOVEL_OUT})")
    p.add_argument("--figure", default=None, help="PNG of a held-out view (default: --out with .png)")
    p.add_argument("--seed", type=int, default=None, help="= --set seed=...")
    p.add_argument("--dataset-seed", type=int, default=d.dataset_seed, help="scene seed (GOCL: 0 train, 1 held out)")
    p.add_argument("--scenes", type=int, default=d.scenes)
    p.add_argument("--frames", type=int, default=d.frames, help="integrated frames per scene")
    p.add_argument("--heldout", type=int, default=d.heldout, help="held-out (never integrated) views per scene")
    p.add_argument("--camera-width", type=int, default=d.camera_width, help="simulated camera (sim_publisher default)")
    p.add_argument("--camera-height", type=int, default=d.camera_height)
    p.add_argument("--lidar-beams", type=int, default=d.lidar_beams)
    p.add_argument("--lidar-azimuth-steps", type=int, default=d.lidar_azimuth_steps)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--oracle-identity", action="store_true",
                   help="development reference: ground-truth identity targets instead of GOCL (not a result)")
    p.add_argument("--novel", action="store_true",
                   help="the world variant with object kinds GOCL never saw: figures for known and novel kinds, "
                        "with and without the geometric path (ocgs_ros.mapping.evaluate_novel)")
    args = p.parse_args(argv)
    if args.novel and args.oracle_identity:
        p.error("--novel measures GOCL's identities; --oracle-identity has no entries for novel kinds")
    if min(args.scenes, args.frames, args.heldout, args.camera_width, args.camera_height,
           args.lidar_beams, args.lidar_azimuth_steps) < 1:
        p.error("--scenes, --frames, --heldout, --camera-*, --lidar-* must be >= 1")
    try:
        mapping = mapping_config_from_args(args.sets, args.checkpoint, args.seed)
    except (ValueError, TypeError) as exc:
        p.error(str(exc))
    torch.set_num_threads(args.threads)
    cfg = EvalConfig(dataset_seed=args.dataset_seed, scenes=args.scenes, frames=args.frames, heldout=args.heldout,
                     camera_width=args.camera_width, camera_height=args.camera_height,
                     lidar_beams=args.lidar_beams, lidar_azimuth_steps=args.lidar_azimuth_steps)
    if args.oracle_identity:
        oracle = OracleIdentity(mapping.gocl.num_codebook_entries)
        identities = {"codebook": oracle, "baseline": oracle}
    else:
        try:
            segmenter = load_segmenter(mapping.gocl)
        except ValueError as exc:
            p.error(str(exc))
        if segmenter is None:
            p.error("gocl.checkpoint 'none' maps without identities: there is nothing to evaluate")
        identities = {"codebook": GoclIdentity(segmenter), "baseline": SlotIndexIdentity(segmenter)}
    started = time.perf_counter()
    if args.novel:
        results, figure = evaluate_novel(cfg, mapping, identities["codebook"], progress=not args.no_progress)
    else:
        results, figure = evaluate(cfg, mapping, identities, progress=not args.no_progress)
    out = Path(args.out or (DEFAULT_NOVEL_OUT if args.novel else DEFAULT_OUT))
    figure_path = Path(args.figure) if args.figure else out.with_suffix(".png")
    out.parent.mkdir(parents=True, exist_ok=True)
    (save_novel_figure if args.novel else save_figure)(figure_path, figure)
    results.update({
        "checkpoint": None if args.oracle_identity else mapping.gocl.checkpoint,
        "figure": str(figure_path), "wall_time_s": time.perf_counter() - started,
        "command": " ".join(["python -m ocgs_ros.mapping.evaluate", *argv]),
    })
    results = _plain(results)
    atomic_write_json(out, results)
    if args.novel:
        print("\n".join(summary_lines(results)))
        print(f"wrote {out} and {figure_path}")
        return results
    for key in ("psnr", "ssim", "identity_miou", "cross_view_consistency", "cross_scene_consistency",
                "instance_recall_iou25", "instance_recall_iou50", "instance_precision_iou25",
                "instance_precision_iou50", "baseline_slot_index_cross_view_consistency",
                "gocl_per_frame_cross_view_consistency", "num_gaussians", "integrate_ms_per_iteration"):
        value = results[key]
        print(f"{key}: {value:.4f}" if isinstance(value, float) else f"{key}: {value}")
    print(f"wrote {out} and {figure_path}")
    return results


if __name__ == "__main__":
    main()
