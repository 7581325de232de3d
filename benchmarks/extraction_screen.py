"""Object-extraction settings screened on saved dev maps of the novel-kind world (issue 19's dev
protocol): how the figures of ``docs/gaussian_map.md``'s extraction tables are made.

    OMP_NUM_THREADS=1 python benchmarks/extraction_screen.py [--seeds 11 13 17 19] [--scenes 10]
        [--maps runs/extraction_screen] [--obj NAME=VALUE ...] [--out FILE]

Objects are extracted from the map (``extract_instances``), so a setting of extraction can be
screened without mapping again: building one scene's map at the node's defaults takes about 40 s,
extracting it a tenth of a second. Each (seed, scene) map is built once, exactly as
``python -m ocgs_ros.mapping.evaluate --novel`` builds its maps (``ObjectMappingPipeline`` at the
node's defaults, the shipped GOCL, 24 integrated frames, the geometric path on), and saved under
``--maps`` with its accumulated range returns and the world's ground-truth boxes; later runs reuse
it. ``--obj NAME=VALUE`` overrides any ``ObjectConfig`` field for the re-extraction, internal ones
included (``footprint_merge_iou=2`` turns that rule off). It prints and writes recall per group
(known / novel kinds) at AABB IoU 0.5 (the issue's ruler), precision at AABB IoU 0.5, and recall at
oriented 3D IoU 0.25 and 0.5, Hungarian one-to-one. Extraction here is one call on the final map:
the tracker's confirmation of unknown-kind objects over updates (``unknown_confirm_updates``) is
not replayed. The evaluators' test seed (7) is refused: choices are made on other seeds.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ocgs_ros.atomic_io import atomic_path, atomic_write_json  # noqa: E402
from ocgs_ros.evaluation.boxes import Box3D, match_boxes  # noqa: E402
from ocgs_ros.gaussians.objects import ObjectConfig, extract_instances  # noqa: E402
from ocgs_ros.gaussians.objects.evidence import PointEvidence  # noqa: E402
from ocgs_ros.gaussians.persistence import load_map  # noqa: E402
from ocgs_ros.mapping.config import MappingConfig  # noqa: E402
from ocgs_ros.mapping.eval_scenes import (EvalConfig, build_scene_map, frame_indices, gt_box,  # noqa: E402
                                          make_world_config, mapping_frame)
from ocgs_ros.mapping.evaluate_novel import aabb_of, pick_novel_scenes  # noqa: E402
from ocgs_ros.mapping.identity import GoclIdentity, load_segmenter  # noqa: E402
from ocgs_ros.mapping.pipeline import ObjectMappingPipeline  # noqa: E402
from ocgs_ros.settings import parse_set_options  # noqa: E402
from ocgs_ros.sim.dataset import scene_seed  # noqa: E402
from ocgs_ros.sim.novel import is_novel_kind, novel_tabletop_world  # noqa: E402

DEV_SEEDS = [11, 13, 17, 19]
TRUTH = "truth.json"  # written last: a scene directory holding it is complete
RETURNS = "returns.npz"
MAP = "map"


def build_scene(directory: Path, mapping: MappingConfig, identity, world_config, world_seed: int,
                frames: list[int]) -> None:
    """Map one novel-kind scene as the evaluator does and save map, returns and ground truth."""
    world = novel_tabletop_world(world_config, world_seed)
    pipeline = ObjectMappingPipeline(mapping, identity=identity)
    for index in frames:
        build_scene_map(pipeline, [mapping_frame(world, index)])
    pipeline.save(directory / MAP)
    evidence = pipeline.tracker.evidence
    with atomic_path(directory / RETURNS) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, codes=evidence.codes, hits=evidence.hits, voxel=evidence.voxel,
                     max_voxels=evidence.max_voxels)
    truth = [{"kind": o.kind_name, "novel": bool(is_novel_kind(o.kind_id)), "center": box.center.tolist(),
              "size": box.size.tolist(), "rotation": box.rotation.tolist()}
             for o, box in ((o, gt_box(o)) for o in world.objects)]
    atomic_write_json(directory / TRUTH, truth)


def scene_figures(directory: Path, config: ObjectConfig, min_confidence: float) -> dict:
    """Per ground-truth object: its group and whether it is recalled by each ruler; and the
    published objects' count and how many match at AABB IoU 0.5."""
    gmap, _ = load_map(directory / MAP)
    saved = np.load(directory / RETURNS)
    evidence = PointEvidence(float(saved["voxel"]), int(saved["max_voxels"]))
    evidence.codes, evidence.hits = saved["codes"], saved["hits"]
    objects = [o for o in extract_instances(gmap, config, evidence.centres(config.unknown_min_hits))
               if o.confidence >= min_confidence]
    truth = json.loads((directory / TRUTH).read_text())
    boxes = [Box3D(t["center"], t["size"], t["rotation"]) for t in truth]
    aabb = match_boxes([aabb_of(b) for b in boxes], [Box3D.from_aabb(o.aabb_min, o.aabb_max) for o in objects], 0.5)
    recalled = {"aabb50": aabb.assigned_iou_per_gt() >= 0.5}
    for threshold, name in ((0.25, "iou25"), (0.5, "iou50")):
        recalled[name] = match_boxes(boxes, [o.box() for o in objects], threshold).assigned_iou_per_gt() >= threshold
    return {"groups": ["novel" if t["novel"] else "known" for t in truth],
            "recalled": {k: v.tolist() for k, v in recalled.items()},
            "published": len(objects), "matched_aabb50": int(recalled["aabb50"].sum())}


def summarise(scenes: list[dict]) -> dict:
    groups = np.array([g for s in scenes for g in s["groups"]])
    figures = {}
    for ruler in ("aabb50", "iou25", "iou50"):
        hits = np.array([h for s in scenes for h in s["recalled"][ruler]], dtype=bool)
        for group in ("known", "novel"):
            chosen = groups == group
            figures[f"{group}_recall_{ruler}"] = f"{int(hits[chosen].sum())}/{int(chosen.sum())}"
    matched, published = sum(s["matched_aabb50"] for s in scenes), sum(s["published"] for s in scenes)
    figures["precision_aabb50"] = f"{matched}/{published}"
    return figures


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=DEV_SEEDS, help="dataset seeds of dev scenes")
    parser.add_argument("--scenes", type=int, default=10, help="scenes with a novel-kind object per seed")
    parser.add_argument("--maps", default="runs/extraction_screen", help="where the built maps are kept")
    parser.add_argument("--obj", action="append", default=[], metavar="NAME=VALUE",
                        help="an ObjectConfig field for the re-extraction (internal ones too)")
    parser.add_argument("--out", default="", help="JSON result (optional)")
    args = parser.parse_args(argv)
    test_seed = EvalConfig().dataset_seed
    if test_seed in args.seeds:
        parser.error(f"dataset seed {test_seed} is the evaluators' test seed: screen on other seeds")
    if args.scenes < 1:
        parser.error("--scenes must be >= 1")
    mapping = MappingConfig()
    try:
        overrides = parse_set_options(args.obj)
        objects = dataclasses.replace(mapping.objects, unknown_objects=True, **overrides)
    except (ValueError, TypeError) as exc:
        parser.error(str(exc))
    torch.set_num_threads(1)
    identity = None
    scenes = []
    for seed in args.seeds:
        cfg = EvalConfig(dataset_seed=seed, scenes=args.scenes)
        world_config = make_world_config(cfg)
        frames, _ = frame_indices(cfg, world_config.frames_per_orbit)
        for index in tqdm(pick_novel_scenes(cfg, world_config), desc=f"seed {seed}"):
            directory = Path(args.maps) / f"seed{seed}" / f"scene{index}"
            if not (directory / TRUTH).exists():
                if identity is None:
                    identity = GoclIdentity(load_segmenter(mapping.gocl))
                # the map as the evaluator builds it: the geometric path on, whatever is screened
                built = dataclasses.replace(mapping, objects=dataclasses.replace(mapping.objects, unknown_objects=True))
                build_scene(directory, built, identity, world_config, scene_seed(seed, index), frames)
            scenes.append(scene_figures(directory, objects, mapping.min_object_confidence))
    result = {"command": "python benchmarks/extraction_screen.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "seeds": args.seeds, "scenes_per_seed": args.scenes, "object_overrides": overrides,
              "figures": summarise(scenes), "per_scene": scenes}
    print(json.dumps({"object_overrides": overrides, **result["figures"]}))
    if args.out:
        atomic_write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
