"""Metrics of the map evaluation (``ocgs_ros.gaussians.eval_metrics``); the evaluation command itself
is tested in test_mapping_evaluate.py."""
from __future__ import annotations


def test_identity_votes():
    import numpy as np

    from ocgs_ros.evaluation.boxes import Box3D, match_boxes
    from ocgs_ros.gaussians.eval_metrics import IdentityVotes, matched_instance_iou

    votes = IdentityVotes()
    for scene, labels in ((0, [[3, 3, 1], [3, 3], [1, 1, 1, 3]]), (1, [[3, 3], [3, 2, 3]])):
        for view in labels:
            votes.add((scene, 1), kind=5, labels=np.array(view))
    votes.add((1, 2), kind=7, labels=np.array([-1, -1, 4]))  # object rendered as background
    # scene 0: views 3, 3, 1 (overall 3: 5 of 9 pixels); scene 1: 3, 3; object (1, 2): background
    assert votes.cross_view_consistency() == 4 / 6
    assert votes.identified_cross_view_consistency() == 4 / 5 and votes.identified_fraction() == 2 / 3
    assert votes.object_summary((0, 1)) == {"entry": 3, "views": 3, "views_agreeing": 2}
    assert votes.object_summary((1, 2)) == {"entry": -1, "views": 1, "views_agreeing": 1}
    assert votes.object_summary((5, 5)) is None
    fraction, kinds = votes.cross_scene()
    assert fraction == 1.0 and kinds == {5: [3, 3]}
    assert votes.kind_collisions() is None  # one identified object per kind so far: no pair
    votes.add((2, 1), kind=8, labels=np.array([3, 3]))  # another kind with entry 3: a collision
    votes.add((2, 2), kind=9, labels=np.array([6]))
    # identified objects (kind, label): (5, 3), (5, 3), (8, 3), (9, 6); different-kind pairs: 5
    # of which (5, 3)-(8, 3) twice collide
    assert votes.kind_collisions() == 2 / 5
    gt = np.zeros((4, 4), int)
    gt[:2, :2], gt[2:, 2:] = 1, 2
    pred = np.zeros((4, 4), int)
    pred[:2, :] = 9  # covers object 1 and two background pixels
    assert matched_instance_iou(pred, gt, [1, 2]) == {1: 0.5, 2: 0.0}
    corners = Box3D.from_yaw([0, 0, 0.5], [2, 1, 1], np.pi / 2).corners()
    lo, hi = corners.min(axis=0), corners.max(axis=0)
    assert np.allclose(lo, [-0.5, -1, 0]) and np.allclose(hi, [0.5, 1, 1])
    gt = [Box3D.from_aabb(lo, hi)]
    assert match_boxes(gt, [Box3D.from_aabb(lo + 0.1, hi + 0.1)], 0.5).matched == 1
    assert match_boxes(gt, [], 0.5).matched == 0
