"""Evaluation metrics for GOCL segmentations and codebook identities (numpy / scipy).

Conventions (see docs/conventions.md): ``gt_instance`` int ``[H, W]`` with 0 = background,
``gt_kind`` int ``[H, W]`` with -1 = background. Predicted ``masks`` ``[K, H, W]`` are soft masks
with slot 0 = background; hard segmentations are their argmax over K. ``slot_ids`` ``[K]`` are the
slots' codebook entries (-1 for the background slot).

Scene metrics per image: FG-ARI, mean best overlap (mBO), Hungarian-matched mIoU, background and
foreground IoU. Identity metrics over *appearances* (one per ground-truth object per view, across
all views and scenes): codebook consistency, NMI(kind, code), Hungarian identification accuracy.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

MISSED_CODE = -1  # appearance whose best-overlapping slot is the background slot


def _to_numpy(array: Any) -> np.ndarray:
    """Accept numpy arrays and (CPU or GPU) torch tensors without importing torch here."""
    if hasattr(array, "detach"):
        array = array.detach().cpu().numpy()
    return np.asarray(array)


def _contingency(labels_a: np.ndarray, labels_b: np.ndarray) -> np.ndarray:
    """Counts ``[len(unique(a)), len(unique(b))]`` of co-occurring labels."""
    _, index_a = np.unique(labels_a, return_inverse=True)
    _, index_b = np.unique(labels_b, return_inverse=True)
    index_a, index_b = index_a.ravel(), index_b.ravel()
    table = np.zeros((index_a.max(initial=-1) + 1, index_b.max(initial=-1) + 1), dtype=np.int64)
    np.add.at(table, (index_a, index_b), 1)
    return table


def _check_same_length(labels_a: np.ndarray, labels_b: np.ndarray, what: str) -> None:
    if labels_a.shape != labels_b.shape:
        raise ValueError(f"{what}: label arrays differ in shape ({labels_a.shape} vs {labels_b.shape})")


def _pair_count(counts: np.ndarray) -> float:
    """Number of unordered pairs within groups of the given sizes: sum of C(n, 2)."""
    return float((counts * (counts - 1) / 2.0).sum())


def adjusted_rand_index(labels_true: Any, labels_pred: Any) -> float:
    """Adjusted Rand index of two labelings of the same items (any shape, flattened).

    1 for identical partitions (also when both are trivial), ~0 for chance agreement.
    """
    a, b = _to_numpy(labels_true).ravel(), _to_numpy(labels_pred).ravel()
    _check_same_length(a, b, "adjusted_rand_index")
    if a.size == 0:
        raise ValueError("adjusted_rand_index of zero items is undefined")
    table = _contingency(a, b).astype(np.float64)
    index = _pair_count(table)
    sum_a, sum_b = _pair_count(table.sum(axis=1)), _pair_count(table.sum(axis=0))
    total_pairs = a.size * (a.size - 1) / 2.0
    expected = sum_a * sum_b / total_pairs if total_pairs > 0 else 0.0
    maximum = (sum_a + sum_b) / 2.0
    if maximum == expected:  # only when both partitions are identical and trivial
        return 1.0
    return float((index - expected) / (maximum - expected))


def hard_segmentation(masks: Any) -> np.ndarray:
    """Argmax over slots of soft masks ``[K, H, W]`` -> slot index map ``[H, W]`` (int64)."""
    masks = _to_numpy(masks)
    if masks.ndim != 3:
        raise ValueError(f"masks must be [K, H, W], got shape {masks.shape}")
    return masks.argmax(axis=0).astype(np.int64)


def _check_image_pair(masks: np.ndarray, gt_instance: np.ndarray) -> None:
    if masks.ndim != 3 or gt_instance.ndim != 2 or masks.shape[1:] != gt_instance.shape:
        raise ValueError(f"masks [K, H, W] and gt_instance [H, W] must agree in H, W: got "
                         f"{masks.shape} and {gt_instance.shape}")


def foreground_ari(masks: Any, gt_instance: Any) -> float:
    """ARI between predicted slot assignment and gt instances over gt-foreground pixels only.

    NaN if the image has no foreground pixel.
    """
    masks, gt_instance = _to_numpy(masks), _to_numpy(gt_instance)
    _check_image_pair(masks, gt_instance)
    foreground = gt_instance > 0
    if not foreground.any():
        return float("nan")
    return adjusted_rand_index(gt_instance[foreground], hard_segmentation(masks)[foreground])


def object_iou_matrix(masks: Any, gt_instance: Any) -> tuple[np.ndarray, np.ndarray]:
    """IoU ``[G, K-1]`` of each gt object (ids > 0, ascending; returned too) vs each object slot's
    hard mask (argmax of ``masks``; the background slot 0 is never a candidate)."""
    masks, gt_instance = _to_numpy(masks), _to_numpy(gt_instance)
    _check_image_pair(masks, gt_instance)
    segmentation = hard_segmentation(masks).ravel()
    instances = gt_instance.ravel()
    object_ids = np.unique(instances[instances > 0])
    num_slots = masks.shape[0]
    gt_index = np.searchsorted(object_ids, instances)
    is_object = instances > 0
    intersection = np.zeros((object_ids.size, num_slots), dtype=np.int64)
    np.add.at(intersection, (gt_index[is_object], segmentation[is_object]), 1)
    gt_area = intersection.sum(axis=1)
    slot_area = np.bincount(segmentation, minlength=num_slots)
    union = gt_area[:, None] + slot_area[None, :] - intersection
    iou = np.where(union > 0, intersection / np.maximum(union, 1), 0.0)
    return iou[:, 1:], object_ids


def mean_best_overlap(masks: Any, gt_instance: Any) -> float:
    """Mean over gt objects of the best IoU with any object slot. NaN without gt objects."""
    iou, object_ids = object_iou_matrix(masks, gt_instance)
    if object_ids.size == 0:
        return float("nan")
    return float(iou.max(axis=1).mean()) if iou.shape[1] else 0.0


def matched_miou(masks: Any, gt_instance: Any) -> float:
    """Mean IoU over gt objects under a one-to-one Hungarian matching to object slots.

    Objects left unmatched (more objects than slots) count as IoU 0. NaN without gt objects.
    """
    iou, object_ids = object_iou_matrix(masks, gt_instance)
    if object_ids.size == 0:
        return float("nan")
    rows, cols = linear_sum_assignment(iou, maximize=True)
    return float(iou[rows, cols].sum() / object_ids.size)


def _iou(pred: np.ndarray, gt: np.ndarray) -> float:
    union = np.logical_or(pred, gt).sum()
    if union == 0:
        return float("nan")
    return float(np.logical_and(pred, gt).sum() / union)


def foreground_background_iou(masks: Any, gt_instance: Any) -> tuple[float, float]:
    """(background IoU, foreground IoU) of the hard segmentation vs gt; NaN where both are empty."""
    masks, gt_instance = _to_numpy(masks), _to_numpy(gt_instance)
    _check_image_pair(masks, gt_instance)
    predicted_background = hard_segmentation(masks) == 0
    gt_background = gt_instance == 0
    return _iou(predicted_background, gt_background), _iou(~predicted_background, ~gt_background)


@dataclass
class ObjectAppearances:
    """One row per gt object in one image: its kind, the codebook entry it got, and from where."""

    instance_ids: np.ndarray  # int64 [N]
    kinds: np.ndarray  # int64 [N]
    codes: np.ndarray  # int64 [N]; MISSED_CODE (-1) when the best slot is the background slot
    slots: np.ndarray  # int64 [N] index of the best-overlapping slot (0 = background)


def object_appearances(masks: Any, slot_ids: Any, gt_instance: Any, gt_kind: Any) -> ObjectAppearances:
    """Per gt object: the slot with the largest (soft) mask mass inside the object, and that
    slot's codebook entry. The kind is the most frequent ``gt_kind`` over the object's pixels."""
    masks, slot_ids = _to_numpy(masks).astype(np.float64), _to_numpy(slot_ids).astype(np.int64)
    gt_instance, gt_kind = _to_numpy(gt_instance), _to_numpy(gt_kind)
    _check_image_pair(masks, gt_instance)
    if slot_ids.shape != (masks.shape[0],):
        raise ValueError(f"slot_ids must be [K] = [{masks.shape[0]}], got shape {slot_ids.shape}")
    if gt_kind.shape != gt_instance.shape:
        raise ValueError(f"gt_kind {gt_kind.shape} and gt_instance {gt_instance.shape} differ in shape")
    instances = gt_instance.ravel()
    object_ids = np.unique(instances[instances > 0]).astype(np.int64)
    if object_ids.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return ObjectAppearances(empty, empty.copy(), empty.copy(), empty.copy())
    is_object = instances > 0
    gt_index = np.searchsorted(object_ids, instances[is_object])
    flat_masks = masks.reshape(masks.shape[0], -1)[:, is_object]  # [K, P_fg]
    overlap = np.stack([np.bincount(gt_index, weights=m, minlength=object_ids.size) for m in flat_masks])
    best_slot = overlap.argmax(axis=0).astype(np.int64)  # [G]
    codes = np.where(best_slot == 0, MISSED_CODE, slot_ids[best_slot]).astype(np.int64)
    object_kinds = gt_kind.ravel()[is_object]
    kinds = np.empty(object_ids.size, dtype=np.int64)
    for row in range(object_ids.size):
        values = object_kinds[gt_index == row]
        values = values[values >= 0]
        if values.size == 0:
            raise ValueError(f"gt object {object_ids[row]} has no kind (gt_kind is -1 on all its pixels)")
        unique, counts = np.unique(values, return_counts=True)
        kinds[row] = unique[counts.argmax()]
    return ObjectAppearances(object_ids, kinds, codes, best_slot)


@dataclass
class CodebookConsistency:
    """Appearance-weighted mean and per-kind consistency of codebook assignments."""

    mean: float
    per_kind: dict[int, float] = field(default_factory=dict)  # kind -> fraction on majority entry
    majority_code: dict[int, int] = field(default_factory=dict)  # kind -> majority entry (-1: none)
    appearances: dict[int, int] = field(default_factory=dict)  # kind -> number of appearances


def _check_appearance_arrays(kinds: Any, codes: Any) -> tuple[np.ndarray, np.ndarray]:
    kinds, codes = _to_numpy(kinds).astype(np.int64).ravel(), _to_numpy(codes).astype(np.int64).ravel()
    _check_same_length(kinds, codes, "appearances")
    if kinds.size == 0:
        raise ValueError("no appearances: need at least one (kind, code) pair")
    if (kinds < 0).any():
        raise ValueError("appearance kinds must be >= 0 (background is not an object)")
    return kinds, codes


def codebook_consistency(kinds: Any, codes: Any) -> CodebookConsistency:
    """For each kind, the fraction of its appearances assigned its majority codebook entry.

    Missed appearances (code -1) count against their kind and never form a majority. Note: a
    collapsed codebook (every object on one entry) scores 1 here — read it with NMI and
    identification accuracy.
    """
    kinds, codes = _check_appearance_arrays(kinds, codes)
    result = CodebookConsistency(mean=0.0)
    agreeing = 0
    for kind in np.unique(kinds):
        kind_codes = codes[kinds == kind]
        valid = kind_codes[kind_codes >= 0]
        if valid.size:
            unique, counts = np.unique(valid, return_counts=True)
            majority, majority_count = int(unique[counts.argmax()]), int(counts.max())
        else:
            majority, majority_count = MISSED_CODE, 0
        result.per_kind[int(kind)] = majority_count / kind_codes.size
        result.majority_code[int(kind)] = majority
        result.appearances[int(kind)] = int(kind_codes.size)
        agreeing += majority_count
    result.mean = agreeing / kinds.size
    return result


def _entropy(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def normalized_mutual_information(labels_a: Any, labels_b: Any) -> float:
    """NMI with arithmetic-mean normalisation: MI / ((H(a) + H(b)) / 2); 1 if both are constant."""
    a, b = _to_numpy(labels_a).ravel(), _to_numpy(labels_b).ravel()
    _check_same_length(a, b, "normalized_mutual_information")
    if a.size == 0:
        raise ValueError("normalized_mutual_information of zero items is undefined")
    table = _contingency(a, b).astype(np.float64)
    h_a, h_b = _entropy(table.sum(axis=1)), _entropy(table.sum(axis=0))
    if h_a == 0.0 and h_b == 0.0:
        return 1.0
    joint = table / table.sum()
    outer = np.outer(joint.sum(axis=1), joint.sum(axis=0))
    nonzero = joint > 0
    mutual_information = float((joint[nonzero] * np.log(joint[nonzero] / outer[nonzero])).sum())
    return float(max(0.0, mutual_information) / ((h_a + h_b) / 2.0))


def identification_accuracy(kinds: Any, codes: Any) -> tuple[float, dict[int, int]]:
    """Object-identification accuracy after a one-to-one Hungarian matching of codebook entries to
    kinds (maximising correctly identified appearances). Missed appearances (-1) are never
    correct. Returns (accuracy, {code: kind})."""
    kinds, codes = _check_appearance_arrays(kinds, codes)
    valid = codes >= 0
    if not valid.any():
        return 0.0, {}
    kind_values, kind_index = np.unique(kinds[valid], return_inverse=True)
    code_values, code_index = np.unique(codes[valid], return_inverse=True)
    table = np.zeros((kind_values.size, code_values.size), dtype=np.int64)
    np.add.at(table, (kind_index, code_index), 1)
    rows, cols = linear_sum_assignment(table, maximize=True)
    mapping = {int(code_values[c]): int(kind_values[r]) for r, c in zip(rows, cols)}
    return float(table[rows, cols].sum() / kinds.size), mapping


class GoclMetricAccumulator:
    """Collects per-image scene metrics and object appearances; ``summary()`` aggregates them."""

    SCENE_METRICS = ("fg_ari", "mbo", "miou", "background_iou", "foreground_iou")

    def __init__(self) -> None:
        self.per_image: dict[str, list[float]] = {name: [] for name in self.SCENE_METRICS}
        self._kinds: list[np.ndarray] = []
        self._codes: list[np.ndarray] = []

    def add_image(self, masks: Any, slot_ids: Any, gt_instance: Any, gt_kind: Any) -> ObjectAppearances:
        """Score one image (``masks [K,H,W]``, ``slot_ids [K]``) against its ground truth."""
        masks, gt_instance = _to_numpy(masks), _to_numpy(gt_instance)
        background_iou, foreground_iou = foreground_background_iou(masks, gt_instance)
        values = {"fg_ari": foreground_ari(masks, gt_instance), "mbo": mean_best_overlap(masks, gt_instance),
                  "miou": matched_miou(masks, gt_instance), "background_iou": background_iou,
                  "foreground_iou": foreground_iou}
        for name, value in values.items():
            self.per_image[name].append(value)
        appearances = object_appearances(masks, slot_ids, gt_instance, gt_kind)
        self._kinds.append(appearances.kinds)
        self._codes.append(appearances.codes)
        return appearances

    def add_batch(self, masks: Any, slot_ids: Any, gt_instance: Any, gt_kind: Any) -> None:
        """``masks [B,K,H,W]``, ``slot_ids [B,K]``, ``gt_instance``/``gt_kind [B,H,W]``."""
        masks, slot_ids = _to_numpy(masks), _to_numpy(slot_ids)
        gt_instance, gt_kind = _to_numpy(gt_instance), _to_numpy(gt_kind)
        if not (masks.shape[0] == slot_ids.shape[0] == gt_instance.shape[0] == gt_kind.shape[0]):
            raise ValueError("masks, slot_ids, gt_instance and gt_kind must share the batch size")
        for i in range(masks.shape[0]):
            self.add_image(masks[i], slot_ids[i], gt_instance[i], gt_kind[i])

    @property
    def kinds(self) -> np.ndarray:
        return np.concatenate(self._kinds) if self._kinds else np.zeros(0, dtype=np.int64)

    @property
    def codes(self) -> np.ndarray:
        return np.concatenate(self._codes) if self._codes else np.zeros(0, dtype=np.int64)

    def summary(self) -> dict[str, Any]:
        """Means of scene metrics (NaN-skipping) and identity metrics over all appearances."""
        out: dict[str, Any] = {"images": len(self.per_image["fg_ari"])}
        for name in self.SCENE_METRICS:
            values = np.asarray(self.per_image[name], dtype=np.float64)
            values = values[~np.isnan(values)]
            out[name] = float(values.mean()) if values.size else float("nan")
        kinds, codes = self.kinds, self.codes
        out["appearances"] = int(kinds.size)
        if kinds.size:
            consistency = codebook_consistency(kinds, codes)
            accuracy, mapping = identification_accuracy(kinds, codes)
            out.update(codebook_consistency=consistency.mean,
                       codebook_consistency_per_kind=consistency.per_kind,
                       nmi=normalized_mutual_information(kinds, codes),
                       identification_accuracy=accuracy, code_to_kind=mapping,
                       missed_fraction=float((codes == MISSED_CODE).mean()))
        return out
