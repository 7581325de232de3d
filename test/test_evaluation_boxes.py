"""The one box ruler: 3D IoU of oriented boxes and Hungarian one-to-one matching."""
import math
from types import SimpleNamespace

import numpy as np
import pytest

from ocgs_ros.evaluation import (Box3D, GroundTruthObject, box_iou_3d, ground_truth_boxes, iou_matrix, match_boxes,
                                 match_objects)
from ocgs_ros.sim.types import ObjectInfo


def _aabb_formula(min_a, max_a, min_b, max_b) -> float:
    inter = np.clip(np.minimum(max_a, max_b) - np.maximum(min_a, min_b), 0.0, None).prod()
    union = np.prod(np.subtract(max_a, min_a)) + np.prod(np.subtract(max_b, min_b)) - inter
    return float(inter / union)


def _yaw_about_origin(box_min, box_max, yaw):
    """The AABB turned by ``yaw`` about the world z axis through the origin, as an oriented box."""
    c, s = math.cos(yaw), math.sin(yaw)
    centre = (np.asarray(box_min) + box_max) / 2
    turned = np.array([c * centre[0] - s * centre[1], s * centre[0] + c * centre[1], centre[2]])
    return Box3D.from_yaw(turned, np.subtract(box_max, box_min), yaw)


def test_identical_boxes_score_one_and_disjoint_or_touching_boxes_zero():
    box = Box3D.from_yaw([1.0, -2.0, 0.5], [2.0, 1.0, 1.5], 0.7)
    assert box_iou_3d(box, box) == pytest.approx(1.0, abs=1e-12)
    far = Box3D.from_yaw([5.0, -2.0, 0.5], [2.0, 1.0, 1.5], 0.7)
    above = Box3D.from_yaw([1.0, -2.0, 3.0], [2.0, 1.0, 1.5], 0.7)
    assert box_iou_3d(box, far) == 0.0 and box_iou_3d(box, above) == 0.0
    touching = Box3D.from_aabb([1.0, 0.0, 0.0], [2.0, 1.0, 1.0])
    assert box_iou_3d(Box3D.from_aabb([0.0, 0.0, 0.0], [1.0, 1.0, 1.0]), touching) == 0.0


def test_square_turned_45_degrees_against_its_axis_aligned_twin():
    # the overlap of a unit square and its 45-degree twin is a regular octagon of area 2(sqrt2 - 1),
    # so the IoU of the two unit cubes is 2(sqrt2 - 1) / (2 - 2(sqrt2 - 1)) = 1 / sqrt2
    straight = Box3D.from_yaw([0.0, 0.0, 0.0], [1.0, 1.0, 1.0], 0.0)
    turned = Box3D.from_yaw([0.0, 0.0, 0.0], [1.0, 1.0, 1.0], math.pi / 4)
    assert box_iou_3d(straight, turned) == pytest.approx(1 / math.sqrt(2), rel=1e-12)
    assert box_iou_3d(turned, straight) == pytest.approx(1 / math.sqrt(2), rel=1e-12)


def test_half_overlap_of_yawed_boxes():
    # shifted by half its length along its own (yawed) axis: intersection 1, union 3
    yaw = 0.3
    a = Box3D.from_yaw([0.0, 0.0, 0.0], [2.0, 1.0, 1.0], yaw)
    b = Box3D.from_yaw([math.cos(yaw), math.sin(yaw), 0.0], [2.0, 1.0, 1.0], yaw)
    assert box_iou_3d(a, b) == pytest.approx(1 / 3, rel=1e-12)
    # half the height only
    c = Box3D.from_yaw([0.0, 0.0, 0.5], [2.0, 1.0, 1.0], yaw)
    assert box_iou_3d(a, c) == pytest.approx(1 / 3, rel=1e-12)


def test_axis_aligned_boxes_match_the_simple_aabb_formula_on_both_paths():
    rng = np.random.default_rng(3)
    for _ in range(50):
        lo_a, lo_b = rng.uniform(-1, 1, 3), rng.uniform(-1, 1, 3)
        hi_a, hi_b = lo_a + rng.uniform(0.1, 2, 3), lo_b + rng.uniform(0.1, 2, 3)
        expected = _aabb_formula(lo_a, hi_a, lo_b, hi_b)
        assert box_iou_3d(Box3D.from_aabb(lo_a, hi_a), Box3D.from_aabb(lo_b, hi_b)) == pytest.approx(expected, abs=1e-12)
        # the same pair turned together about z goes through the polygon clipping: IoU unchanged
        yaw = rng.uniform(0.1, 1.4)
        turned = box_iou_3d(_yaw_about_origin(lo_a, hi_a, yaw), _yaw_about_origin(lo_b, hi_b, yaw))
        assert turned == pytest.approx(expected, abs=1e-9)


def test_lying_and_tilted_boxes():
    # a box whose first axis is vertical is upright too: same IoU as its AABB twin
    lying = Box3D([0.0, 0.0, 1.0], [2.0, 1.0, 3.0], np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]]))
    assert lying.vertical_axis() == 0
    assert box_iou_3d(lying, Box3D.from_aabb([-1.5, -0.5, 0.0], [1.5, 0.5, 2.0])) == pytest.approx(1.0, abs=1e-12)
    # tilted off vertical: compared through its enclosing upright prism, which contains the box
    c, s = math.cos(0.4), math.sin(0.4)
    tilted = Box3D([0.0, 0.0, 0.0], [1.0, 1.0, 1.0], np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]]))
    assert tilted.vertical_axis() is None
    assert box_iou_3d(tilted, tilted) == pytest.approx(1.0, abs=1e-12)
    prism = Box3D.from_aabb([-0.5, -(c + s) / 2, -(c + s) / 2], [0.5, (c + s) / 2, (c + s) / 2])
    assert box_iou_3d(tilted, prism) == pytest.approx(1.0, abs=1e-12)


def test_hungarian_matching_beats_greedy_highest_first():
    # 1-D along x (unit y and z): A=[0,1], B=[0.5,1.5]; p1=[0.2,1.2] fits A best (0.67) but B
    # needs it too (0.54); p2=[-0.3,0.7] fits only A (0.54). Highest-IoU-first takes A-p1 and
    # leaves B with p2 (0.11): one match at 0.5. Hungarian pairs A-p2 and B-p1: two.
    def along_x(lo, hi):
        return Box3D.from_aabb([lo, 0.0, 0.0], [hi, 1.0, 1.0])

    gt = [along_x(0.0, 1.0), along_x(0.5, 1.5)]
    pred = [along_x(0.2, 1.2), along_x(-0.3, 0.7)]
    iou = iou_matrix(gt, pred)
    greedy, gt_free, pred_free = 0, set(range(len(gt))), set(range(len(pred)))
    for i, j in sorted(np.ndindex(iou.shape), key=lambda ij: -iou[ij]):
        if i in gt_free and j in pred_free and iou[i, j] >= 0.5:
            gt_free.discard(i)
            pred_free.discard(j)
            greedy += 1
    assert greedy == 1
    match = match_boxes(gt, pred, iou_threshold=0.5)
    assert match.matched == 2
    assert [(g, p) for g, p, _ in match.pairs] == [(0, 1), (1, 0)]
    assert all(value >= 0.5 for _, _, value in match.pairs)


def test_recall_precision_and_empty_sides():
    gt = [Box3D.from_aabb([0, 0, 0], [1, 1, 1]), Box3D.from_aabb([5, 0, 0], [6, 1, 1]),
          Box3D.from_aabb([10, 0, 0], [11, 1, 1])]
    pred = [Box3D.from_aabb([0.1, 0, 0], [1.1, 1, 1]), Box3D.from_aabb([5.6, 0, 0], [6.6, 1, 1])]
    match = match_boxes(gt, pred, iou_threshold=0.5)
    assert (match.matched, match.num_gt, match.num_pred) == (1, 3, 2)
    assert match.recall == pytest.approx(1 / 3) and match.precision == pytest.approx(1 / 2)
    # the Hungarian partner's IoU is reported below the threshold too
    np.testing.assert_allclose(match.assigned_iou_per_gt(), [0.9 / 1.1, 0.4 / 1.6, 0.0])
    assert [(g, p) for g, p, _ in match.assignment] == [(0, 0), (1, 1)]
    np.testing.assert_allclose(match.best_iou_per_gt(), [0.9 / 1.1, 0.4 / 1.6, 0.0])
    # a lower threshold keeps the weak pair too
    assert match_boxes(gt, pred, iou_threshold=0.25).matched == 2
    none = match_boxes(gt, [], iou_threshold=0.5)
    assert none.matched == 0 and none.recall == 0.0 and math.isnan(none.precision)
    assert none.iou.shape == (3, 0) and none.best_iou_per_gt().tolist() == [0.0, 0.0, 0.0]
    assert math.isnan(match_boxes([], pred, iou_threshold=0.5).recall)


def test_bad_boxes_and_thresholds_are_rejected():
    with pytest.raises(ValueError, match="size must be >= 0"):
        Box3D([0, 0, 0], [1, -1, 1])
    with pytest.raises(ValueError, match="finite"):
        Box3D([0, np.nan, 0], [1, 1, 1])
    with pytest.raises(ValueError, match="orthonormal"):
        Box3D([0, 0, 0], [1, 1, 1], np.ones((3, 3)))
    with pytest.raises(ValueError, match="iou_threshold"):
        match_boxes([], [], iou_threshold=0.0)
    flat = Box3D.from_aabb([0, 0, 0], [1, 1, 0])  # zero volume
    assert box_iou_3d(flat, flat) == 0.0


def test_sim_objects_payload_to_ground_truth_and_report():
    payload = ('{"objects": [{"instance_id": 3, "kind_name": "mug", "center": [0, 0, 0.05], "size": [0.1, 0.1, 0.1],'
               ' "yaw": 0.5}, {"instance_id": 4, "kind_name": "cone", "center": [1, 0, 0.05],'
               ' "size": [0.1, 0.1, 0.1], "yaw": 0.0}]}')
    truth = ground_truth_boxes(payload)
    assert [t.label for t in truth] == ["mug#3", "cone#4"] and truth[0].box.yaw == pytest.approx(0.5)
    published = SimpleNamespace(ids=np.array([7]), centers=np.array([[0.0, 0.0, 0.05]]),
                                sizes=np.array([[0.1, 0.1, 0.1]]), rotations=truth[0].box.rotation[None])
    report = match_objects(truth, published, iou_threshold=0.25)
    assert report["matches"] == [{"instance_id": 3, "object_id": 7, "iou": 1.0}]
    assert report["recall"] == 0.5 and report["precision"] == 1.0
    assert report["best_iou_per_object"] == {"mug#3": 1.0, "cone#4": 0.0}
    with pytest.raises(ValueError, match="/sim/objects"):
        ground_truth_boxes('{"things": []}')
    # the simulator's own objects give the same boxes as their JSON
    info = ObjectInfo(3, 0, "mug", "cylinder", (1.0, 0.0, 0.0), "solid", "M", np.array([0, 0, 0.05]),
                      np.array([0.1, 0.1, 0.1]), 0.5)
    from_sim = GroundTruthObject.from_sim(info)
    assert from_sim.label == "mug#3" and box_iou_3d(from_sim.box, truth[0].box) == pytest.approx(1.0)
