"""Evaluation metrics (numpy): nuScenes-style detection mAP / TP errors and map-segmentation IoU.

Detection follows the nuScenes detection benchmark (devkit ``algo.py``):

* a prediction matches the closest not-yet-matched ground-truth box of the same class and sample
  if their BEV centre distance is ``< threshold``; predictions are processed in descending score
  order over the whole dataset, per class, at thresholds 0.5 / 1 / 2 / 4 m;
* precision is interpolated at 101 recall points (``np.interp``, 0 beyond the reached recall);
  AP is the mean of ``max(precision - 0.1, 0)`` over recall bins above 0.1, divided by 0.9;
* TP errors use the 2 m matches: ATE = centre distance (m), ASE = 1 - IoU of the sizes after
  aligning centre and heading, AOE = smallest yaw difference (rad), AVE = velocity L2 (m/s);
  their cumulative means are resampled on the confidence axis and averaged from recall 0.1 up
  to the highest recall reached (1.0 if that range is empty).

One deliberate difference: a class without any ground truth in the evaluated set reports NaN and
is left out of the means (nuScenes always has every class; our simulator scenes may not).

Map segmentation follows BEVFusion: per class and per threshold, TP/FP/FN are summed over the
whole set; IoU = TP / (TP + FP + FN); the best threshold per class is reported and mIoU is the
mean of the per-class best IoUs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from ..evaluation import Box3D, box_iou_3d

DISTANCE_THRESHOLDS: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)
TP_DISTANCE_THRESHOLD = 2.0
MIN_RECALL = 0.1
MIN_PRECISION = 0.1
RECALL_POINTS = 101
MAP_THRESHOLDS: tuple[float, ...] = (0.35, 0.40, 0.45, 0.50, 0.55, 0.60, 0.65)
TP_ERROR_NAMES: tuple[str, ...] = ("ATE", "ASE", "AOE", "AVE")


def yaw_difference(a: np.ndarray | float, b: np.ndarray | float) -> np.ndarray:
    """Smallest absolute angle between yaws, in ``[0, pi]``."""
    d = np.mod(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64) + np.pi, 2 * np.pi) - np.pi
    return np.abs(d)


def aligned_size_iou(size_a: np.ndarray, size_b: np.ndarray) -> float:
    """3D IoU of two boxes with sizes ``[3]`` (l, w, h) sharing centre and heading (nuScenes' ASE
    is 1 - this), measured with the one box IoU of :mod:`ocgs_ros.evaluation`."""
    return box_iou_3d(Box3D(np.zeros(3), size_a), Box3D(np.zeros(3), size_b))


@dataclass
class ClassMatches:
    """Per-class match result at one threshold, on nuScenes' 101-point recall axis."""

    precision: np.ndarray
    confidence: np.ndarray
    errors: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def max_recall_index(self) -> int:
        nonzero = np.flatnonzero(self.confidence)
        return int(nonzero[-1]) if nonzero.size else 0


def _check_boxes(entry: Mapping[str, np.ndarray], what: str, index: int, need_scores: bool) -> None:
    boxes = np.asarray(entry["boxes"])
    if boxes.ndim != 2 or boxes.shape[1] != 9:
        raise ValueError(f"{what}[{index}]['boxes'] must be [N, 9], got {boxes.shape}")
    if np.asarray(entry["labels"]).shape != (boxes.shape[0],):
        raise ValueError(f"{what}[{index}]['labels'] must be [N] matching the boxes")
    if need_scores and np.asarray(entry["scores"]).shape != (boxes.shape[0],):
        raise ValueError(f"{what}[{index}]['scores'] must be [N] matching the boxes")


def _match_class(predictions: Sequence[Mapping[str, np.ndarray]], ground_truths: Sequence[Mapping[str, np.ndarray]],
                 label: int, threshold: float) -> ClassMatches | None:
    gts = [np.asarray(g["boxes"], dtype=np.float64)[np.asarray(g["labels"]) == label] for g in ground_truths]
    npos = sum(len(g) for g in gts)
    if npos == 0:
        return None
    pred_sample, pred_boxes, pred_scores = [], [], []
    for s, p in enumerate(predictions):
        keep = np.asarray(p["labels"]) == label
        pred_boxes.append(np.asarray(p["boxes"], dtype=np.float64)[keep])
        pred_scores.append(np.asarray(p["scores"], dtype=np.float64)[keep])
        pred_sample.append(np.full(int(keep.sum()), s))
    boxes, scores, samples = np.concatenate(pred_boxes), np.concatenate(pred_scores), np.concatenate(pred_sample)
    order = np.argsort(-scores, kind="stable")
    taken = [np.zeros(len(g), dtype=bool) for g in gts]
    tp = np.zeros(len(order))
    matched_conf: list[float] = []
    errors: dict[str, list[float]] = {name: [] for name in TP_ERROR_NAMES}
    for rank, i in enumerate(order):
        gt, free = gts[samples[i]], ~taken[samples[i]]
        if not free.any():
            continue
        dist = np.linalg.norm(gt[:, :2] - boxes[i, :2], axis=1)
        dist[~free] = np.inf
        j = int(np.argmin(dist))
        if dist[j] < threshold:
            taken[samples[i]][j] = True
            tp[rank] = 1
            matched_conf.append(scores[i])
            errors["ATE"].append(dist[j])
            errors["ASE"].append(1 - float(aligned_size_iou(gt[j, 3:6], boxes[i, 3:6])))
            errors["AOE"].append(float(yaw_difference(gt[j, 6], boxes[i, 6])))
            errors["AVE"].append(float(np.linalg.norm(gt[j, 7:9] - boxes[i, 7:9])))
    recall_axis = np.linspace(0, 1, RECALL_POINTS)
    if not matched_conf:
        return ClassMatches(np.zeros(RECALL_POINTS), np.zeros(RECALL_POINTS),
                             {name: np.ones(RECALL_POINTS) for name in TP_ERROR_NAMES})
    cum_tp = np.cumsum(tp)
    cum_fp = np.cumsum(1 - tp)
    precision = cum_tp / (cum_tp + cum_fp)
    recall = cum_tp / npos
    conf = scores[order]
    precision_i = np.interp(recall_axis, recall, precision, right=0)
    conf_i = np.interp(recall_axis, recall, conf, right=0)
    matched = np.asarray(matched_conf)
    resampled = {}
    for name, values in errors.items():
        cummean = np.cumsum(values) / np.arange(1, len(values) + 1)
        resampled[name] = np.interp(conf_i[::-1], matched[::-1], cummean[::-1])[::-1]
    return ClassMatches(precision_i, conf_i, resampled)


def average_precision(matches: ClassMatches, min_recall: float = MIN_RECALL, min_precision: float = MIN_PRECISION) -> float:
    """nuScenes AP: mean clipped precision above ``min_recall``, normalised by ``1 - min_precision``."""
    prec = matches.precision[int(round(100 * min_recall)) + 1:] - min_precision
    return float(np.mean(np.clip(prec, 0, None))) / (1.0 - min_precision)


def tp_error(matches: ClassMatches, name: str, min_recall: float = MIN_RECALL) -> float:
    """Mean of a TP error between ``min_recall`` and the highest recall reached (1.0 if none)."""
    first, last = int(round(100 * min_recall)) + 1, matches.max_recall_index
    if last < first:
        return 1.0
    return float(np.mean(matches.errors[name][first:last + 1]))


def detection_metrics(predictions: Sequence[Mapping[str, np.ndarray]], ground_truths: Sequence[Mapping[str, np.ndarray]],
                      class_names: Sequence[str], thresholds: Sequence[float] = DISTANCE_THRESHOLDS,
                      tp_threshold: float = TP_DISTANCE_THRESHOLD) -> dict[str, object]:
    """nuScenes-style detection metrics over a set of samples.

    ``predictions[i]``: ``boxes [N, 9]``, ``scores [N]``, ``labels [N]``; ``ground_truths[i]``:
    ``boxes [M, 9]``, ``labels [M]`` (same sample order). Returns ``ap[class][threshold]``,
    ``class_ap[class]`` (mean over thresholds), ``mAP``, ``tp_errors[class][ATE|ASE|AOE|AVE]`` and
    ``mATE``/``mASE``/``mAOE``/``mAVE``.
    """
    if len(predictions) != len(ground_truths):
        raise ValueError(f"{len(predictions)} prediction samples vs {len(ground_truths)} ground-truth samples")
    if tp_threshold not in thresholds:
        raise ValueError(f"tp_threshold {tp_threshold} must be one of the thresholds {tuple(thresholds)}")
    for i, p in enumerate(predictions):
        _check_boxes(p, "predictions", i, need_scores=True)
    for i, g in enumerate(ground_truths):
        _check_boxes(g, "ground_truths", i, need_scores=False)
    ap: dict[str, dict[float, float]] = {}
    class_ap: dict[str, float] = {}
    tp_errors: dict[str, dict[str, float]] = {}
    for label, name in enumerate(class_names):
        per_threshold = {}
        errors = {e: float("nan") for e in TP_ERROR_NAMES}
        for th in thresholds:
            matches = _match_class(predictions, ground_truths, label, th)
            per_threshold[th] = float("nan") if matches is None else average_precision(matches)
            if th == tp_threshold and matches is not None:
                errors = {e: tp_error(matches, e) for e in TP_ERROR_NAMES}
        ap[name] = per_threshold
        class_ap[name] = float(np.mean(list(per_threshold.values())))
        tp_errors[name] = errors
    result: dict[str, object] = {"ap": ap, "class_ap": class_ap, "tp_errors": tp_errors,
                                 "mAP": _nanmean(list(class_ap.values()))}
    for e in TP_ERROR_NAMES:
        result[f"m{e}"] = _nanmean([tp_errors[n][e] for n in class_names])
    return result


def _nanmean(values: Sequence[float]) -> float:
    arr = np.asarray(values, dtype=np.float64)
    return float(np.mean(arr[~np.isnan(arr)])) if (~np.isnan(arr)).any() else float("nan")


class MapIoUMeter:
    """Accumulates map-segmentation TP/FP/FN per class and threshold over a dataset."""

    def __init__(self, class_names: Sequence[str], thresholds: Sequence[float] = MAP_THRESHOLDS) -> None:
        self.class_names = tuple(class_names)
        self.thresholds = np.asarray(thresholds, dtype=np.float64)
        shape = (len(self.class_names), len(self.thresholds))
        self.tp = np.zeros(shape, dtype=np.int64)
        self.fp = np.zeros(shape, dtype=np.int64)
        self.fn = np.zeros(shape, dtype=np.int64)

    def update(self, probabilities: np.ndarray, target: np.ndarray) -> None:
        """Add ``[B, K, H, W]`` (or ``[K, H, W]``) probabilities in [0, 1] and 0/1 targets."""
        probs = np.asarray(probabilities, dtype=np.float64)
        gt = np.asarray(target).astype(bool)
        if probs.ndim == 3:
            probs, gt = probs[None], gt[None]
        if probs.shape != gt.shape or probs.ndim != 4 or probs.shape[1] != len(self.class_names):
            raise ValueError(f"map probabilities {probs.shape} and targets {gt.shape} must both be "
                             f"[B, {len(self.class_names)}, H, W]")
        if probs.size and (probs.min() < 0 or probs.max() > 1):
            raise ValueError("map probabilities must be in [0, 1] (apply sigmoid to logits first)")
        pred = probs[..., None] >= self.thresholds  # [B, K, H, W, T]
        gt_e = gt[..., None]
        axes = (0, 2, 3)
        self.tp += np.sum(pred & gt_e, axis=axes)
        self.fp += np.sum(pred & ~gt_e, axis=axes)
        self.fn += np.sum(~pred & gt_e, axis=axes)

    def iou(self) -> np.ndarray:
        """``[K, T]`` IoU; NaN where a class has neither predictions nor ground truth."""
        union = self.tp + self.fp + self.fn
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(union > 0, self.tp / np.maximum(union, 1), np.nan)

    def compute(self) -> dict[str, object]:
        """Per-class best IoU and its threshold, the full IoU table, and mIoU of the best IoUs."""
        iou = self.iou()
        best_iou, best_threshold = {}, {}
        for k, name in enumerate(self.class_names):
            row = iou[k]
            if np.isnan(row).all():
                best_iou[name], best_threshold[name] = float("nan"), float("nan")
            else:
                j = int(np.nanargmax(row))
                best_iou[name], best_threshold[name] = float(row[j]), float(self.thresholds[j])
        return {
            "iou": {name: dict(zip(self.thresholds.tolist(), iou[k].tolist())) for k, name in enumerate(self.class_names)},
            "best_iou": best_iou,
            "best_threshold": best_threshold,
            "mIoU": _nanmean(list(best_iou.values())),
        }


def map_segmentation_metrics(probabilities: np.ndarray, target: np.ndarray, class_names: Sequence[str],
                             thresholds: Sequence[float] = MAP_THRESHOLDS) -> dict[str, object]:
    """One-shot ``MapIoUMeter`` over a stacked set."""
    meter = MapIoUMeter(class_names, thresholds)
    meter.update(probabilities, target)
    return meter.compute()
