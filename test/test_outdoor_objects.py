"""Objects outside a tabletop: a simulated street map (a ground plane tilted by a few degrees, sampled
like a roof LiDAR, dense near the sensor and sparse 40 m away; a building wall; cars, pedestrians,
cyclists and bins at 5-30 m; ground patches and stray Gaussians that took an object's identity)
through the object extraction with config/outdoor.yaml: every object found, nothing else, boxes
standing on the ground. The tabletop parameters, or a z-up assumption on the tilted road, fail it."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import yaml
from conftest import REPO

from ocgs_ros.evaluation import Box3D, match_boxes
from ocgs_ros.gaussians.map import GaussianMap, GaussianMapConfig
from ocgs_ros.gaussians.objects import ObjectConfig, extract_instances
from ocgs_ros.gaussians.objects.ground import fit_support_plane
from ocgs_ros.gaussians.objects.support import SupportSurface

M = 6  # codebook entries; identity channel c = entry c - 1, channel 0 = background
CAR, PEDESTRIAN, CYCLIST, BIN = 1, 2, 3, 4  # identity channels
SIZE = {CAR: (4.5, 1.9, 1.6), PEDESTRIAN: (0.8, 0.6, 1.75), CYCLIST: (1.8, 0.6, 1.7), BIN: (0.75, 0.6, 1.05)}
BASE_COUNT = {CAR: 900, PEDESTRIAN: 150, CYCLIST: 200, BIN: 100}  # Gaussians at 10 m; fewer farther away
#: (channel, x, y, yaw) in the ground frame; two pedestrians walk side by side 1.5 m apart
OBJECTS = [(CAR, 8.0, -4.0, 0.1), (CAR, -12.0, 6.0, 1.4), (CAR, 27.0, 3.0, -0.3), (PEDESTRIAN, 5.0, 6.0, 0.0),
           (PEDESTRIAN, 5.0, 7.5, 0.0), (PEDESTRIAN, -22.0, -18.0, 0.5), (CYCLIST, -9.0, -10.0, 2.0),
           (BIN, 15.0, -12.0, 0.0), (BIN, -4.0, 24.0, 0.3)]
TILT_DEG = 3.0  # the road rises 1.6 m over 30 m
OBJECT_STD, GROUND_SCALES = 0.03, (0.12, 0.12, 0.02)  # m: Gaussian standard deviations


def _rotation(axis, angle: float) -> np.ndarray:
    x, y, z = np.asarray(axis, dtype=np.float64) / np.linalg.norm(axis)
    k = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


# the map frame is the LiDAR's at the start (1.8 m above the road); the road is tilted about a
# diagonal axis, so neither map axis is level
GROUND_R = _rotation([1.0, 1.0, 0.0], np.radians(TILT_DEG))
GROUND_T = np.array([0.0, 0.0, -1.8])


def to_map(points):
    return np.asarray(points) @ GROUND_R.T + GROUND_T


def _yaw(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _box_surface(channel, x, y, yaw, rng) -> np.ndarray:
    """Points on the sides and top of an object's box (the ground frame), fewer the farther it is."""
    length, width, height = SIZE[channel]
    count = int(BASE_COUNT[channel] * min(1.0, 10.0 / np.hypot(x, y)))
    u, v = rng.uniform(-0.5, 0.5, (2, count))
    face = rng.integers(0, 5, count)  # 0-3 sides, 4 top
    local = np.zeros((count, 3))
    local[:, 0] = np.where(face < 2, np.where(face == 0, 0.5, -0.5), u) * length
    local[:, 1] = np.where(face < 2, u, np.where(face == 2, 0.5, -0.5)) * width
    local[:, 1] = np.where(face == 4, v * width, local[:, 1])
    local[:, 2] = np.where(face == 4, 1.0, v + 0.5) * height
    return local @ _yaw(yaw).T + [x, y, 0.0]


def _gt_boxes() -> list[Box3D]:
    boxes = []
    for channel, x, y, yaw in OBJECTS:
        size = np.array(SIZE[channel])
        boxes.append(Box3D(to_map([[x, y, size[2] / 2]])[0], size, GROUND_R @ _yaw(yaw)))
    return boxes


def _add(gmap, points, channel, scales):
    feature = torch.zeros(len(points), gmap.config.identity_dim)
    feature[:, channel] = 1.0
    gmap.add_gaussians(points, np.full((len(points), 3), 0.2 + 0.1 * channel),
                       scales=np.tile(scales, (len(points), 1)), identity=feature, opacity=0.9)


def street_map(seed: int = 0) -> GaussianMap:
    rng = np.random.default_rng(seed)
    gmap = GaussianMap(GaussianMapConfig(num_codebook_entries=M, identity_dim=8))
    with torch.no_grad():
        gmap.identity_head.weight.zero_()
        gmap.identity_head.weight[:, :M + 1] = 10 * torch.eye(M + 1)
        gmap.identity_head.bias.zero_()
    # ground returns: uniform in range and bearing, so their density falls as 1 / range
    distance, bearing = rng.uniform(3.0, 40.0, 8000), rng.uniform(-np.pi, np.pi, 8000)
    ground = np.c_[distance * np.cos(bearing), distance * np.sin(bearing), rng.normal(0.0, 0.02, 8000)]
    for channel, x, y, yaw in OBJECTS:  # under an object the ground is never seen
        local = (ground[:, :2] - [x, y]) @ _yaw(yaw)[:2, :2]
        ground = ground[np.any(np.abs(local) > np.array(SIZE[channel][:2]) / 2, axis=1)]
    # optimised ground Gaussians sit under the surface they render (ObjectConfig.support_top_sigma)
    ground[:, 2] -= ObjectConfig().support_top_sigma * GROUND_SCALES[2]
    _add(gmap, to_map(ground), 0, GROUND_SCALES)
    wall = np.c_[np.full(1500, 35.0), rng.uniform(-30, 30, 1500), rng.uniform(0, 8, 1500)]  # a building
    _add(gmap, to_map(wall), 0, (0.02, 0.15, 0.15))
    for channel, x, y, yaw in OBJECTS:
        _add(gmap, to_map(_box_surface(channel, x, y, yaw, rng)), channel, (OBJECT_STD,) * 3)
    # identity that bled onto the ground: a flat patch beside the first car, another on its own
    _add(gmap, to_map(np.c_[rng.uniform([8.0, -2.9], [10.0, -2.0], (60, 2)), np.zeros(60)]), CAR, GROUND_SCALES)
    _add(gmap, to_map(np.c_[rng.uniform([-3.0, -8.0], [-1.0, -6.0], (80, 2)), np.zeros(80)]), PEDESTRIAN,
         GROUND_SCALES)
    # stray Gaussians of every entry scattered over the street (single wrong labels)
    stray = np.c_[rng.uniform(-30, 30, (60, 2)), rng.uniform(0.0, 2.0, 60)]
    for channel in (CAR, PEDESTRIAN, CYCLIST, BIN):
        _add(gmap, to_map(stray[channel::4]), channel, (OBJECT_STD,) * 3)
    return gmap


def object_config(name: str) -> ObjectConfig:
    document = yaml.safe_load((REPO / "config" / f"{name}.yaml").read_text())
    return ObjectConfig.from_dict(document["/**/object_mapping_node"]["ros__parameters"]["objects"])


def street_scores(config: ObjectConfig) -> dict:
    """Recall and precision at box IoU 0.5, and how far the matched boxes stand off the ground."""
    objects = extract_instances(street_map(), config)
    gt = _gt_boxes()
    match = match_boxes(gt, [Box3D(o.box_center, o.box_size, o.box_rotation) for o in objects], 0.5)
    up = GROUND_R[:, 2]
    tilt, bottom = [], []
    for _, j, _ in match.pairs:
        box = objects[j]
        tilt.append(np.degrees(np.arccos(min(1.0, abs(box.box_rotation[:, 2] @ up)))))
        # the box's lowest corner above the ground plane (0 for a box standing on it)
        corners = box.box_center + (np.array(np.meshgrid(*[[-0.5, 0.5]] * 3)).reshape(3, -1).T * box.box_size) \
            @ box.box_rotation.T
        bottom.append(float(((corners - GROUND_T) @ up).min()))
    return {"recall": match.recall, "precision": match.precision if objects else 0.0,
            "max_tilt_deg": max(tilt, default=90.0), "max_bottom_offset": max(np.abs(bottom), default=np.inf)}


def test_outdoor_objects_are_found_and_stand_on_the_tilted_ground():
    scores = street_scores(object_config("outdoor"))
    assert scores["recall"] == 1.0 and scores["precision"] == 1.0, scores
    assert scores["max_tilt_deg"] < 0.5, scores  # the box up axis is the ground's normal, not map z
    # a box bottom lies under its lowest Gaussian by box_sigma std (0.06 m) before the snap
    assert scores["max_bottom_offset"] < 0.05, scores


def test_the_table_assumption_fails_outdoors():
    tabletop = street_scores(object_config("tabletop"))  # centimetre links and rises on a street
    assert tabletop["recall"] < 0.5, tabletop
    z_up = street_scores(dataclasses.replace(object_config("outdoor"), support_plane=False))
    assert z_up["max_tilt_deg"] > 2.0, z_up  # boxes upright in the map frame lean off the road
    assert z_up["max_bottom_offset"] > 0.1, z_up  # and the low end of a car sinks into it


def test_where_the_ground_near_an_object_is_unseen_the_plane_is_its_support():
    """The far car with no ground return within 4 m, and its lowest 15 cm hidden (a kerb in front):
    no local support estimate; the plane's height snaps the box onto the road."""
    gmap = street_map()
    channel, x, y, _ = OBJECTS[2]
    ground_frame = (gmap.params["means"].detach().double().numpy() - GROUND_T) @ GROUND_R
    entry = gmap.identity_logits().argmax(dim=1).numpy()
    near = np.hypot(ground_frame[:, 0] - x, ground_frame[:, 1] - y) < 4.0
    gmap.remove(torch.from_numpy(near & ((entry == 0) | ((entry == channel) & (ground_frame[:, 2] < 0.15)))))

    def car_bottom(config):
        centre = to_map([[x, y, 0.0]])[0]
        (car,) = [o for o in extract_instances(gmap, config) if np.linalg.norm((o.centroid - centre)[:2]) < 3.0]
        return float((car.box_center - GROUND_T) @ GROUND_R[:, 2] - car.box_size[2] / 2)

    assert abs(car_bottom(object_config("outdoor"))) < 0.03
    assert car_bottom(dataclasses.replace(object_config("outdoor"), support_plane=False)) > 0.05  # floats


def test_the_support_plane_is_the_ground_not_the_wall():
    gmap = street_map()
    background = gmap.identity_logits().argmax(dim=1).numpy() == 0
    means = gmap.params["means"].detach().double().numpy()[background]
    config = object_config("outdoor")
    plane = fit_support_plane(means, config.up_axis, config.plane_inlier_distance, config.plane_max_tilt_deg,
                              config.plane_max_points, config.min_support_gaussians)
    assert np.degrees(np.arccos(plane.normal @ GROUND_R[:, 2])) < 0.3
    upside_down = fit_support_plane(means, (0.0, 0.0, -1.0), 0.15, 25.0, 5000, 10)
    assert np.allclose(upside_down.normal, -plane.normal, atol=1e-2)  # the hint only picks the side
    # only steep planes (the wall alone) or too few points: no support plane
    wall = means[plane.distance(means) > 1.0]
    assert fit_support_plane(wall, (0.0, 0.0, 1.0), 0.15, 25.0, 5000, 10) is None
    assert fit_support_plane(means[:5], (0.0, 0.0, 1.0), 0.15, 25.0, 5000, 10) is None


def test_a_warm_start_that_still_holds_replaces_ransac_and_one_that_does_not_falls_back(monkeypatch):
    from ocgs_ros.gaussians.objects import ground

    gmap = street_map()
    background = gmap.identity_logits().argmax(dim=1).numpy() == 0
    means = gmap.params["means"].detach().double().numpy()[background]
    config = object_config("outdoor")
    args = (config.up_axis, config.plane_inlier_distance, config.plane_max_tilt_deg, config.plane_max_points,
            config.min_support_gaussians)
    cold = fit_support_plane(means, *args)
    # the road the previous update fitted, 2 cm lower: it holds most of the points, so it is
    # refitted, and RANSAC does not run
    prior = ground.SupportPlane(cold.normal, cold.offset - 0.02)
    with monkeypatch.context() as patched:
        patched.setattr(ground, "ransac_height_plane", None)  # any RANSAC call would fail
        warm = fit_support_plane(means, *args, prior=prior)
    assert np.degrees(np.arccos(np.clip(warm.normal @ cold.normal, -1, 1))) < 0.05
    assert abs(warm.offset - cold.offset) < 5e-3
    # a prior 1 m off (the robot on another floor) holds no point: RANSAC finds the road again
    far = fit_support_plane(means, *args, prior=ground.SupportPlane(cold.normal, cold.offset + 1.0))
    assert np.allclose(far.normal, cold.normal, atol=1e-9) and far.offset == pytest.approx(cold.offset)
    # ... and so does a prior held by fewer than half of the points (the wall side of the street)
    wall_side = means[cold.distance(means) > 1.0]
    crowded = fit_support_plane(np.concatenate([means, wall_side, wall_side]), *args,
                                prior=ground.SupportPlane(cold.normal, cold.offset))
    assert np.degrees(np.arccos(np.clip(crowded.normal @ cold.normal, -1, 1))) < 0.3
    # a warm start carries the plane from one live update to the next
    start = ground.PlaneWarmStart()
    SupportSurface(means, np.tile(np.eye(3) * 1e-4, (len(means), 1, 1)), config, start)
    assert start.plane is not None and np.allclose(start.plane.normal, cold.normal)


def test_the_two_parameter_sets_have_the_same_keys_and_tabletop_is_the_default():
    keys = {name: set(yaml.safe_load((REPO / "config" / f"{name}.yaml").read_text())
                      ["/**/object_mapping_node"]["ros__parameters"]["objects"]) for name in ("tabletop", "outdoor")}
    assert keys["tabletop"] == keys["outdoor"]
    assert object_config("tabletop") == ObjectConfig()
    with pytest.raises(ValueError):
        ObjectConfig(plane_inlier_distance=0.0)


@pytest.mark.parametrize("tilt_deg, expect_hint", [(0.5, True), (3.0, False)])
def test_a_plane_within_the_level_tolerance_keeps_the_hint_as_up(tilt_deg, expect_hint):
    """A gravity-levelled map keeps exact z (the fit leans a fraction of a degree on a level table);
    a road tilted by more than ``plane_level_tolerance_deg`` gives its own normal."""
    rng = np.random.default_rng(7)
    tilt = _rotation([1.0, 0.0, 0.0], np.radians(tilt_deg))
    ground = np.c_[rng.uniform(-20, 20, (3000, 2)), rng.normal(0.0, 0.02, 3000)] @ tilt.T
    covars = np.tile(np.diag([0.01, 0.01, 0.0004]), (len(ground), 1, 1))
    config = object_config("outdoor")
    assert config.plane_level_tolerance_deg == 1.0
    up = SupportSurface(ground, covars, config).up
    if expect_hint:
        assert np.array_equal(up, [0.0, 0.0, 1.0])
    else:
        assert np.degrees(np.arccos(up @ tilt[:, 2])) < 0.2


@pytest.mark.parametrize("radius", [0.05, 1.5])
def test_support_height_reads_the_background_within_the_radius_of_any_footprint_point(radius):
    """The support under an object is the median over the union of the discs of ``support_radius``
    around its points: the rows found are exactly those of one ball query per point (the definition),
    for a small tabletop radius and a large street one, with background on and off the discs' edges."""
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(3)
    ground = np.c_[rng.uniform(-5, 5, (4000, 2)), rng.normal(0.0, 0.01, 4000)]
    covars = np.tile(np.diag([1e-4, 1e-4, 1e-6]), (len(ground), 1, 1))
    support = SupportSurface(ground, covars, dataclasses.replace(ObjectConfig(), support_radius=radius))
    for scale in (0.05, 0.5, 2.0):
        points = np.c_[rng.normal(0.0, scale, (300, 2)), rng.uniform(0.0, 0.3, 300)]
        across = (points @ support.frame)[:, :2]
        balls = cKDTree(support.across).query_ball_point(across, radius)
        expected = np.unique(np.concatenate([np.asarray(b, dtype=np.int64) for b in balls]))
        rows = support._rows_near(across, radius)
        assert np.array_equal(rows, expected)
        assert len(rows) > 0
    assert len(support._rows_near(np.zeros((0, 2)), radius)) == 0
    assert len(support._rows_near(np.array([[100.0, 100.0]]), radius)) == 0


def test_batched_ransac_finds_the_plane_scikit_learns_ransac_finds():
    # a table top (the most support) beside a lower floor patch, a wall and stray points, in a
    # tilted hint frame: the batched trials and scikit-learn's RANSACRegressor (the same rule, one
    # trial at a time) agree on the plane, and on no plane for a wall alone
    from sklearn.linear_model import LinearRegression, RANSACRegressor

    from ocgs_ros.gaussians.objects.ground import ransac_height_plane

    rng = np.random.default_rng(5)
    table = np.c_[rng.uniform(-0.5, 0.5, (2500, 2)), 0.75 + rng.normal(0, 0.002, 2500)]
    table[:, 2] += 0.08 * table[:, 0] - 0.03 * table[:, 1]  # a tilt of ~5 degrees
    floor = np.c_[rng.uniform(-2, 2, (1500, 2)), rng.normal(0, 0.002, 1500)]
    wall = np.c_[np.full(800, 1.5), rng.uniform(-1, 1, 800), rng.uniform(0, 2, 800)]
    stray = rng.uniform(-1, 1, (300, 3))
    local = np.concatenate([table, floor, wall, stray])
    max_slope = np.tan(np.radians(25.0))
    ours = ransac_height_plane(local, 0.01, max_slope, 10)

    def gentle_enough(estimator, _x, _y) -> bool:
        return bool(np.linalg.norm(estimator.coef_) <= max_slope)

    theirs = RANSACRegressor(LinearRegression(), min_samples=3, residual_threshold=0.01, is_model_valid=gentle_enough,
                             max_trials=200, random_state=0).fit(local[:, :2], local[:, 2])
    (a, b), c = theirs.estimator_.coef_, theirs.estimator_.intercept_
    assert ours == pytest.approx((a, b, c), abs=2e-3)
    assert ours == pytest.approx((0.08, -0.03, 0.75), abs=3e-3)
    assert ransac_height_plane(wall, 0.01, max_slope, 10) is None  # only steep candidates
    assert ransac_height_plane(local[:2], 0.01, max_slope, 10) is None
    assert ransac_height_plane(local, 0.01, max_slope, 10, seed=1) == pytest.approx(ours, abs=2e-3)
