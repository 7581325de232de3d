"""Objects of kinds the codebook does not name (issue 19): the geometric path adds them with entry -1
and a nearest-entry hint, never touches identified objects, keeps their ids while they gain an entry;
range returns accumulated over frames find objects the map holds few Gaussians of."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from ocgs_ros.gaussians.map import GaussianMap, GaussianMapConfig
from ocgs_ros.gaussians.objects import UNKNOWN_ENTRY, MapObject, ObjectConfig, ObjectTracker, extract_instances
from ocgs_ros.gaussians.objects.evidence import PointEvidence

M = 6  # codebook entries; identity channel c = entry c - 1, channel 0 = background
STD = 0.004  # m: isotropic standard deviation of the test Gaussians


def _add(gmap, points, probs, opacity=0.9):
    """Gaussians whose decoded identity distribution is ``probs`` over the M + 1 channels (identity
    head = identity matrix, features = log-probabilities)."""
    feature = torch.zeros(len(points), gmap.config.identity_dim)
    feature[:, :M + 1] = torch.log(torch.as_tensor(probs, dtype=torch.float32).clamp_min(1e-6))
    gmap.add_gaussians(np.asarray(points, dtype=np.float64), np.full((len(points), 3), 0.5),
                       scales=np.full((len(points), 3), STD), identity=feature, opacity=opacity)


def _one_hot(channel):
    probs = np.full(M + 1, 1e-6)
    probs[channel] = 1.0
    return probs


def _empty_map() -> GaussianMap:
    gmap = GaussianMap(GaussianMapConfig(num_codebook_entries=M, identity_dim=8))
    with torch.no_grad():
        gmap.identity_head.weight.zero_()
        gmap.identity_head.weight[:, :M + 1] = torch.eye(M + 1)
        gmap.identity_head.bias.zero_()
    return gmap


def _column(center_xy, count, seed, radius=0.02, height=0.08):
    rng = np.random.default_rng(seed)
    return np.c_[np.asarray(center_xy) + rng.uniform(-radius, radius, (count, 2)), rng.uniform(0.0, height, count)]


def _table(gmap, footprints, seed=5):
    """Background Gaussians of a table whose surface is at z = 0, except under ``footprints``."""
    xy = np.random.default_rng(seed).uniform(-0.2, 0.2, (2500, 2))
    for x, y, r in footprints:
        xy = xy[np.linalg.norm(xy - [x, y], axis=1) > r]
    _add(gmap, np.c_[xy, np.full(len(xy), -ObjectConfig().support_top_sigma * STD)], _one_hot(0))


# the novel object's Gaussians: background for GOCL, a faint preference for entry 4 among the entries
NOVEL_PROBS = np.array([0.8, 0.02, 0.02, 0.02, 0.02, 0.1, 0.02])


def _known_and_novel_map() -> GaussianMap:
    gmap = _empty_map()
    _add(gmap, _column([-0.06, 0.0], 150, 1), _one_hot(3))  # known kind: entry 2
    _add(gmap, _column([0.06, 0.0], 150, 2), NOVEL_PROBS)  # novel kind: GOCL left it to the background
    _table(gmap, [(-0.06, 0.0, 0.03), (0.06, 0.0, 0.03)])
    return gmap


CONFIG = ObjectConfig(min_gaussians=20, box_sigma=0.0, box_trim=0.0, unknown_objects=True)


def test_a_novel_object_left_to_the_background_is_an_object_of_unknown_kind():
    objects = sorted(extract_instances(_known_and_novel_map(), CONFIG), key=lambda o: o.centroid[0])
    assert [o.codebook_entry for o in objects] == [2, UNKNOWN_ENTRY]
    known, novel = objects
    assert novel.unknown_kind and not known.unknown_kind
    # its Gaussians: those in its box (the box is fitted to the elevated ones: a few at its foot fall outside)
    assert 140 <= novel.num_gaussians <= 150 and novel.confidence == pytest.approx(0.8, abs=0.01)
    # the hint: entry 4 is the one its Gaussians favour, with mean probability 0.5 among the entries
    assert novel.nearest_codebook_entry == 4 and novel.nearest_codebook_distance == pytest.approx(0.5, abs=0.01)
    assert known.nearest_codebook_entry == 2 and known.nearest_codebook_distance == pytest.approx(0.0, abs=0.01)
    # its box stands on the table and covers the column
    assert novel.aabb_min[2] == pytest.approx(0.0, abs=2e-3) and novel.aabb_max[2] == pytest.approx(0.08, abs=3e-3)
    assert novel.aabb_min[0] == pytest.approx(0.04, abs=3e-3) and novel.aabb_max[0] == pytest.approx(0.08, abs=3e-3)
    # without the geometric path the map has one object only
    off = extract_instances(_known_and_novel_map(), dataclasses.replace(CONFIG, unknown_objects=False))
    assert [o.codebook_entry for o in off] == [2]


def test_the_geometric_path_never_changes_an_identified_object_beside_a_novel_one():
    gmap = _known_and_novel_map()
    # background Gaussians of the known object (its top, GOCL missed it) and a flat patch on the table
    _add(gmap, _column([-0.06, 0.0], 40, 7, height=0.1) + [0, 0, 0.0], NOVEL_PROBS)
    _add(gmap, np.c_[np.random.default_rng(8).uniform([0.12, 0.1], [0.16, 0.14], (60, 2)), np.full(60, 0.005)],
         NOVEL_PROBS)
    with_path = extract_instances(gmap, CONFIG)
    without = extract_instances(gmap, dataclasses.replace(CONFIG, unknown_objects=False))
    identified = [o for o in with_path if not o.unknown_kind]
    assert len(identified) == len(without) == 1
    assert np.array_equal(identified[0].gaussian_indices, without[0].gaussian_indices)
    assert np.allclose(identified[0].aabb_min, without[0].aabb_min) and \
        np.allclose(identified[0].aabb_max, without[0].aabb_max)
    # the known object's stray background Gaussians are inside its box: explained, no extra object;
    # the flat patch rises under the clearance: not an object either
    assert [o.codebook_entry for o in with_path] == [2, UNKNOWN_ENTRY]


def test_the_unnamed_foot_of_a_known_object_joins_its_box_instead_of_becoming_an_object():
    # a dev cone (novel-kind world, dataset seed 17): GOCL named its upper part and left its wider
    # foot to the background; the foot, standing on the same footprint, was a second object
    gmap = _empty_map()
    _add(gmap, _column([0.0, 0.0], 200, 1, radius=0.03, height=0.07) + [0.0, 0.0, 0.05], _one_hot(3))
    named = gmap.num_gaussians
    rng = np.random.default_rng(2)
    foot = np.c_[rng.uniform(-0.045, 0.045, (400, 2)), rng.uniform(0.0, 0.05, 400)]  # wider than the column
    _add(gmap, foot, NOVEL_PROBS)
    _table(gmap, [(0.0, 0.0, 0.065)])
    (obj,) = extract_instances(gmap, CONFIG)
    assert obj.codebook_entry == 2 and not obj.unknown_kind
    assert obj.num_gaussians >= named + 0.9 * len(foot)  # the foot's Gaussians are the object's
    assert obj.aabb_min[0] == pytest.approx(-0.045, abs=3e-3) and obj.aabb_max[0] == pytest.approx(0.045, abs=3e-3)
    assert obj.aabb_min[2] == pytest.approx(0.0, abs=2e-3) and obj.aabb_max[2] == pytest.approx(0.12, abs=3e-3)
    split = extract_instances(gmap, dataclasses.replace(CONFIG, footprint_merge_iou=2.0))  # the rule off
    assert sorted(o.codebook_entry for o in split) == [UNKNOWN_ENTRY, 2]


def test_wide_structure_is_not_an_object():
    gmap = _empty_map()
    wall = np.c_[np.random.default_rng(3).uniform(-0.2, 0.2, 1500), np.full(1500, 0.15),
                 np.random.default_rng(4).uniform(0.0, 0.2, 1500)]
    _add(gmap, wall, _one_hot(0))  # a 40 cm wide board standing on the table
    _table(gmap, [])
    assert extract_instances(gmap, CONFIG) == []
    assert len(extract_instances(gmap, dataclasses.replace(CONFIG, unknown_max_size=1.0))) == 1


def test_accumulated_returns_find_an_object_the_map_holds_few_gaussians_of():
    gmap = _empty_map()
    _add(gmap, _column([0.0, 0.0], 12, 1, radius=0.015, height=0.06), NOVEL_PROBS)  # 12 Gaussians only
    _table(gmap, [(0.0, 0.0, 0.02)])
    config = dataclasses.replace(CONFIG, unknown_min_points=30)
    assert extract_instances(gmap, config) == []
    # the LiDAR samples its surface again in every frame
    evidence = PointEvidence(config.unknown_voxel, config.unknown_max_voxels)
    for frame in range(6):
        evidence.add(_column([0.0, 0.0], 80, 10 + frame, radius=0.015, height=0.06))
    (obj,) = extract_instances(gmap, config, evidence.centres(config.unknown_min_hits))
    assert obj.unknown_kind and obj.num_gaussians == 12
    assert obj.aabb_max[2] == pytest.approx(0.06, abs=0.01) and obj.aabb_min[2] == pytest.approx(0.0, abs=2e-3)
    # returns where the map has no Gaussians (an object since removed): no object
    empty = _empty_map()
    _table(empty, [(0.0, 0.0, 0.02)])
    assert extract_instances(empty, config, evidence.centres(config.unknown_min_hits)) == []


def test_point_evidence_counts_hits_per_voxel_within_its_memory_bound():
    evidence = PointEvidence(0.01, max_voxels=3)
    evidence.add(np.array([[0.001, 0.001, 0.001], [0.002, 0.002, 0.002], [0.5, 0.5, 0.5], [np.nan, 0, 0]]))
    evidence.add(np.array([[0.003, 0.003, 0.003], [0.2, 0.2, 0.2], [0.3, 0.3, 0.3]]))
    assert len(evidence) == 3  # four voxels hit, the bound keeps the three most hit
    assert np.allclose(evidence.centres(3), [[0.005, 0.005, 0.005]])
    with pytest.raises(ValueError):
        PointEvidence(0.0, 10)


def test_an_unknown_object_keeps_its_id_when_it_gains_an_entry():
    gmap = _known_and_novel_map()
    tracker = ObjectTracker(CONFIG)
    # an unknown-kind cluster becomes an object once a second update extracts it too
    # (unknown_confirm_updates), with the id it was given at first sight
    assert [o.codebook_entry for o in tracker.update(gmap)] == [2]
    first = {o.codebook_entry: o.id for o in tracker.update(gmap)}
    assert set(first) == {2, UNKNOWN_ENTRY} and first[UNKNOWN_ENTRY] == first[2] + 1
    at_once = ObjectTracker(dataclasses.replace(CONFIG, unknown_confirm_updates=1))
    assert {o.codebook_entry for o in at_once.update(gmap)} == {2, UNKNOWN_ENTRY}
    assert {o.codebook_entry: o.id for o in tracker.update(gmap)} == first  # stable while nothing changes
    # later views name it: its Gaussians now decode as entry 4
    with torch.no_grad():
        novel = torch.as_tensor(next(o for o in tracker.objects if o.unknown_kind).gaussian_indices)
        gmap.params["identity"][novel, :M + 1] = torch.log(torch.as_tensor(_one_hot(5), dtype=torch.float32))
    after = {o.codebook_entry: o.id for o in tracker.update(gmap)}
    assert after == {2: first[2], 4: first[UNKNOWN_ENTRY]}
    assert tracker.query_by_codebook(UNKNOWN_ENTRY) == []


def test_objects_json_without_the_hint_fields_still_loads():
    (obj, *_) = extract_instances(_known_and_novel_map(), CONFIG)
    data = obj.to_json()
    assert data["nearest_codebook_entry"] == 2
    del data["nearest_codebook_entry"], data["nearest_codebook_distance"]  # written before issue 19
    old = MapObject.from_json(data)
    assert old.nearest_codebook_entry == UNKNOWN_ENTRY and old.nearest_codebook_distance == 1.0


def test_bad_unknown_settings_are_refused():
    for bad in ({"unknown_clearance": 0.0}, {"unknown_min_points": 0}, {"unknown_max_size": -1.0},
                {"unknown_voxel": 0.0}, {"unknown_min_gaussians": 0}, {"unknown_confirm_updates": 0}):
        with pytest.raises(ValueError):
            ObjectConfig(**bad)
