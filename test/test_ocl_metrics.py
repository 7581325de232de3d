"""GOCL metrics against hand-computed cases (and scikit-learn, where installed, as a reference)."""
from __future__ import annotations

import numpy as np
import pytest

from ocgs_ros.ocl.metrics import (MISSED_CODE, GoclMetricAccumulator, adjusted_rand_index,
                                  codebook_consistency, foreground_ari, foreground_background_iou,
                                  identification_accuracy, matched_miou, mean_best_overlap,
                                  normalized_mutual_information, object_appearances)


def one_hot_masks(segmentation: np.ndarray, num_slots: int) -> np.ndarray:
    """Hard slot map [H, W] -> one-hot masks [K, H, W]."""
    return (np.arange(num_slots)[:, None, None] == segmentation[None]).astype(np.float32)


# 1 x 8 image: background, object 1 (4 px), object 2 (2 px).
GT_ROW = np.array([[0, 0, 1, 1, 1, 1, 2, 2]], dtype=np.int32)


def test_ari_hand_computed():
    # Contingency {0:[2,0,0], 1:[0,1,1]}: index 1, sums 2 and 1, 6 pairs -> expected 1/3, max 3/2.
    assert adjusted_rand_index([0, 0, 1, 1], [0, 0, 1, 2]) == pytest.approx((1 - 1 / 3) / (1.5 - 1 / 3))
    assert adjusted_rand_index([0, 0, 1, 1], [5, 5, 3, 3]) == pytest.approx(1.0)  # label permutation
    assert adjusted_rand_index([0, 0, 1, 1], [0, 1, 0, 1]) == pytest.approx(-0.5)
    assert adjusted_rand_index([4, 4, 4], [1, 1, 1]) == 1.0  # both trivial and identical
    with pytest.raises(ValueError):
        adjusted_rand_index([0, 1], [0, 1, 2])


def test_ari_and_nmi_match_scikit_learn():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    for _ in range(20):
        n = int(rng.integers(2, 300))
        a, b = rng.integers(0, rng.integers(1, 6), n), rng.integers(0, rng.integers(1, 6), n)
        if rng.random() < 0.3:
            b = np.where(rng.random(n) < 0.8, a, b)  # correlated labelings too
        assert adjusted_rand_index(a, b) == pytest.approx(sklearn_metrics.adjusted_rand_score(a, b), abs=1e-10)
        assert normalized_mutual_information(a, b) == pytest.approx(
            sklearn_metrics.normalized_mutual_info_score(a, b), abs=1e-10)


def test_foreground_ari_ignores_background_and_penalises_merges():
    # Objects split perfectly, background wrongly given to slot 2 -> still 1 (background ignored).
    assert foreground_ari(one_hot_masks(np.array([[2, 2, 1, 1, 1, 1, 3, 3]]), 4), GT_ROW) == pytest.approx(1.0)
    # Both objects merged into one slot -> 0 (one predicted cluster vs two true ones).
    assert foreground_ari(one_hot_masks(np.array([[0, 0, 1, 1, 1, 1, 1, 1]]), 3), GT_ROW) == pytest.approx(0.0)
    assert np.isnan(foreground_ari(one_hot_masks(np.zeros((1, 8), int), 2), np.zeros((1, 8), np.int32)))


def test_mean_best_overlap_and_hungarian_miou_hand_computed():
    # Slot 1 = px 2-4, slot 2 = px 5-7: IoU(obj1, slot1) = 3/4, IoU(obj2, slot2) = 2/3.
    masks = one_hot_masks(np.array([[0, 0, 1, 1, 1, 2, 2, 2]]), 3)
    assert mean_best_overlap(masks, GT_ROW) == pytest.approx((3 / 4 + 2 / 3) / 2)
    assert matched_miou(masks, GT_ROW) == pytest.approx((3 / 4 + 2 / 3) / 2)
    # Slot 1 covers both objects (6 px): best overlaps 4/6 and 2/6, but one-to-one matching can
    # give it to only one object; the other gets the empty slot 2 (IoU 0).
    merged = one_hot_masks(np.array([[0, 0, 1, 1, 1, 1, 1, 1]]), 3)
    assert mean_best_overlap(merged, GT_ROW) == pytest.approx(0.5)
    assert matched_miou(merged, GT_ROW) == pytest.approx((4 / 6) / 2)
    # An object claimed by the background slot scores 0 (background is never a candidate).
    absorbed = one_hot_masks(np.array([[0, 0, 1, 1, 1, 1, 0, 0]]), 3)
    assert mean_best_overlap(absorbed, GT_ROW) == pytest.approx(0.5)


def test_foreground_background_iou_hand_computed():
    masks = one_hot_masks(np.array([[0, 0, 0, 1, 1, 1, 2, 2]]), 3)
    background_iou, foreground_iou = foreground_background_iou(masks, GT_ROW)
    assert background_iou == pytest.approx(2 / 3)  # predicted bg px 0-2 vs gt bg px 0-1
    assert foreground_iou == pytest.approx(5 / 6)  # predicted fg px 3-7 vs gt fg px 2-7


def test_object_appearances_picks_largest_soft_overlap():
    gt_instance = np.array([[0, 0, 1, 1, 1, 1, 2, 2], [3, 3, 1, 1, 1, 1, 2, 2]], dtype=np.int32)
    gt_kind = np.where(gt_instance == 1, 7, np.where(gt_instance == 2, 4, np.where(gt_instance == 3, 9, -1)))
    masks = np.zeros((3, 2, 8), np.float32)
    masks[0] = 1.0
    masks[:, :, 2:6] = np.array([0.1, 0.6, 0.3])[:, None, None]  # object 1: slot 1 dominates
    masks[:, :, 6:8] = np.array([0.2, 0.35, 0.45])[:, None, None]  # object 2: slot 2 (soft majority)
    slot_ids = np.array([-1, 5, 11])  # background slot, then two object slots
    appearances = object_appearances(masks, slot_ids, gt_instance, gt_kind)
    assert appearances.instance_ids.tolist() == [1, 2, 3]
    assert appearances.kinds.tolist() == [7, 4, 9]
    assert appearances.slots.tolist() == [1, 2, 0]
    assert appearances.codes.tolist() == [5, 11, MISSED_CODE]  # object 3 lies under the background slot


def test_object_appearances_rejects_object_without_kind():
    with pytest.raises(ValueError, match="no kind"):
        object_appearances(one_hot_masks(GT_ROW[0:1] * 0, 2), [-1, 0], GT_ROW, np.full((1, 8), -1))


def test_codebook_consistency_hand_computed():
    result = codebook_consistency([0, 0, 0, 1, 1, 2], [2, 2, 3, 4, MISSED_CODE, MISSED_CODE])
    assert result.per_kind == {0: pytest.approx(2 / 3), 1: pytest.approx(1 / 2), 2: 0.0}
    assert result.majority_code == {0: 2, 1: 4, 2: MISSED_CODE}
    assert result.appearances == {0: 3, 1: 2, 2: 1}
    assert result.mean == pytest.approx((2 + 1 + 0) / 6)


def test_nmi_hand_computed():
    assert normalized_mutual_information([0, 0, 1, 1], [3, 3, 9, 9]) == pytest.approx(1.0)
    assert normalized_mutual_information([0, 0, 1, 1], [0, 1, 0, 1]) == pytest.approx(0.0)
    # kinds (0,0,1,1) vs codes (0,0,0,1): MI = H(codes) - H(codes | kinds) = h(1/4) - 1/2 * ln 2.
    h_codes = -(0.75 * np.log(0.75) + 0.25 * np.log(0.25))
    mutual_information = h_codes - 0.5 * np.log(2)
    assert normalized_mutual_information([0, 0, 1, 1], [0, 0, 0, 1]) == pytest.approx(
        mutual_information / ((np.log(2) + h_codes) / 2))


def test_identification_accuracy_hungarian():
    # kind 0 -> code 7 (2 hits), kind 1 -> code 8 (1 hit; code 7 already taken), kind 2 missed.
    accuracy, mapping = identification_accuracy([0, 0, 1, 1, 2], [7, 7, 7, 8, MISSED_CODE])
    assert accuracy == pytest.approx(3 / 5)
    assert mapping == {7: 0, 8: 1}
    # A collapsed codebook can identify at most one kind.
    accuracy, _ = identification_accuracy([0, 1, 2, 3], [5, 5, 5, 5])
    assert accuracy == pytest.approx(1 / 4)


def test_accumulator_perfect_prediction_scores_one():
    accumulator = GoclMetricAccumulator()
    rng = np.random.default_rng(1)
    for view in range(3):
        gt_instance = np.zeros((6, 6), np.int32)
        gt_instance[1:3, 1:4], gt_instance[4:6, 2:6] = 1, 2
        kinds = rng.permutation(5)[:2]
        gt_kind = np.where(gt_instance == 1, kinds[0], np.where(gt_instance == 2, kinds[1], -1))
        masks = one_hot_masks(gt_instance, 4)
        slot_ids = np.array([-1, kinds[0] + 10, kinds[1] + 10, 3])  # code = kind + 10 everywhere
        accumulator.add_image(masks, slot_ids, gt_instance, gt_kind)
    summary = accumulator.summary()
    assert summary["images"] == 3 and summary["appearances"] == 6
    for name in ("fg_ari", "mbo", "miou", "background_iou", "foreground_iou", "codebook_consistency",
                 "nmi", "identification_accuracy"):
        assert summary[name] == pytest.approx(1.0), name
    assert summary["missed_fraction"] == 0.0
    assert all(summary["code_to_kind"][code] == code - 10 for code in summary["code_to_kind"])


def test_metrics_reject_mismatched_shapes():
    with pytest.raises(ValueError, match="H, W"):
        mean_best_overlap(np.zeros((2, 4, 4)), np.zeros((4, 5), np.int32))
    with pytest.raises(ValueError, match="slot_ids"):
        object_appearances(np.zeros((2, 1, 8)), [-1, 0, 1], GT_ROW, GT_ROW - 1)
