"""Detection mAP / TP errors and map IoU on hand-computed cases."""
from __future__ import annotations

import math

import numpy as np
import pytest

from ocgs_ros.bev.config import BOX_CLASSES, MAP_CLASSES
from ocgs_ros.bev.metrics import MapIoUMeter, aligned_size_iou, detection_metrics, map_segmentation_metrics, yaw_difference

CAR = np.array([10.0, 5.0, 0.8, 4.0, 2.0, 1.5, 0.3, 1.0, 0.0])
PED = np.array([-3.0, 2.0, 0.9, 0.6, 0.6, 1.8, 1.0, 0.5, 0.0])


def _pred(boxes, labels, scores):
    return {"boxes": np.asarray(boxes, dtype=np.float64).reshape(-1, 9), "labels": np.asarray(labels), "scores": np.asarray(scores)}


def _gt(boxes, labels):
    return {"boxes": np.asarray(boxes, dtype=np.float64).reshape(-1, 9), "labels": np.asarray(labels)}


def test_perfect_prediction_has_ap_one_and_zero_errors():
    gts = [_gt([CAR, PED], [0, 2]), _gt([CAR + [5, 0, 0, 0, 0, 0, 0, 0, 0]], [0])]
    preds = [_pred([CAR, PED], [0, 2], [0.9, 0.8]), _pred([CAR + [5, 0, 0, 0, 0, 0, 0, 0, 0]], [0], [0.7])]
    m = detection_metrics(preds, gts, BOX_CLASSES)
    assert m["class_ap"]["car"] == pytest.approx(1.0)
    assert m["class_ap"]["pedestrian"] == pytest.approx(1.0)
    assert math.isnan(m["class_ap"]["truck"])  # no ground truth: excluded, not zero
    assert m["mAP"] == pytest.approx(1.0)
    for e in ("ATE", "ASE", "AOE", "AVE"):
        assert m["tp_errors"]["car"][e] == pytest.approx(0.0, abs=1e-12)


def test_shifted_box_counts_only_at_larger_thresholds():
    shifted = CAR.copy()
    shifted[:2] += [0.6, 0.45]  # 0.75 m away: beyond 0.5 m, within 1 m
    m = detection_metrics([_pred([shifted], [0], [0.8])], [_gt([CAR], [0])], BOX_CLASSES)
    ap = m["ap"]["car"]
    assert ap[0.5] == pytest.approx(0.0)
    assert ap[1.0] == ap[2.0] == ap[4.0] == pytest.approx(1.0)
    assert m["class_ap"]["car"] == pytest.approx(0.75)
    assert m["tp_errors"]["car"]["ATE"] == pytest.approx(0.75)


def test_false_positive_ranked_first_halves_precision():
    far = CAR.copy()
    far[:2] += 20.0
    preds = [_pred([far, CAR], [0, 0], [0.9, 0.5])]
    m = detection_metrics(preds, [_gt([CAR], [0])], BOX_CLASSES)
    # PR points: (recall 0, precision 0) after the FP, (1, 0.5) after the TP; nuScenes
    # interpolates linearly: precision(r) = 0.5 r. AP = mean over r = 0.11..1.00 of
    # max(0.5 r - 0.1, 0), divided by 0.9.
    r = np.arange(11, 101) / 100
    expected = np.mean(np.clip(0.5 * r - 0.1, 0, None)) / 0.9
    assert m["ap"]["car"][2.0] == pytest.approx(expected)
    assert m["ap"]["car"][2.0] < 0.5


def test_missed_ground_truth_limits_recall():
    other = CAR.copy()
    other[:2] = [-20.0, -10.0]
    m = detection_metrics([_pred([CAR], [0], [0.9])], [_gt([CAR, other], [0, 0])], BOX_CLASSES)
    # Precision 1 up to recall 0.5, 0 beyond: 40 of the 90 bins above recall 0.1 reach 0.9/0.9.
    assert m["ap"]["car"][4.0] == pytest.approx(40 / 90)


def test_tp_errors_hand_case():
    pred = CAR.copy()
    pred[0] += 0.3  # ATE 0.3
    pred[3] = 2.0  # half the length: aligned IoU 0.5 -> ASE 0.5
    pred[6] += 0.2  # AOE 0.2
    pred[7:9] = [0.0, 0.0]  # AVE 1.0
    m = detection_metrics([_pred([pred], [0], [0.9])], [_gt([CAR], [0])], BOX_CLASSES)
    err = m["tp_errors"]["car"]
    assert err["ATE"] == pytest.approx(0.3)
    assert err["ASE"] == pytest.approx(0.5)
    assert err["AOE"] == pytest.approx(0.2)
    assert err["AVE"] == pytest.approx(1.0)


def test_wrong_class_does_not_match():
    m = detection_metrics([_pred([CAR], [1], [0.9])], [_gt([CAR], [0])], BOX_CLASSES)
    assert m["class_ap"]["car"] == pytest.approx(0.0)
    assert m["tp_errors"]["car"]["ATE"] == 1.0  # nuScenes assigns 1 when nothing was matched


def test_geometry_helpers():
    assert yaw_difference(3.1, -3.1) == pytest.approx(2 * math.pi - 6.2)
    assert yaw_difference(0.0, math.pi) == pytest.approx(math.pi)
    assert aligned_size_iou(np.array([2.0, 2, 2]), np.array([1.0, 2, 2])) == pytest.approx(0.5)


def test_detection_metrics_rejects_bad_shapes():
    with pytest.raises(ValueError, match="prediction samples"):
        detection_metrics([], [_gt([CAR], [0])], BOX_CLASSES)
    with pytest.raises(ValueError, match=r"\[N, 9\]"):
        detection_metrics([{"boxes": np.zeros((1, 7)), "labels": np.zeros(1), "scores": np.zeros(1)}],
                          [_gt([CAR], [0])], BOX_CLASSES)


def test_map_iou_hand_cases_and_threshold_sweep():
    gt = np.zeros((1, 6, 2, 2))
    probs = np.zeros((1, 6, 2, 2))
    gt[0, 0] = [[1, 1], [0, 0]]
    probs[0, 0] = [[0.9, 0.5], [0.42, 0.1]]
    # thr 0.35/0.40: pred {0.9, 0.5, 0.42} -> TP 2, FP 1 -> IoU 2/3
    # thr 0.45/0.50: pred {0.9, 0.5}       -> IoU 1
    # thr >= 0.55:   pred {0.9}            -> TP 1, FN 1 -> IoU 1/2
    gt[0, 1] = [[1, 0], [0, 0]]
    probs[0, 1] = [[0.2, 0.8], [0.0, 0.0]]  # always wrong: IoU 0 at every threshold
    m = map_segmentation_metrics(probs, gt, MAP_CLASSES)
    table = m["iou"]["drivable_area"]
    assert table[0.35] == pytest.approx(2 / 3) and table[0.4] == pytest.approx(2 / 3)
    assert table[0.45] == pytest.approx(1.0) and table[0.5] == pytest.approx(1.0)
    assert table[0.55] == pytest.approx(0.5) and table[0.65] == pytest.approx(0.5)
    assert m["best_iou"]["drivable_area"] == pytest.approx(1.0)
    assert m["best_threshold"]["drivable_area"] == pytest.approx(0.45)
    assert m["best_iou"]["ped_crossing"] == pytest.approx(0.0)
    assert math.isnan(m["best_iou"]["walkway"])  # no prediction, no ground truth
    assert m["mIoU"] == pytest.approx(0.5)


def test_map_meter_accumulates_over_samples():
    meter = MapIoUMeter(MAP_CLASSES, thresholds=(0.5,))
    a = np.zeros((1, 6, 1, 2))
    a[0, 0, 0, 0] = 1
    meter.update(a, a)  # TP 1
    b = np.zeros((1, 6, 1, 2))
    b[0, 0, 0, 1] = 1
    meter.update(np.zeros_like(b), b)  # FN 1
    assert meter.compute()["best_iou"]["drivable_area"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        meter.update(a * 3, a)
    with pytest.raises(ValueError, match="must both be"):
        meter.update(np.zeros((1, 5, 2, 2)), np.zeros((1, 5, 2, 2)))
