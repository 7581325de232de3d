"""Online mapper on a simulated tabletop scene: it grows from LiDAR, fits the images, and learns
identities from per-pixel codebook targets (here derived from ground truth, standing in for GOCL)."""
from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from ocgs_ros.gaussians.map import GaussianMap, GaussianMapConfig, entries_from_logits
from ocgs_ros.gaussians.mapper import MapperConfig, OnlineMapper, project_depth
from ocgs_ros.sim.tabletop import TabletopWorld
from ocgs_ros.sim.types import TabletopConfig

M = 24


def codebook_logits_from_kinds(kind: np.ndarray) -> np.ndarray:
    logits = np.full((M + 1, *kind.shape), -5.0, np.float32)
    logits[0][kind < 0] = 5.0
    ys, xs = np.nonzero(kind >= 0)
    logits[kind[ys, xs] + 1, ys, xs] = 5.0
    return logits


def test_mapper_fits_views_and_learns_identity():
    torch.manual_seed(0)  # identity head init and densify splits draw from torch's global RNG
    world = TabletopWorld(TabletopConfig.from_dict({"camera": {"width": 64, "height": 48},
                                                    "lidar": {"beams": 32, "azimuth_steps": 512}}), seed=3)
    mapper = OnlineMapper(GaussianMapConfig(num_codebook_entries=M, max_gaussians=6000),
                          MapperConfig(iterations_per_frame=30))
    stats = []
    for index in range(0, 60, 12):
        f = world.frame(index)
        T = f.T_world_base @ f.T_base_lidar
        points = f.lidar.points.astype(np.float64) @ T[:3, :3].T + T[:3, 3]
        stats.append(mapper.integrate(f.camera.rgb, f.camera.K, f.camera.T_world_cam, points,
                                      codebook_logits_from_kinds(f.camera.kind)))
    assert stats[0]["grown"] > 500 and mapper.map.num_gaussians <= 6000
    assert stats[-1]["grown"] < stats[0]["grown"]  # later frames are mostly explained already
    assert stats[-1]["photometric"] < 0.8 * stats[0]["photometric"]
    assert stats[-1]["identity"] < 0.5 * stats[0]["identity"]

    f = world.frame(25)  # between keyframes: not trained on
    view = torch.as_tensor(np.linalg.inv(f.camera.T_world_cam), dtype=torch.float32)
    with torch.no_grad():
        rgb, _, logits, alpha = mapper.render(view, torch.as_tensor(f.camera.K, dtype=torch.float32), 64, 48)
    mse = ((rgb - torch.as_tensor(f.camera.rgb / 255.0, dtype=torch.float32)) ** 2).mean().item()
    assert -10 * np.log10(mse) > 18.0
    predicted = logits.argmax(-1).numpy() - 1
    on_objects = f.camera.kind >= 0
    assert (predicted[on_objects] == f.camera.kind[on_objects]).mean() > 0.5
    assert (predicted[~on_objects] == -1).mean() > 0.9


def test_bad_frames_are_rejected_and_depth_projection():
    mapper = OnlineMapper(GaussianMapConfig(num_codebook_entries=4), MapperConfig(iterations_per_frame=1))
    K = np.array([[50.0, 0, 15.5], [0, 50.0, 11.5], [0, 0, 1]])
    with pytest.raises(ValueError, match="uint8"):
        mapper.integrate(np.zeros((24, 32, 3), np.float32), K, np.eye(4), np.zeros((1, 3)))
    with pytest.raises(ValueError, match="NaN"):
        mapper.integrate(np.zeros((24, 32, 3), np.uint8), K, np.eye(4), np.full((1, 3), np.nan))
    with pytest.raises(ValueError, match="pixel_codebook_logits"):  # M+1 = 5 channels expected
        mapper.integrate(np.zeros((24, 32, 3), np.uint8), K, np.eye(4), np.zeros((1, 3)), np.zeros((4, 24, 32)))
    with pytest.raises(ValueError, match="identity_targets"):
        MapperConfig(identity_targets="fuzzy")
    depth, u, v, inside = project_depth(np.array([[0.0, 0.0, 2.0], [0.0, 0.0, 1.0], [5.0, 0.0, -1.0]]),
                                        np.eye(4), K, 32, 24)
    assert inside.tolist() == [True, True, False]
    assert depth[12, 16] == 1.0 and (depth > 0).sum() == 1  # the nearer return wins the pixel


def _pose(x: float, yaw_deg: float = 0.0) -> np.ndarray:
    c, s = np.cos(np.radians(yaw_deg)), np.sin(np.radians(yaw_deg))
    T = np.eye(4)
    T[:3, :3] = [[c, -s, 0], [s, c, 0], [0, 0, 1]]
    T[0, 3] = x
    return T


def test_most_redundant_keyframe_drops_the_old_near_duplicate():
    from ocgs_ros.gaussians.keyframes import most_redundant_keyframe

    # keyframes 1 and 2 are 1 cm apart (the older of the tie goes); 4 and 5 are closer still but
    # they are the 2 newest, which are protected
    poses = [_pose(0.0), _pose(0.3), _pose(0.31), _pose(0.6), _pose(0.9), _pose(0.905)]
    assert most_redundant_keyframe(poses, protect_newest=2, translation_scale_m=0.05, rotation_scale_deg=5.0) == 1
    # rotation counts: a keyframe 1 cm away but turned 40 degrees is not a duplicate
    poses = [_pose(0.0), _pose(0.01, 40.0), _pose(0.5), _pose(0.52), _pose(2.0)]
    assert most_redundant_keyframe(poses, protect_newest=1, translation_scale_m=0.05, rotation_scale_deg=5.0) == 2
    assert most_redundant_keyframe(poses[:2], protect_newest=2, translation_scale_m=0.05, rotation_scale_deg=5.0) is None


def test_most_redundant_keyframe_matches_the_pairwise_definition():
    from scipy.spatial.transform import Rotation

    from ocgs_ros.gaussians.keyframes import most_redundant_keyframe, pose_change

    rng = np.random.default_rng(4)
    for trial in range(20):
        count = int(rng.integers(2, 50))
        poses = []
        for _ in range(count):
            T = np.eye(4)
            T[:3, :3] = Rotation.from_rotvec(rng.normal(scale=0.3, size=3)).as_matrix()
            T[:3, 3] = rng.normal(scale=0.5, size=3)
            poses.append(T)
        protect = int(rng.integers(0, 5))
        candidates = count - protect
        expected = None
        if candidates > 0:  # the definition, pair by pair: the nearest other keyframe, first minimum
            nearest = [min(moved / 0.05 + turned / 5.0 for moved, turned in
                           (pose_change(poses[i], poses[j]) for j in range(count) if j != i))
                       for i in range(candidates)]
            expected = int(np.argmin(nearest))
        assert most_redundant_keyframe(poses, protect, 0.05, 5.0) == expected, trial


def test_keyframe_list_stays_within_its_budget():
    world = TabletopWorld(TabletopConfig.from_dict({"camera": {"width": 32, "height": 24},
                                                    "lidar": {"beams": 8, "azimuth_steps": 128}}), seed=3)
    config = MapperConfig(iterations_per_frame=1, window=2, max_keyframes=4, min_translation_m=0.01)
    mapper = OnlineMapper(GaussianMapConfig(num_codebook_entries=M, max_gaussians=2000), config)
    for index in range(0, 80, 8):
        f = world.frame(index)
        T = f.T_world_base @ f.T_base_lidar
        points = f.lidar.points.astype(np.float64) @ T[:3, :3].T + T[:3, 3]
        out = mapper.integrate(f.camera.rgb, f.camera.K, f.camera.T_world_cam, points,
                               codebook_logits_from_kinds(f.camera.kind))
        assert out["keyframes"] <= 4
    assert len(mapper.keyframes) == 4 and mapper.keyframes_dropped == 10 - 4
    assert max(mapper.window.batch()) == len(mapper.keyframes) - 1  # window indices follow the drops
    newest = world.frame(72).camera.T_world_cam  # the newest keyframe is never the one dropped
    assert np.allclose(np.linalg.inv(mapper.keyframes[-1].viewmat.double().numpy()), newest, atol=1e-5)
    with pytest.raises(ValueError, match="max_keyframes"):
        MapperConfig(window=4, max_keyframes=4)


def test_non_finite_gaussians_are_pruned_and_never_become_objects():
    from ocgs_ros.gaussians.objects import ObjectConfig, extract_instances

    world = TabletopWorld(TabletopConfig.from_dict({"camera": {"width": 32, "height": 24},
                                                    "lidar": {"beams": 8, "azimuth_steps": 128}}), seed=3)
    mapper = OnlineMapper(GaussianMapConfig(num_codebook_entries=M, max_gaussians=2000), MapperConfig(iterations_per_frame=1))
    f = world.frame(0)
    T = f.T_world_base @ f.T_base_lidar
    points = f.lidar.points.astype(np.float64) @ T[:3, :3].T + T[:3, 3]
    mapper.integrate(f.camera.rgb, f.camera.K, f.camera.T_world_cam, points, codebook_logits_from_kinds(f.camera.kind))
    n = mapper.map.num_gaussians
    with torch.no_grad():  # what a diverged optimiser step leaves behind
        mapper.map.params["means"][:5] = float("nan")
        mapper.map.params["scales"][5:7] = float("inf")
    extract_instances(mapper.map, ObjectConfig(min_gaussians=1))  # must not fail on NaN centres
    assert mapper._prune() >= 7 and mapper.non_finite_pruned == 7
    assert mapper.map.num_gaussians <= n - 7
    assert all(torch.isfinite(v).all() for v in mapper.map.params.values())


def _depth_error(mapper, f) -> float:
    """Median relative error of the rendered depth against the frame's depth image."""
    view = torch.as_tensor(np.linalg.inv(f.camera.T_world_cam), dtype=torch.float32)
    with torch.no_grad():
        _, rendered, _, _ = mapper.render(view, torch.as_tensor(f.camera.K, dtype=torch.float32), 32, 24)
    hit = f.camera.depth > 0
    return float(np.median(np.abs(rendered.numpy()[hit] - f.camera.depth[hit]) / f.camera.depth[hit]))


def test_depth_camera_frames_grow_and_supervise_the_map():
    world = TabletopWorld(TabletopConfig.from_dict({"camera": {"width": 32, "height": 24},
                                                    "lidar": {"beams": 8, "azimuth_steps": 128}}), seed=3)
    f = world.frame(0)
    T = f.T_world_base @ f.T_base_lidar
    lidar = f.lidar.points.astype(np.float64) @ T[:3, :3].T + T[:3, 3]
    logits = codebook_logits_from_kinds(f.camera.kind)
    config = MapperConfig(iterations_per_frame=1, grow_max_points=4000)
    with_depth = OnlineMapper(GaussianMapConfig(num_codebook_entries=M, max_gaussians=4000), config)
    out = with_depth.integrate(f.camera.rgb, f.camera.K, f.camera.T_world_cam, np.zeros((0, 3)), logits,
                               depth=f.camera.depth)
    assert out["grown"] == int((f.camera.depth > 0).sum())  # every depth return seeded a Gaussian
    assert torch.equal(with_depth.keyframes[0].depth, torch.from_numpy(f.camera.depth.astype(np.float32)))
    lidar_only = OnlineMapper(GaussianMapConfig(num_codebook_entries=M, max_gaussians=4000), config)
    lidar_only.integrate(f.camera.rgb, f.camera.K, f.camera.T_world_cam, lidar, logits)
    # as grown, the dense depth image explains the view far better than the 8-beam LiDAR alone
    assert _depth_error(with_depth, f) < 0.7 * _depth_error(lidar_only, f)  # measured: 0.021 vs 0.046
    assert _depth_error(with_depth, f) < 0.03
    with pytest.raises(ValueError, match="depth"):
        with_depth.integrate(f.camera.rgb, f.camera.K, f.camera.T_world_cam, lidar, depth=np.zeros((5, 5)))


def _small_world_frames(count=3):
    world = TabletopWorld(TabletopConfig.from_dict({"camera": {"width": 48, "height": 36},
                                                    "lidar": {"beams": 16, "azimuth_steps": 256}}), seed=4)
    frames = []
    for index in range(0, 12 * count, 12):
        f = world.frame(index)
        T = f.T_world_base @ f.T_base_lidar
        frames.append((f.camera.rgb, f.camera.K, f.camera.T_world_cam,
                       f.lidar.points.astype(np.float64) @ T[:3, :3].T + T[:3, 3]))
    return frames


def test_growth_depth_render_is_the_full_renders_depth_and_alpha():
    torch.manual_seed(0)
    mapper = OnlineMapper(GaussianMapConfig(num_codebook_entries=4), MapperConfig(iterations_per_frame=2))
    for rgb, K, T_world_cam, points in _small_world_frames():
        mapper.integrate(rgb, K, T_world_cam, points)
    rgb, K, T_world_cam, _ = _small_world_frames(1)[0]
    view = torch.as_tensor(np.linalg.inv(T_world_cam), dtype=torch.float32)
    K_t = torch.as_tensor(K, dtype=torch.float32)
    with torch.no_grad():
        _, depth, _, alpha = mapper.render(view, K_t, 48, 36)
        depth_only, alpha_only = mapper.render_depth(view, K_t, 48, 36)
    assert float(alpha.max()) > 0.5
    torch.testing.assert_close(depth_only, depth, atol=1e-5, rtol=1e-6)
    torch.testing.assert_close(alpha_only, alpha, atol=1e-6, rtol=0)


def test_a_passed_deadline_leaves_one_iteration_and_none_the_configured_count():
    torch.manual_seed(0)
    mapper = OnlineMapper(GaussianMapConfig(num_codebook_entries=4), MapperConfig(iterations_per_frame=3))
    first, second = _small_world_frames(2)
    assert mapper.integrate(*first)["iterations"] == 3  # no deadline: exactly iterations_per_frame
    assert mapper.integrate(*second, deadline_s=0.0)["iterations"] == 1  # long past: the minimum


def test_a_new_gaussian_decodes_as_its_pixel_class_from_its_first_frame():
    # What a live map (one or two iterations a frame) relies on: after its first live frame and one
    # iteration, the Gaussians decode as the class of the pixel they grew from, background
    # included, under the two-level rule objects are extracted with.
    world = TabletopWorld(TabletopConfig.from_dict({"camera": {"width": 64, "height": 48},
                                                    "lidar": {"beams": 32, "azimuth_steps": 512}}), seed=3)
    f = world.frame(0)
    T = f.T_world_base @ f.T_base_lidar
    points = f.lidar.points.astype(np.float64) @ T[:3, :3].T + T[:3, 3]
    decoded = {}
    for live in (True, False):
        torch.manual_seed(0)
        mapper = OnlineMapper(GaussianMapConfig(num_codebook_entries=M), MapperConfig(iterations_per_frame=1))
        mapper.integrate(f.camera.rgb, f.camera.K, f.camera.T_world_cam, points,
                         codebook_logits_from_kinds(f.camera.kind), live=live)
        with torch.no_grad():
            means = mapper.map.params["means"].double().numpy()
            entry = entries_from_logits(mapper.map.identity_logits()).numpy()
        _, u, v, inside = project_depth(means, f.camera.T_world_cam, f.camera.K, 64, 48)
        kind = f.camera.kind[v[inside].astype(int), u[inside].astype(int)]  # the class of each one's pixel
        entry = entry[inside]
        decoded[live] = ((entry[kind < 0] == -1).mean(), (entry[kind >= 0] == kind[kind >= 0]).mean())
    background, objects = decoded[True]
    assert background > 0.95 and objects > 0.5, decoded
    # offline frames (the evaluator's 8 iterations learn it) keep the head's unit rows: there the
    # table starts as object entries
    assert decoded[False][0] < 0.5, decoded


def test_a_keyframe_lattice_render_is_the_full_render_sampled_there():
    # What a live iteration at live_pixel_stride 2 fits: its render at the lattice's size must be the
    # full-size render at the lattice's pixels (the footprint blur kept at the full view's pixel size),
    # and its targets the full targets at the same pixels.
    torch.manual_seed(0)
    mapper = OnlineMapper(GaussianMapConfig(num_codebook_entries=4), MapperConfig(iterations_per_frame=2))
    for rgb, K, T_world_cam, points in _small_world_frames():
        mapper.integrate(rgb, K, T_world_cam, points)
    keyframe = mapper.keyframes[0]
    with torch.no_grad():
        full_rgb, full_depth, _, _ = mapper.render(keyframe.viewmat, keyframe.K, keyframe.width, keyframe.height)
        seen = set()
        for _ in range(4):
            view = keyframe.next_lattice(2)
            assert (view.width, view.height) == (keyframe.width // 2, keyframe.height // 2)
            offsets = [(dy, dx) for dy in (0, 1) for dx in (0, 1) if torch.equal(view.rgb, keyframe.rgb[dy::2, dx::2])]
            assert len(offsets) == 1, offsets  # its colour target is exactly one lattice of the keyframe's
            (dy, dx), = offsets
            seen.add((dy, dx))
            torch.testing.assert_close(view.depth, keyframe.depth[dy::2, dx::2])
            rgb, depth, _, _, _ = mapper.render_with_meta(view.viewmat, view.K, view.width, view.height,
                                                          view.pixel_stride)
            # equal but for a few pixels at the image border, where a footprint is culled against
            # the lattice's bounds rather than the full view's
            assert float((rgb - full_rgb[dy::2, dx::2]).abs().mean()) < 1e-5
            assert float((rgb - full_rgb[dy::2, dx::2]).abs().max()) < 1e-3
            assert float((depth - full_depth[dy::2, dx::2]).abs().mean()) < 1e-5
            # the same render against the wrong lattice: what a misplaced offset would give
            assert float((rgb - full_rgb[(dy + 1) % 2::2, (dx + 1) % 2::2]).abs().mean()) > 1e-3
    assert seen == {(0, 0), (0, 1), (1, 0), (1, 1)}  # four fits: every offset once
    assert keyframe.next_lattice(1) is keyframe


def test_live_frames_fit_lattices_and_take_the_batch_keyframes_in_turn():
    # One iteration a live frame (the node's usual share): with rotation each frame's iteration takes
    # the next keyframe of the training batch, so the newest views are fitted too; the offline rule
    # (rotation off) starts at the batch's first entry, an older sample, every frame.
    fitted = {}
    for rotation in (True, False):
        torch.manual_seed(0)
        mapper = OnlineMapper(GaussianMapConfig(num_codebook_entries=4),
                              MapperConfig(iterations_per_frame=1, window=2, old_samples=1, min_translation_m=0.0,
                                           min_rotation_deg=0.0, live_pixel_stride=2,
                                           live_keyframe_rotation=rotation))
        for rgb, K, T_world_cam, points in _small_world_frames(6):
            assert mapper.integrate(rgb, K, T_world_cam, points, live=True)["iterations"] == 1
        fits = [kf.lattice_fits for kf in mapper.keyframes]
        assert len(fits) == 6 and sum(fits) == 6  # every live iteration fitted one lattice of one keyframe
        fitted[rotation] = fits
    assert fitted[True][-2:] != [0, 0], fitted  # the window's views were fitted ...
    assert fitted[False][-2:] == [0, 0], fitted  # ... which the offline rule never reaches at one iteration


def test_map_covers_points_within_sigmas_of_a_gaussian_along_its_largest_axis():
    gmap = GaussianMap(GaussianMapConfig(num_codebook_entries=2, min_init_scale=1e-4))
    assert not gmap.covers(np.zeros((2, 3)), 2.0).any()  # an empty map covers nothing
    gmap.add_gaussians(np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]), np.full((2, 3), 0.5),
                       scales=np.array([[0.01] * 3, [0.05] * 3]))
    with torch.no_grad():
        gmap.params["scales"][0] = torch.log(torch.tensor([0.002, 0.01, 0.003]))  # largest axis 0.01
    points = np.array([[0.0, 0.019, 0.0],   # 1.9 sigma of the first (along any axis: the bound is isotropic)
                       [0.021, 0.0, 0.0],   # 2.1 sigma of the first
                       [1.0, 0.0, 0.09],    # 1.8 sigma of the second
                       [0.5, 0.0, 0.0]])    # between them, far from both
    assert gmap.covers(points, 2.0).tolist() == [True, False, True, False]
    assert gmap.covers(points, 3.0).tolist() == [True, True, True, False]


def test_live_growth_seeds_no_return_an_existing_gaussian_covers():
    # A static scene looked at for ever: a return that already has a Gaussian around it seeds none
    # even where that Gaussian renders transparent (the optimisation owns its opacity), while a
    # return near nothing is still seeded. Offline frames keep the plain transparency test.
    (rgb, K, T_world_cam, points), = _small_world_frames(1)
    free_air = (T_world_cam @ np.array([0.0, 0.0, 0.3, 1.0]))[:3]  # on the optical axis, in front of everything
    grown = {}
    for live, sigma in ((True, 2.0), (True, 0.0), (False, 2.0)):
        torch.manual_seed(0)
        mapper = OnlineMapper(GaussianMapConfig(num_codebook_entries=4),
                              MapperConfig(iterations_per_frame=1, live_grow_covered_sigma=sigma))
        seeded = mapper.integrate(rgb, K, T_world_cam, points, live=live)["grown"]
        with torch.no_grad():
            mapper.map.params["opacities"].fill_(-20.0)  # the whole map transparent: every return is a candidate
        grown[live, sigma] = mapper.integrate(rgb, K, T_world_cam, np.vstack([points, free_air]), live=live)["grown"]
        assert seeded > 100
    assert grown[True, 2.0] == 1, grown  # only the return in free air
    assert grown[True, 0.0] > 100 and grown[False, 2.0] > 100, grown


def test_live_densification_grows_only_as_far_as_the_budget_affords_its_iterations():
    # A map whose iterations no longer fit the frame budget twice (here: a deadline already passed,
    # so each frame gets its one iteration) densifies no further, however high its gradients; a
    # generous deadline, the rule off, or an offline frame (no deadline) let it grow.
    frames = _small_world_frames(6)
    densified = {}
    for case in ("passed", "generous", "rule_off", "offline"):
        torch.manual_seed(0)
        mapper = OnlineMapper(GaussianMapConfig(num_codebook_entries=4),
                              MapperConfig(iterations_per_frame=4, densify_every=2, densify_start_iter=1,
                                           densify_grad2d=1e-9, live_densify_window=0,
                                           live_densify_min_iterations=0 if case == "rule_off" else 2))
        for index, (rgb, K, T_world_cam, points) in enumerate(frames):
            deadline = {"passed": time.perf_counter(), "rule_off": time.perf_counter(),
                        "generous": time.perf_counter() + 100.0, "offline": None}[case]
            out = mapper.integrate(rgb, K, T_world_cam, points, deadline_s=deadline, live=case != "offline")
            if case in ("passed", "rule_off"):
                assert out["iterations"] == 1
        densified[case] = mapper.densifier.totals
    passed = densified["passed"]
    # refinements come at iterations 2, 4, 6: after the first frame, measured, none of them grows
    assert passed["duplicated"] + passed["split"] == 0, densified
    assert passed["deferred"] > 0, densified
    for case in ("generous", "rule_off", "offline"):
        assert densified[case]["duplicated"] + densified[case]["split"] > 50, (case, densified)
        assert densified[case]["deferred"] == 0, (case, densified)
