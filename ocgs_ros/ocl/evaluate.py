"""gocl_evaluate: score a trained GOCL checkpoint on held-out tabletop scenes.

    python -m ocgs_ros.ocl.evaluate --checkpoint runs/gocl_cpu/checkpoint.pt --data data/gocl_heldout \\
        [--baseline-checkpoint runs/gocl_cpu_nocb/checkpoint.pt] \\
        --out docs/results/gocl.json --figure docs/results/gocl_examples.png \\
        [--curve-dir runs/gocl_cpu/snapshots --baseline-curve-dir runs/gocl_cpu_nocb/snapshots \\
         --curve-figure docs/results/gocl_learning_curve.png]

Everything goes through :class:`GoclSegmenter` (the mapper's inference path), at the dataset's
resolution. Scene metrics (FG-ARI, matched mIoU, mean best overlap, background/foreground IoU)
are per-image means; identity metrics (codebook consistency, NMI(entry, kind), Hungarian
identification accuracy) are over all object appearances of all held-out views.

The baseline is the same slot model trained with ``--no-codebook``: its "entry" is the slot
index, which is what plain slot attention offers as identity across scenes.

On an unlabelled recording (``gocl_data --bag`` / ``--images``) every metric that needs labels is
skipped; what can be measured without them is reported instead (:func:`unlabelled_summary`:
reconstruction error, object slots in use, codebook entries in use and their perplexity).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch

from ..atomic_io import atomic_write_json
from .checkpoint import load_checkpoint
from .data import GoclViewDataset, dataset_description
from .metrics import GoclMetricAccumulator
from .model import GoclModel
from .segment import GoclSegmenter

# The acceptance targets; reported next to the measured values, never used to tune.
TARGETS = {"fg_ari": 0.85, "codebook_consistency": 0.90, "nmi": 0.80}


def _finite(value: Any) -> Any:
    """JSON has no NaN: report undefined metrics as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def example_indices(dataset: GoclViewDataset, count: int) -> list[int]:
    """Dataset rows to draw: two opposite views (0 and V/2) of consecutive scenes, so the figure
    shows identity both across views of one scene and across scenes."""
    views = int(dataset.view_index.max()) + 1 if len(dataset) else 0
    picks = []
    for row in range(len(dataset)):
        if int(dataset.view_index[row]) in (0, views // 2) and len(picks) < count:
            picks.append(row)
    return picks


# An object slot counts as present in an image when its mask's peak exceeds this (segment.py's presence).
PRESENT_SLOT_PEAK = 0.5


@torch.no_grad()
def unlabelled_summary(model: GoclModel, dataset: GoclViewDataset, batch_size: int = 64) -> dict[str, Any]:
    """What can be scored without labels: ``reconstruction_mse`` (model resolution, in the model's
    target space: pixels or ViT features), ``present_slots_per_image``, ``codebook_entries_used``
    (distinct entries of present slots) and ``codebook_perplexity`` (of their usage)."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be > 0 (got {batch_size})")
    cfg = model.config
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    start = time.perf_counter()
    squared_error, present, entries = 0.0, 0, []
    try:
        for first in range(0, len(dataset), batch_size):
            images = torch.stack([dataset[i]["image"] for i in range(first, min(first + batch_size, len(dataset)))])
            images = torch.nn.functional.interpolate(images, size=(cfg.image_height, cfg.image_width),
                                                     mode="bilinear", align_corners=False, antialias=True)
            output = model(images.to(device))
            target = output.target if output.target is not None else images.to(device)
            squared_error += float((output.reconstruction - target).pow(2).mean(dim=(1, 2, 3)).sum())
            slot_present = output.masks[:, 1:].flatten(2).amax(dim=-1) > PRESENT_SLOT_PEAK  # [B, Ko]
            present += int(slot_present.sum())
            entries.append(output.codebook_probs.argmax(dim=-1)[slot_present].cpu())
    finally:
        model.train(was_training)
    used = torch.cat(entries) if entries else torch.zeros(0, dtype=torch.int64)
    counts = torch.bincount(used, minlength=cfg.codebook_size).double()
    usage = counts / counts.sum().clamp_min(1.0)
    return {"images": len(dataset), "reconstruction_mse": squared_error / max(len(dataset), 1),
            "present_slots_per_image": present / max(len(dataset), 1),
            "codebook_entries_used": int((counts > 0).sum()),
            "codebook_perplexity": math.exp(float(-(torch.special.xlogy(usage, usage)).sum())),
            "seconds": time.perf_counter() - start}


def evaluate_model(model: GoclModel, dataset: GoclViewDataset, batch_size: int = 64,
                   keep_examples: int = 0) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Metrics of ``model`` over every view of ``dataset`` (deterministic, eval mode).

    Returns ``(summary, examples)``; ``examples`` holds ``keep_examples`` views' ``image``,
    ``reconstruction`` (model resolution), ``masks``, ``slot_ids`` and ``instance``. An unlabelled
    dataset gets :func:`unlabelled_summary` and no examples, and so does a ViT-target model.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be > 0 (got {batch_size})")
    if not dataset.has_labels:
        return unlabelled_summary(model, dataset, batch_size), {}
    # The metrics read masks and slot entries only, which flip averaging leaves unchanged.
    segmenter = GoclSegmenter(model, flip_average=False)
    accumulator = GoclMetricAccumulator()
    start = time.perf_counter()
    for first in range(0, len(dataset), batch_size):
        items = [dataset[i] for i in range(first, min(first + batch_size, len(dataset)))]
        images = torch.stack([item["image"] for item in items])
        instance = torch.stack([item["instance"] for item in items])
        kind = torch.stack([item["kind"] for item in items])
        result = segmenter.segment(images)
        accumulator.add_batch(result.masks.cpu(), result.slot_codebook_ids.cpu(), instance, kind)
    summary = accumulator.summary()
    summary["seconds"] = time.perf_counter() - start

    examples: dict[str, torch.Tensor] = {}
    # A ViT-target model reconstructs features, not an image: there is no reconstruction to draw.
    drawable = model.config.target == "pixels"
    picks = example_indices(dataset, keep_examples) if keep_examples > 0 and drawable else []
    if picks:
        cfg = model.config
        images = torch.stack([dataset[i]["image"] for i in picks])
        result = segmenter.segment(images)
        was_training = model.training
        model.eval()
        with torch.no_grad():
            model_input = torch.nn.functional.interpolate(
                images, size=(cfg.image_height, cfg.image_width), mode="bilinear", align_corners=False,
                antialias=True).to(segmenter.device)
            reconstruction = model(model_input).reconstruction.cpu()
        model.train(was_training)
        examples = {"image": images, "reconstruction": reconstruction, "masks": result.masks.cpu(),
                    "slot_ids": result.slot_codebook_ids.cpu(),
                    "instance": torch.stack([dataset[i]["instance"] for i in picks])}
    return summary, examples


def _kind_names(data_root: Path) -> dict[int, str]:
    meta = json.loads((data_root / "meta.json").read_text())
    return {int(k["kind_id"]): k["name"] for k in meta.get("catalogue", [])}


def _identity_report(summary: dict[str, Any], kind_names: dict[int, str]) -> dict[str, Any]:
    per_kind = summary.get("codebook_consistency_per_kind", {})
    return {kind_names.get(kind, str(kind)): round(value, 4) for kind, value in sorted(per_kind.items())}


def evaluate_checkpoint(path: str | Path, dataset: GoclViewDataset, batch_size: int = 64,
                        device: str = "cpu", keep_examples: int = 0
                        ) -> tuple[dict[str, Any], dict[str, torch.Tensor], GoclModel, dict[str, Any]]:
    """Load ``path`` and run :func:`evaluate_model`; also returns the model and checkpoint meta."""
    model, config, meta = load_checkpoint(path, map_location=device)
    summary, examples = evaluate_model(model, dataset, batch_size, keep_examples)
    summary["use_codebook"] = config.use_codebook
    summary["step"] = meta["step"]
    return summary, examples, model, meta


def evaluate_curve(snapshot_dir: Path, dataset: GoclViewDataset, batch_size: int, device: str
                   ) -> list[dict[str, Any]]:
    """Held-out metrics of every ``*.pt`` snapshot in ``snapshot_dir``, ordered by step."""
    points = []
    for path in sorted(snapshot_dir.glob("*.pt")):
        summary, _, _, _ = evaluate_checkpoint(path, dataset, batch_size, device)
        points.append({"step": summary["step"], "checkpoint": str(path), "use_codebook": summary["use_codebook"],
                       **{name: _finite(summary.get(name)) for name in
                          ("fg_ari", "miou", "mbo", "codebook_consistency", "nmi", "identification_accuracy",
                           "foreground_iou", "background_iou", "missed_fraction")}})
    points.sort(key=lambda p: p["step"])
    return points


SUMMARY_KEYS = ("fg_ari", "miou", "mbo", "background_iou", "foreground_iou", "codebook_consistency", "nmi",
                "identification_accuracy", "missed_fraction", "appearances", "images")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gocl_evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--data", required=True, help="held-out tabletop dataset (never used in training)")
    parser.add_argument("--baseline-checkpoint", default=None, help="same model trained with --no-codebook")
    parser.add_argument("--out", default="docs/results/gocl.json")
    parser.add_argument("--figure", default=None, help="PNG of example decompositions")
    parser.add_argument("--examples", type=int, default=6)
    parser.add_argument("--curve-dir", default=None, help="snapshot folder: held-out metrics vs step")
    parser.add_argument("--baseline-curve-dir", default=None)
    parser.add_argument("--curve-figure", default=None, help="PNG of the learning curves")
    parser.add_argument("--curve-scenes", type=int, default=None,
                        help="evaluate snapshots on the first N held-out scenes only (speed)")
    parser.add_argument("--max-scenes", type=int, default=None, help="use only the first N held-out scenes")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Console entry point (``python -m ocgs_ros.ocl.evaluate``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    data_root = Path(args.data)
    dataset = GoclViewDataset(data_root, max_scenes=args.max_scenes)
    if not dataset.has_labels:
        return _main_unlabelled(args, argv, dataset)
    kind_names = _kind_names(data_root)

    summary, examples, model, meta = evaluate_checkpoint(args.checkpoint, dataset, args.batch, args.device,
                                                        keep_examples=args.examples if args.figure else 0)
    if not summary["use_codebook"]:
        raise ValueError(f"{args.checkpoint} has no codebook (trained with --no-codebook, or saved during its "
                         "codebook warm-up); a --no-codebook model belongs in --baseline-checkpoint")
    result: dict[str, Any] = {name: _finite(summary.get(name)) for name in SUMMARY_KEYS}
    result["codebook_consistency_per_kind"] = _identity_report(summary, kind_names)
    result["code_to_kind"] = {str(code): kind_names.get(kind, str(kind))
                              for code, kind in sorted(summary.get("code_to_kind", {}).items())}
    result.update(
        num_heldout_scenes=dataset.num_scenes, num_heldout_images=len(dataset),
        heldout_dataset={"path": str(data_root), **dataset_description(data_root)},
        checkpoint=str(args.checkpoint), checkpoint_step=meta["step"],
        checkpoint_run=meta["extra"].get("command"), config=model.config.to_dict(),
        command=" ".join(["python -m ocgs_ros.ocl.evaluate", *argv]), targets=TARGETS,
        evaluation_seconds=round(summary["seconds"], 2),
    )
    baseline_examples = None
    if args.baseline_checkpoint:
        base_summary, baseline_examples, base_model, base_meta = evaluate_checkpoint(
            args.baseline_checkpoint, dataset, args.batch, args.device,
            keep_examples=args.examples if args.figure else 0)
        if base_summary["use_codebook"]:
            raise ValueError(f"--baseline-checkpoint {args.baseline_checkpoint} uses the codebook; "
                             "the baseline must be trained with --no-codebook")
        result["baseline_no_codebook_consistency"] = _finite(base_summary.get("codebook_consistency"))
        result["baseline_no_codebook_nmi"] = _finite(base_summary.get("nmi"))
        result["baseline_no_codebook"] = {
            **{name: _finite(base_summary.get(name)) for name in SUMMARY_KEYS},
            "checkpoint": str(args.baseline_checkpoint), "checkpoint_step": base_meta["step"],
            "checkpoint_run": base_meta["extra"].get("command"),
            "identity": "slot index (object slot k reported as entry k-1)",
        }
    else:
        result["baseline_no_codebook_consistency"] = None
        result["baseline_no_codebook_nmi"] = None

    if args.curve_dir or args.baseline_curve_dir:
        curve_data = GoclViewDataset(data_root, max_scenes=args.curve_scenes or args.max_scenes)
        result["learning_curve_scenes"] = curve_data.num_scenes
        if args.curve_dir:
            result["learning_curve"] = evaluate_curve(Path(args.curve_dir), curve_data, args.batch, args.device)
        if args.baseline_curve_dir:
            result["baseline_learning_curve"] = evaluate_curve(Path(args.baseline_curve_dir), curve_data,
                                                               args.batch, args.device)
    atomic_write_json(args.out, result)

    from .plots import plot_examples, plot_learning_curves  # matplotlib only when drawing
    if args.figure and not examples:
        print(f"gocl_evaluate: no {args.figure}: the model reconstructs ViT features, not pixels", file=sys.stderr)
    if args.figure and examples:
        plot_examples(examples, model.config.codebook_size, Path(args.figure), baseline=baseline_examples,
                      title=f"GOCL held-out decompositions (step {meta['step']})")
    if args.curve_figure and ("learning_curve" in result or "baseline_learning_curve" in result):
        plot_learning_curves(result.get("learning_curve", []), result.get("baseline_learning_curve", []),
                             Path(args.curve_figure), targets=TARGETS)
    line = ", ".join(f"{k}={result[k]:.3f}" for k in ("fg_ari", "miou", "codebook_consistency", "nmi",
                                                     "identification_accuracy") if result[k] is not None)
    if result["baseline_no_codebook_consistency"] is not None:
        line += f", baseline consistency={result['baseline_no_codebook_consistency']:.3f}"
    print(f"gocl_evaluate: {line} -> {args.out}")
    return 0


UNLABELLED_KEYS = ("reconstruction_mse", "present_slots_per_image", "codebook_entries_used", "codebook_perplexity",
                   "images")


def _main_unlabelled(args: argparse.Namespace, argv: list[str], dataset: GoclViewDataset) -> int:
    """``main`` on a recording: the label-free summary only (label metrics, baseline, curves skipped)."""
    summary, _, model, meta = evaluate_checkpoint(args.checkpoint, dataset, args.batch, args.device)
    result: dict[str, Any] = {name: _finite(summary[name]) for name in UNLABELLED_KEYS}
    result.update(
        labels=False, skipped="label metrics (FG-ARI, mIoU, codebook consistency, NMI, identification): "
                              "the dataset has no labels",
        dataset={"path": str(args.data), **dataset_description(args.data)}, checkpoint=str(args.checkpoint),
        checkpoint_step=meta["step"], config=model.config.to_dict(),
        command=" ".join(["python -m ocgs_ros.ocl.evaluate", *argv]),
        evaluation_seconds=round(summary["seconds"], 2))
    atomic_write_json(args.out, result)
    print(f"gocl_evaluate: unlabelled data: reconstruction_mse={result['reconstruction_mse']:.4g}, "
          f"{result['codebook_entries_used']} codebook entries used -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
