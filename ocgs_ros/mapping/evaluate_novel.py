"""The map evaluation on tabletop scenes with object kinds GOCL was never trained on (issue 19).

    OMP_NUM_THREADS=1 python -m ocgs_ros.mapping.evaluate --novel [--scenes 6 --dataset-seed 7 ...]
        -> docs/results/novel_objects.json (+ .png)

The world is :func:`ocgs_ros.sim.novel.novel_tabletop_world` (GOCL's tabletop world, its objects drawn
from the training catalogue and as many novel kinds: new colours, sizes outside the catalogue's);
scenes are taken in index order among those with at least one novel object. Each scene is mapped
once by :class:`~ocgs_ros.mapping.pipeline.ObjectMappingPipeline` at the given settings, exactly as
the node maps it, and the objects are read off that one map twice: with the geometric path (the
pipeline's own objects, unknown-kind objects included) and without it (``objects.unknown_objects``
off, the same map). Every figure is reported for both, and separately for ground-truth objects of
known and of novel kinds:

* instance recall at AABB IoU 0.5 (the issue's ruler: axis-aligned boxes of the simulator's box and
  of the object) and at oriented 3D IoU 0.25 / 0.5 (:mod:`ocgs_ros.evaluation.boxes`, the main
  evaluation's ruler), Hungarian one-to-one over all objects of a scene; precision over all objects;
* identity mIoU on held-out views (rendered instance masks vs ground truth, Hungarian per view);
* cross-view consistency of the map's rendered codebook entries (as the main evaluation; one map, so
  one figure for both readings), and object-level consistency: per pixel, the label of the object
  rendered there (its entry; unknown kind is a label of its own), the same rule per view.
"""
from __future__ import annotations

import dataclasses

import numpy as np
from tqdm import tqdm

from ocgs_ros.evaluation.boxes import Box3D, match_boxes
from ocgs_ros.gaussians.eval_metrics import IdentityVotes, matched_instance_iou, psnr
from ocgs_ros.gaussians.objects import UNKNOWN_ENTRY, MapObject, extract_instances, render_instance_mask
from ocgs_ros.mapping.config import MappingConfig
from ocgs_ros.mapping.eval_scenes import (EvalConfig, build_scene_map, frame_indices, gt_box, held_out_view,
                                          make_world_config, mapping_frame)
from ocgs_ros.mapping.figures import colour_labels, save_panels
from ocgs_ros.mapping.pipeline import ObjectMappingPipeline
from ocgs_ros.settings import to_flat
from ocgs_ros.sim.dataset import scene_seed
from ocgs_ros.sim.novel import is_novel_kind, novel_tabletop_world

DEFAULT_NOVEL_OUT = "docs/results/novel_objects.json"
TARGETS = {"novel_instance_recall_aabb50": 0.85}
VARIANTS = ("geometric", "identity_only")  # with the geometric path / without it, on the same map
GROUPS = ("known", "novel")
#: object-level label of an unknown-kind object (codebook entries are >= 0, background -1)
_UNKNOWN_LABEL = 10_000


def pick_novel_scenes(cfg: EvalConfig, world_config) -> list[int]:
    """The first ``cfg.scenes`` scene indices (of ``cfg.scene_pool``) holding a novel-kind object."""
    chosen = []
    for index in range(cfg.scene_pool):
        world = novel_tabletop_world(world_config, scene_seed(cfg.dataset_seed, index))
        if any(is_novel_kind(o.kind_id) for o in world.objects):
            chosen.append(index)
        if len(chosen) == cfg.scenes:
            break
    return chosen


def identity_only_objects(pipeline: ObjectMappingPipeline, mapping: MappingConfig) -> list[MapObject]:
    """The objects of the pipeline's current map without the geometric path (ids 1.. for masks)."""
    objects = extract_instances(pipeline.map, dataclasses.replace(mapping.objects, unknown_objects=False))
    objects = [o for o in objects if o.confidence >= mapping.min_object_confidence]
    for k, obj in enumerate(objects):
        obj.id = k + 1
    return objects


def aabb_of(box: Box3D) -> Box3D:
    corners = box.corners()
    return Box3D.from_aabb(corners.min(axis=0), corners.max(axis=0))


class _Tally:
    """Recall per ground-truth group and precision, summed over scenes, for one ruler."""

    def __init__(self):
        self.matched = {g: 0 for g in GROUPS}
        self.total = {g: 0 for g in GROUPS}
        self.predictions = self.true_positives = 0

    def add(self, match, groups: list[str]) -> list[bool]:
        hit = {i for i, _, _ in match.pairs}
        for i, group in enumerate(groups):
            self.total[group] += 1
            self.matched[group] += i in hit
        self.predictions += match.num_pred
        self.true_positives += match.matched
        return [i in hit for i in range(len(groups))]

    def figures(self, tag: str) -> dict:
        out = {f"{g}_instance_recall_{tag}": self.matched[g] / self.total[g] if self.total[g] else None
               for g in GROUPS}
        both = sum(self.total.values())
        out[f"instance_recall_{tag}"] = sum(self.matched.values()) / both if both else None
        out[f"instance_precision_{tag}"] = self.true_positives / self.predictions if self.predictions else None
        return out


def evaluate_novel(cfg: EvalConfig, mapping: MappingConfig, identity, progress: bool = True) -> tuple[dict, dict]:
    """Run the novel-kind evaluation (module docstring); returns ``(results, figure_data)``."""
    world_config = make_world_config(cfg)
    # the geometric path on whatever the settings say (the node has it on by default): this evaluation measures it
    geometric = dataclasses.replace(mapping, objects=dataclasses.replace(mapping.objects, unknown_objects=True))
    scenes = pick_novel_scenes(cfg, world_config)
    integrated_ids, heldout_ids = frame_indices(cfg, world_config.frames_per_orbit)
    rulers = {"aabb50": 0.5, "iou25": 0.25, "iou50": 0.5}
    tallies = {v: {r: _Tally() for r in rulers} for v in VARIANTS}
    ious = {v: {g: [] for g in GROUPS} for v in VARIANTS}
    map_votes = {g: IdentityVotes() for g in GROUPS}
    object_votes = {v: {g: IdentityVotes() for g in GROUPS} for v in VARIANTS}
    psnrs, per_scene, figure = [], [], None
    bar = tqdm(total=len(scenes) * (len(integrated_ids) + len(heldout_ids)), desc="novel-kind map eval",
               disable=not progress)
    for scene_index in scenes:
        world = novel_tabletop_world(world_config, scene_seed(cfg.dataset_seed, scene_index))
        pipeline = ObjectMappingPipeline(geometric, identity=identity)
        for index in integrated_ids:
            build_scene_map(pipeline, [mapping_frame(world, index)])
            bar.update(1)
        objects = {"geometric": pipeline.objects(), "identity_only": identity_only_objects(pipeline, mapping)}
        group_of = {o.instance_id: ("novel" if is_novel_kind(o.kind_id) else "known") for o in world.objects}
        for h in (held_out_view(world, i, mapping) for i in heldout_ids):
            width, height = h.rgb.shape[1], h.rgb.shape[0]
            rgb, entries = pipeline.render(h.K, h.T_world_cam, width, height)
            psnrs.append(psnr(rgb, h.rgb.astype(np.float64) / 255.0))
            visible = [o.instance_id for o in world.objects if (h.instance == o.instance_id).sum() >= cfg.min_pixels]
            viewmat = np.linalg.inv(h.T_world_cam)
            masks = {}
            for variant, objs in objects.items():
                masks[variant] = mask = render_instance_mask(pipeline.mapper, objs, viewmat, h.K, width, height)
                label_of = {0: -1, **{o.id: (_UNKNOWN_LABEL if o.codebook_entry == UNKNOWN_ENTRY
                                             else o.codebook_entry) for o in objs}}
                object_labels = np.vectorize(label_of.get)(mask) if mask.size else mask
                for g, value in matched_instance_iou(mask, h.instance, visible).items():
                    ious[variant][group_of[g]].append(value)
                for g in visible:
                    kind = next(o.kind_id for o in world.objects if o.instance_id == g)
                    object_votes[variant][group_of[g]].add((scene_index, g), kind, object_labels[h.instance == g])
            for g in visible:
                kind = next(o.kind_id for o in world.objects if o.instance_id == g)
                map_votes[group_of[g]].add((scene_index, g), kind, entries[h.instance == g])
            if figure is None:
                figure = {"rgb": h.rgb, "entries": entries, "geometric": masks["geometric"],
                          "identity_only": masks["identity_only"], "gt": h.instance, "scene": scene_index,
                          "frame": h.index, "dataset_seed": cfg.dataset_seed}
            bar.update(1)
        groups = [group_of[o.instance_id] for o in world.objects]
        gt_boxes = [gt_box(o) for o in world.objects]
        scene = {"scene_index": scene_index, "world_seed": scene_seed(cfg.dataset_seed, scene_index),
                 "num_gaussians": pipeline.stats()["gaussians"], "objects": [], "variants": {}}
        recalled = {}
        for variant, objs in objects.items():
            oriented = (gt_boxes, [o.box() for o in objs])
            axis_aligned = ([aabb_of(b) for b in gt_boxes], [Box3D.from_aabb(o.aabb_min, o.aabb_max) for o in objs])
            boxes = {"aabb50": axis_aligned, "iou25": oriented, "iou50": oriented}
            for ruler, threshold in rulers.items():
                match = match_boxes(*boxes[ruler], threshold)
                hits = tallies[variant][ruler].add(match, groups)
                if ruler == "aabb50":
                    recalled[variant] = (hits, match.assigned_iou_per_gt())
            scene["variants"][variant] = {
                "num_objects": len(objs), "num_unknown_kind": sum(o.codebook_entry == UNKNOWN_ENTRY for o in objs),
                "objects": [{"id": o.id, "codebook_entry": o.codebook_entry, "confidence": round(o.confidence, 4),
                             "nearest_codebook_entry": o.nearest_codebook_entry,
                             "nearest_codebook_distance": round(o.nearest_codebook_distance, 4),
                             "num_gaussians": o.num_gaussians} for o in objs]}
        for k, o in enumerate(world.objects):
            scene["objects"].append({
                "instance_id": o.instance_id, "kind_id": o.kind_id, "kind_name": o.kind_name, "group": groups[k],
                **{f"{v}_aabb_iou": round(float(recalled[v][1][k]), 4) for v in VARIANTS},
                **{f"{v}_recalled_aabb50": bool(recalled[v][0][k]) for v in VARIANTS}})
        per_scene.append(scene)
    bar.close()
    results = {"identity_source": identity.name, "psnr": float(np.mean(psnrs)) if psnrs else None,
               "map_cross_view_consistency": {g: map_votes[g].cross_view_consistency() for g in GROUPS},
               "ground_truth_objects": {g: sum(o["group"] == g for s in per_scene for o in s["objects"])
                                        for g in GROUPS}}
    for variant in VARIANTS:
        figures = {}
        for ruler, tally in tallies[variant].items():
            figures.update(tally.figures(ruler))
        every = ious[variant]["known"] + ious[variant]["novel"]
        figures["identity_miou"] = float(np.mean(every)) if every else None
        figures.update({f"{g}_identity_miou": float(np.mean(ious[variant][g])) if ious[variant][g] else None
                        for g in GROUPS})
        figures.update({f"{g}_object_cross_view_consistency": object_votes[variant][g].cross_view_consistency()
                        for g in GROUPS})
        results[variant] = figures
    results.update({
        "targets": TARGETS,
        "sizes": {**dataclasses.asdict(cfg), "scene_indices": scenes, "integrated_frames": integrated_ids,
                  "heldout_frames": heldout_ids, "codebook_entries": identity.num_entries},
        "mapping_settings": to_flat(mapping),
        "per_scene": per_scene,
    })
    return results, figure


def save_novel_figure(path, figure: dict) -> None:
    """Camera / rendered codebook entry / instances with and without the geometric path / GT."""
    panels = [("camera (held-out)", figure["rgb"]), ("rendered codebook entry", colour_labels(figure["entries"], -1)),
              ("objects, geometric path", colour_labels(figure["geometric"], 0)),
              ("objects, identity only", colour_labels(figure["identity_only"], 0)),
              ("GT instances", colour_labels(figure["gt"], 0))]
    save_panels(path, panels, f"novel-kind world, scene {figure['scene']} (dataset seed {figure['dataset_seed']}), "
                              f"frame {figure['frame']}")


def summary_lines(results: dict) -> list[str]:
    """The headline figures, one per line, for the command's output."""
    lines = []
    for variant in VARIANTS:
        r = results[variant]
        lines.append(f"{variant}: recall@AABB0.5 known {r['known_instance_recall_aabb50']} novel "
                     f"{r['novel_instance_recall_aabb50']} precision {r['instance_precision_aabb50']}; "
                     f"mIoU {r['identity_miou']}; object consistency known {r['known_object_cross_view_consistency']} "
                     f"novel {r['novel_object_cross_view_consistency']}")
    lines.append(f"map cross-view consistency: {results['map_cross_view_consistency']}")
    return lines
