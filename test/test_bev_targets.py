"""Detection targets: encode -> perfect head outputs -> decode round trip, NMS, losses."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ocgs_ros.bev.config import BevConfig
from ocgs_ros.bev.losses import gaussian_focal_loss, masked_l1_loss, sigmoid_focal_loss
from ocgs_ros.bev.targets import (
    circle_nms,
    collate_targets,
    decode_detections,
    encode_targets,
    gaussian_radius,
    perfect_head_outputs,
)

CFG = BevConfig.tiny()  # 32 x 32 cells of 0.8 m over [-12.8, 12.8)

GT_BOXES = np.array(
    [
        [4.13, 1.07, 0.55, 4.2, 1.9, 1.6, 0.4, 2.0, -0.3],  # car
        [-6.61, 8.02, 0.9, 9.0, 2.6, 3.2, -2.9, 0.0, 0.0],  # truck
        [7.71, -3.33, 0.8, 0.7, 0.6, 1.8, 1.7, 0.5, 0.5],  # pedestrian
        [-2.05, -9.42, 0.7, 1.8, 0.6, 1.5, 3.0, -4.0, 1.0],  # cyclist
    ]
)
GT_CLASSES = np.array([0, 1, 2, 3])


def _match(decoded, boxes, classes):
    """Index of the decoded box nearest to each ground-truth centre."""
    out = []
    for b in boxes:
        d = np.linalg.norm(decoded["boxes"][:, :2] - b[:2], axis=1)
        out.append(int(np.argmin(d)))
    return out


def test_encode_decode_round_trip():
    targets = collate_targets([encode_targets(GT_BOXES, GT_CLASSES, CFG)])
    decoded = decode_detections(perfect_head_outputs(targets), CFG)[0]
    assert len(decoded["boxes"]) == len(GT_BOXES)
    idx = _match(decoded, GT_BOXES, GT_CLASSES)
    got = decoded["boxes"][idx]
    np.testing.assert_allclose(got[:, :6], GT_BOXES[:, :6], atol=1e-4)
    yaw_err = np.abs(np.mod(got[:, 6] - GT_BOXES[:, 6] + math.pi, 2 * math.pi) - math.pi)
    assert yaw_err.max() < 1e-4
    np.testing.assert_allclose(got[:, 7:], GT_BOXES[:, 7:], atol=1e-5)
    np.testing.assert_array_equal(decoded["labels"][idx], GT_CLASSES)
    assert np.all(decoded["scores"] > 0.99)


def test_heatmap_peaks_and_regression_mask():
    t = encode_targets(GT_BOXES, GT_CLASSES, CFG)
    res, x0, y0 = CFG.det_grid.resolution, CFG.det_grid.x_min, CFG.det_grid.y_min
    rows = np.floor((GT_BOXES[:, 0] - x0) / res).astype(int)
    cols = np.floor((GT_BOXES[:, 1] - y0) / res).astype(int)
    for k, (r, c) in enumerate(zip(rows, cols)):
        assert t["heatmap"][GT_CLASSES[k], r, c] == 1.0
        assert t["regression_mask"][r, c]
        # Neighbouring cell carries a Gaussian value strictly between 0 and 1.
        assert 0 < t["heatmap"][GT_CLASSES[k], r + 1, c] < 1
    assert int(t["regression_mask"].sum()) == len(GT_BOXES)
    assert int((t["heatmap"] == 1).sum()) == len(GT_BOXES)
    # A class without boxes has an empty heatmap channel.
    one = encode_targets(GT_BOXES[:1], GT_CLASSES[:1], CFG)
    assert one["heatmap"][1:].sum() == 0


def test_gaussian_radius_grows_with_box_size_and_respects_minimum():
    small = gaussian_radius(torch.tensor([1.0]), torch.tensor([1.0]), 0.1)
    big = gaussian_radius(torch.tensor([10.0]), torch.tensor([4.0]), 0.1)
    assert big > small > 0
    t = encode_targets(np.array([[0.1, 0.1, 0, 0.4, 0.4, 1, 0, 0, 0]]), np.array([2]), CFG)
    nonzero_rows = np.flatnonzero(t["heatmap"][2].sum(1).numpy())
    assert len(nonzero_rows) == 2 * CFG.min_gaussian_radius + 1


def test_boxes_outside_grid_are_skipped_and_bad_input_raises():
    t = encode_targets(np.array([[40.0, 0, 0, 4, 2, 1.5, 0, 0, 0]]), np.array([0]), CFG)
    assert t["heatmap"].sum() == 0 and not t["regression_mask"].any()
    empty = encode_targets(np.zeros((0, 9)), np.zeros(0, dtype=int), CFG)
    assert empty["heatmap"].shape == (CFG.num_box_classes, *CFG.det_grid.shape)
    with pytest.raises(ValueError, match=r"\[N, 9\]"):
        encode_targets(np.zeros((2, 7)), np.zeros(2, dtype=int), CFG)
    with pytest.raises(ValueError, match="class indices"):
        encode_targets(GT_BOXES[:1], np.array([7]), CFG)
    with pytest.raises(ValueError, match="sizes"):
        encode_targets(np.array([[0, 0, 0, -1, 2, 1, 0, 0, 0.0]]), np.array([0]), CFG)


def test_circle_nms_keeps_best_of_overlapping_duplicates():
    centres = np.array([[0.0, 0.0], [0.5, 0.0], [10.0, 0.0], [0.2, 0.1]])
    scores = np.array([0.6, 0.9, 0.8, 0.7])
    labels = np.array([0, 0, 0, 2])  # the pedestrian next to the cars is another class: kept
    keep = circle_nms(centres, scores, labels, radii=CFG.nms_radius)
    assert keep.tolist() == [1, 2, 3]


def test_decode_suppresses_duplicate_peaks():
    targets = collate_targets([encode_targets(GT_BOXES[:1], GT_CLASSES[:1], CFG)])
    head = perfect_head_outputs(targets)
    r, c = np.argwhere(targets["regression_mask"][0].numpy())[0]
    # A second, weaker car peak 2 cells (1.6 m) away: not a 3x3 local-max neighbour, but inside
    # the 2 m car NMS radius, so circle NMS must drop it and keep the true box.
    head["heatmap"][0, 0, r + 2, c] = 3.0
    head["regression"][0, :, r + 2, c] = head["regression"][0, :, r, c]
    decoded = decode_detections(head, CFG)[0]
    assert len(decoded["boxes"]) == 1
    np.testing.assert_allclose(decoded["boxes"][0, :2], GT_BOXES[0, :2], atol=1e-4)


def test_losses_are_small_for_perfect_outputs_and_large_for_wrong_ones():
    targets = collate_targets([encode_targets(GT_BOXES, GT_CLASSES, CFG)])
    perfect = perfect_head_outputs(targets)
    weights = torch.tensor(CFG.regression_code_weights)
    # The focal loss is minimised by p = 1 at centres and p = 0 elsewhere (the Gaussian only
    # down-weights negatives near centres).
    ideal = torch.where(targets["heatmap"] >= 1, 20.0, -20.0)
    assert gaussian_focal_loss(ideal, targets["heatmap"]) < 1e-3
    assert gaussian_focal_loss(ideal, targets["heatmap"]) < gaussian_focal_loss(perfect["heatmap"], targets["heatmap"])
    assert masked_l1_loss(perfect["regression"], targets["regression"], targets["regression_mask"], weights) == 0
    assert gaussian_focal_loss(-perfect["heatmap"], targets["heatmap"]) > 1.0
    shifted = perfect["regression"] + 1.0
    # L1 per centre cell with weight 1 on 8 channels and 0.2 on 2: 8 + 0.4.
    assert masked_l1_loss(shifted, targets["regression"], targets["regression_mask"], weights) == pytest.approx(8.4)
    gt_map = torch.zeros(1, 6, 4, 4)
    gt_map[:, :, :2] = 1
    good = sigmoid_focal_loss((gt_map * 2 - 1) * 10, gt_map)
    bad = sigmoid_focal_loss(-(gt_map * 2 - 1) * 10, gt_map)
    assert good < 1e-6 < bad
