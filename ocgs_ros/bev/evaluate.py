"""bev_evaluate: score a BEV checkpoint on a simulated (or nuScenes-format) driving set.

    python -m ocgs_ros.bev.evaluate --checkpoint runs/bev/full/checkpoint.pt --data runs/bev/data_val \\
        --out runs/bev/full/eval.json [--figure runs/bev/full/eval.png] [--nuscenes-version v1.0-mini] \\
        [--summary docs/results/bev_surround.json] [--ship ocgs_ros/models/bev_surround.pt]

``--data`` is a simulated driving dataset folder or a nuScenes-format dataroot (recognised by its
``v1.0-*/sample.json``; ``--nuscenes-version`` picks one of several versions).
Detection: nuScenes-style mAP (centre-distance matching at 0.5/1/2/4 m, per class) with
ATE/ASE/AOE/AVE on the 2 m matches (``ocgs_ros.bev.metrics``) and NDS over those four TP errors.
Map: IoU per class at the thresholds 0.35..0.65 (BEVFusion's sweep), best threshold per class,
mIoU of the best IoUs. ``inference_ms``: median ``BevPredictor.predict`` time per frame on one
CPU thread (input checks to decoded boxes). ``--summary`` writes the headline figures alone:
``num_cameras``, ``map`` (mAP), ``nds``, ``miou``, ``inference_ms``, ``command``. ``--ship`` then
writes the evaluated weights without optimiser state (what the package ships), naming the training
and the evaluation commands, so a shipped model is always one whose figures were written.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..atomic_io import atomic_save_figure, atomic_write_json
from .checkpoint import load_checkpoint, save_shipped
from .config import TASKS, BevConfig
from .data import BevSampleDataset, driving_dataset
from .frames import collate_samples
from .inference import BevPredictor
from .metrics import TP_ERROR_NAMES, MapIoUMeter, detection_metrics
from .model import BevFusionModel
from .targets import decode_detections

#: frames timed for ``inference_ms`` (after two warm-up runs)
TIMED_FRAMES = 10


def finite_or_none(value: Any) -> Any:
    """JSON has no NaN: undefined metrics become null (recursively)."""
    if isinstance(value, dict):
        return {str(k): finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


@torch.no_grad()
def evaluate_model(model: BevFusionModel, dataset: BevSampleDataset, batch_size: int = 4,
                   tasks: Sequence[str] = TASKS, device: torch.device | str = "cpu",
                   keep_examples: int = 0) -> dict[str, Any]:
    """Detection and map metrics of ``model`` over every sample of ``dataset`` (eval mode).

    Tasks not in ``tasks`` (a single-task model's untrained head) are reported as ``None``.
    ``keep_examples`` > 0 also returns that many (prediction, target) pairs under ``"examples"``.
    """
    cfg = model.cfg
    was_training = model.training
    model.eval()
    predictions, ground_truths, examples = [], [], []
    meter = MapIoUMeter(cfg.map_classes)
    start = time.perf_counter()
    try:
        for first in range(0, len(dataset), batch_size):
            samples = [dataset[i] for i in range(first, min(first + batch_size, len(dataset)))]
            inputs, targets, gts = collate_samples(samples)
            out = model(inputs.to(device))
            dets = decode_detections({"heatmap": out.heatmap, "regression": out.regression}, cfg)
            predictions += dets
            ground_truths += gts
            probs = out.map_logits.sigmoid().cpu().numpy()
            if "map" in targets:
                meter.update(probs, targets["map"].numpy())
            for b in range(len(samples)):
                if len(examples) < keep_examples:
                    examples.append({"detections": dets[b], "gt": gts[b], "map_probs": probs[b],
                                     "map_target": targets["map"][b].numpy() if "map" in targets else None,
                                     "points": samples[b]["points"].numpy(), "image": samples[b]["images"][0].numpy()})
    finally:
        model.train(was_training)
    seconds = time.perf_counter() - start
    result: dict[str, Any] = {"frames": len(dataset), "seconds_per_frame": seconds / max(len(dataset), 1)}
    result["detection"] = detection_metrics(predictions, ground_truths, cfg.box_classes) if "detection" in tasks else None
    result["map"] = meter.compute() if ("map" in tasks and dataset.has_map) else None
    result["mAP"] = result["detection"]["mAP"] if result["detection"] else None
    result["mIoU"] = result["map"]["mIoU"] if result["map"] else None
    if keep_examples:
        result["examples"] = examples
    return result


def nd_score(detection: dict[str, Any]) -> float:
    """nuScenes detection score from mAP and the mean TP errors we compute (ATE, ASE, AOE, AVE; the
    simulator has no attributes, so no AAE): ``(5 mAP + sum(1 - min(1, err))) / (5 + 4)``.
    An undefined error (no true positive of any class) counts as the worst, 1."""
    if not math.isfinite(detection["mAP"]):
        return float("nan")  # no ground truth of any class: undefined, like mAP (null in the JSON)
    errors = [detection[f"m{name}"] for name in TP_ERROR_NAMES]
    scores = [1.0 - min(1.0, e) if e is not None and math.isfinite(e) else 0.0 for e in errors]
    return (5.0 * detection["mAP"] + sum(scores)) / (5.0 + len(errors))


def inference_ms(model: BevFusionModel, dataset: BevSampleDataset, frames: int = TIMED_FRAMES) -> float:
    """Median ``BevPredictor.predict`` wall time (ms) over the first ``frames`` samples, one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        predictor = BevPredictor(model)
        count = min(frames, len(dataset))
        inputs = []
        for i in range(count):
            s = dataset[i]
            images = (s["images"].permute(0, 2, 3, 1) * 255.0).round().to(torch.uint8).numpy()
            points = s["points"].numpy()
            inputs.append((images, s["intrinsics"].double().numpy(), s["cam_to_ego"].double().numpy(), points))
        for frame in inputs[:2]:
            predictor.predict(*frame)
        times = []
        for frame in inputs:
            start = time.perf_counter()
            predictor.predict(*frame)
            times.append((time.perf_counter() - start) * 1000.0)
        return float(np.median(times))
    finally:
        torch.set_num_threads(threads)


def plot_examples(examples: Sequence[dict[str, Any]], cfg: BevConfig, path: Path, title: str = "") -> None:
    """Camera image, LiDAR + boxes (green GT, red predictions) and drivable/crossing/walkway maps."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = len(examples)
    fig, axes = plt.subplots(rows, 4, figsize=(16, 3.6 * rows), squeeze=False)
    g, m = cfg.det_grid, cfg.map_grid
    for r, ex in enumerate(examples):
        axes[r, 0].imshow(np.transpose(ex["image"], (1, 2, 0)))
        axes[r, 0].set_title("camera 0")
        ax = axes[r, 1]
        pts = ex["points"]
        ax.scatter(pts[:, 1], pts[:, 0], s=0.05, c="0.5")
        for boxes, colour in ((ex["gt"]["boxes"], "g"), (ex["detections"]["boxes"], "r")):
            for b in boxes:
                c, s = math.cos(b[6]), math.sin(b[6])
                corners = np.array([[1, 1], [1, -1], [-1, -1], [-1, 1], [1, 1]]) * [b[3] / 2, b[4] / 2]
                xy = corners @ np.array([[c, s], [-s, c]]) + b[:2]
                ax.plot(xy[:, 1], xy[:, 0], colour, lw=0.8)
        ax.set_xlim(g.y_max, g.y_min)
        ax.set_ylim(g.x_min, g.x_max)
        ax.set_aspect("equal")
        ax.set_title("LiDAR, GT (green) / detections (red)")
        extent = (m.y_max, m.y_min, m.x_min, m.x_max)
        axes[r, 2].imshow(ex["map_probs"][:3].transpose(1, 2, 0), origin="lower", extent=extent)
        axes[r, 2].set_title("map probs (drivable, crossing, walkway)")
        if ex["map_target"] is not None:
            axes[r, 3].imshow(ex["map_target"][:3].transpose(1, 2, 0), origin="lower", extent=extent)
        axes[r, 3].set_title("map target")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    atomic_save_figure(fig, path, dpi=70)


def load_eval_dataset(args: argparse.Namespace, cfg: BevConfig) -> BevSampleDataset:
    return driving_dataset(args.data, cfg, args.max_scenes, args.nuscenes_version)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bev_evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--data", required=True, help="simulated driving dataset folder (or nuScenes dataroot)")
    parser.add_argument("--nuscenes-version", default=None, help="read --data as nuScenes tables of this version")
    parser.add_argument("--out", required=True, help="metrics JSON")
    parser.add_argument("--figure", default=None, help="example PNG")
    parser.add_argument("--summary", default=None, help="headline JSON: num_cameras, map, nds, miou, inference_ms, "
                                                        "command (e.g. docs/results/bev_surround.json)")
    parser.add_argument("--ship", default=None, help="also write the evaluated weights without optimiser state here "
                                                     "(e.g. ocgs_ros/models/bev_surround.pt)")
    parser.add_argument("--tasks", default="det,map", help="tasks the model was trained on (others: null)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--max-scenes", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0, help="unused by the deterministic evaluation; recorded")
    parser.add_argument("--threads", type=int, default=1)
    return parser


def parse_tasks(text: str) -> tuple[str, ...]:
    """``det,map`` -> ``("detection", "map")``."""
    names = {"det": "detection", "detection": "detection", "map": "map", "seg": "map"}
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts or any(p not in names for p in parts):
        raise ValueError(f"--tasks must be a comma list of det and/or map, got {text!r}")
    return tuple(t for t in TASKS if t in {names[p] for p in parts})


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    torch.set_num_threads(max(1, args.threads))
    tasks = parse_tasks(args.tasks)
    model, cfg, meta = load_checkpoint(args.checkpoint)
    dataset = load_eval_dataset(args, cfg)
    result = evaluate_model(model, dataset, args.batch, tasks, keep_examples=2 if args.figure else 0)
    examples = result.pop("examples", None)
    result["nds"] = nd_score(result["detection"]) if result["detection"] else None
    result.update({"num_cameras": cfg.num_cameras, "miou": result["mIoU"], "inference_ms": inference_ms(model, dataset),
                   "inference_threads": 1, "checkpoint": str(args.checkpoint), "step": meta["step"],
                   "data": str(args.data), "tasks": list(tasks),
                   "command": " ".join(["python -m ocgs_ros.bev.evaluate", *argv])})
    atomic_write_json(args.out, finite_or_none(result))
    if args.summary:
        keys = ("num_cameras", "nds", "miou", "inference_ms", "inference_threads", "frames", "checkpoint", "step",
                "data", "command")
        atomic_write_json(args.summary, finite_or_none({"map": result["mAP"], **{k: result[k] for k in keys}}))
    if args.ship:
        trained_by = meta["extra"].get("run", {}).get("command", str(args.checkpoint))
        save_shipped(args.ship, model, meta, produced_by=trained_by, evaluated_by=result["command"],
                     evaluation={"map": result["mAP"], "miou": result["mIoU"]})
    if args.figure and examples:
        plot_examples(examples, cfg, Path(args.figure), title=str(args.checkpoint))
    print(f"bev_evaluate: mAP {result['mAP']}  mIoU {result['mIoU']}  -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
