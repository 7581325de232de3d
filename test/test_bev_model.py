"""BEV model: forward shapes, branch geometry and input validation (tiny config)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ocgs_ros.bev.camera_branch import FrustumCellCache
from ocgs_ros.bev.config import BevConfig, GridSpec
from ocgs_ros.bev.heads import bev_resample_grid
from ocgs_ros.bev.lidar_branch import PillarScatter, points_to_cells
from ocgs_ros.bev.model import BevFusionModel, BevInputs
from ocgs_ros.bev.synthetic import camera_rig, random_inputs

torch.set_num_threads(1)


@pytest.mark.parametrize("cameras", [1, 2])
def test_forward_shapes_with_variable_point_counts(cameras):
    cfg = BevConfig.tiny(num_cameras=cameras)
    torch.manual_seed(0)
    model = BevFusionModel(cfg)
    inputs = random_inputs(cfg, batch=3, points_per_sample=[500, 37, 0], seed=cameras)
    out = model(inputs)
    rows, cols = cfg.det_grid.shape
    assert out.camera_bev.shape == (3, cfg.camera_bev_channels, rows, cols)
    assert out.lidar_bev.shape == (3, cfg.lidar_bev_channels, rows, cols)
    assert out.shared.shape == (3, cfg.shared_channels, rows, cols)
    assert out.heatmap.shape == (3, cfg.num_box_classes, rows, cols)
    assert out.regression.shape == (3, 10, rows, cols)
    assert out.map_logits.shape == (3, cfg.num_map_classes, *cfg.map_grid.shape)
    assert all(torch.isfinite(out[k]).all() for k in out.keys())


def test_empty_sweep_gives_empty_pillar_grid_and_points_land_in_their_cell():
    cfg = BevConfig.tiny()
    scatter = PillarScatter(cfg)
    pts = torch.tensor([[1.0, -2.0, 0.5, 0.3], [1.3, -2.2, 0.0, 0.9], [50.0, 0.0, 0.0, 1.0], [0.0, 0.0, 9.0, 1.0]])
    bev = scatter([pts, torch.zeros(0, 4)])
    res = cfg.det_grid.resolution
    row, col = int((1.0 + 12.8) // res), int((-2.0 + 12.8) // res)
    occupied = bev[0].abs().sum(0) > 0
    assert occupied.sum() == 1 and occupied[row, col]  # out-of-range and too-high points dropped
    assert bev[1].abs().sum() == 0
    cells, inside = points_to_cells(pts, cfg)
    assert inside.tolist() == [True, True, False, False]
    assert cells[0] == cells[1] == row * cfg.det_grid.cols + col


def test_frustum_geometry_projects_along_the_optical_axis():
    cfg = BevConfig.tiny(image_height=32, image_width=64)
    k, pose = camera_rig(cfg)
    cache = FrustumCellCache(cfg)
    cells = cache.cells(torch.as_tensor(k[0]), torch.as_tensor(pose[0]))
    assert cells.shape == (cfg.depth_bins * cfg.feature_height * cfg.feature_width,)
    grid = cfg.det_grid
    valid = cells[cells >= 0]
    rows = valid // grid.cols
    # A forward-looking camera mounted at x = 1 m sees only cells ahead of it.
    x_centres = grid.x_min + (rows.double() + 0.5) * grid.resolution
    assert x_centres.min() > 1.0 - grid.resolution
    # The ray through the principal point at depth d lands at ego (1 + d, 0): check one bin.
    fh, fw = cfg.feature_height, cfg.feature_width
    depths = cfg.depth_bin_centres()
    d_idx = 3
    centre_v, centre_u = fh // 2, fw // 2
    idx = (d_idx * fh + centre_v) * fw + centre_u
    u = (centre_u + 0.5) * cfg.image_stride - 0.5
    v = (centre_v + 0.5) * cfg.image_stride - 0.5
    ray = np.linalg.inv(k[0]) @ np.array([u, v, 1.0]) * depths[d_idx]
    ego = pose[0][:3, :3] @ ray + pose[0][:3, 3]
    expected = int((ego[0] - grid.x_min) // grid.resolution) * grid.cols + int((ego[1] - grid.y_min) // grid.resolution)
    assert int(cells[idx]) == expected
    cache.cells(torch.as_tensor(k[0]), torch.as_tensor(pose[0]))
    assert len(cache) == 1  # cached, not recomputed into a second entry


def test_camera_bev_is_empty_behind_a_forward_camera_before_refinement():
    cfg = BevConfig.tiny()
    torch.manual_seed(0)
    model = BevFusionModel(cfg).eval()
    inputs = random_inputs(cfg, batch=1, points_per_sample=10)
    captured = {}
    handle = model.camera.bev_refine.register_forward_hook(lambda m, i, o: captured.setdefault("splat", i[0]))
    with torch.no_grad():
        model(inputs)
    handle.remove()
    splat = captured["splat"][0].abs().sum(0)
    behind_rows = int((0.0 - cfg.det_grid.x_min) // cfg.det_grid.resolution)
    assert splat[:behind_rows].sum() == 0
    assert splat[behind_rows:].sum() > 0


def test_map_resample_grid_is_identity_on_equal_grids_and_aligns_cell_centres():
    grid = GridSpec(-4.0, 4.0, -2.0, 2.0, 1.0)
    feat = torch.arange(8 * 4, dtype=torch.float32).reshape(1, 1, 8, 4)
    same = F.grid_sample(feat, bev_resample_grid(grid, grid), align_corners=False)
    torch.testing.assert_close(same, feat)
    # A 2x finer target: the cell centred at (x, y) = (-3.75, -1.75) lies a quarter cell inside
    # source cell (0, 0); bilinear with zero padding outside gives 0.75 * 0.75 * value there.
    fine = GridSpec(-4.0, 4.0, -2.0, 2.0, 0.5)
    ones = torch.ones(1, 1, 8, 4)
    out = F.grid_sample(ones, bev_resample_grid(grid, fine), align_corners=False, padding_mode="zeros")
    assert out.shape == (1, 1, 16, 8)
    assert out[0, 0, 0, 0] == pytest.approx(0.75 * 0.75)
    assert out[0, 0, 5, 3] == pytest.approx(1.0)


def test_bad_inputs_raise_clear_errors():
    cfg = BevConfig.tiny()
    model = BevFusionModel(cfg)
    good = random_inputs(cfg, batch=1, points_per_sample=10)
    with pytest.raises(ValueError, match="cameras"):
        model(random_inputs(BevConfig.tiny(num_cameras=2), batch=1, points_per_sample=10))
    with pytest.raises(ValueError, match="images are"):
        model(dataclasses.replace(good, images=torch.zeros(1, 1, 3, 16, 16)))
    with pytest.raises(ValueError, match="points has"):
        model(dataclasses.replace(good, points=[]))
    with pytest.raises(ValueError, match=r"\[N, 4\]"):
        model(dataclasses.replace(good, points=[torch.zeros(5, 3)]))
    with pytest.raises(ValueError, match="intrinsics"):
        model(BevInputs(good.images, torch.eye(3).expand(1, 2, 3, 3), good.cam_to_ego, good.points))


def test_config_validation_and_round_trip():
    cfg = BevConfig.tiny()
    again = BevConfig.from_dict(cfg.to_dict())
    assert again == cfg
    assert BevConfig.from_dict({"det_grid": [-10, 10, -5, 5, 0.5]}).det_grid.shape == (40, 20)
    with pytest.raises(ValueError, match="unknown BevConfig keys"):
        BevConfig.from_dict({"channels": 3})
    with pytest.raises(ValueError, match="whole number"):
        GridSpec(0, 1, 0, 1, 0.3)
    with pytest.raises(ValueError, match="stride"):
        BevConfig.tiny(image_stride=8)
    with pytest.raises(ValueError, match="divisible"):
        BevConfig.tiny(image_height=30)
    default = BevConfig.default()
    assert default.det_grid.shape == (128, 128)


def test_short_calibrated_training_fits_a_fixed_scene():
    """End to end: 80 AdamW steps with full calibration overfit two boxes and a map stripe."""
    from ocgs_ros.bev import GradientCalibrator, collate_targets, decode_detections, detection_metrics, encode_targets, task_losses

    cfg = BevConfig.tiny()
    torch.manual_seed(0)
    inputs = random_inputs(cfg, batch=2, points_per_sample=[800, 800], seed=5)
    boxes = np.array([[4.0, 1.0, 0.5, 4.2, 1.9, 1.6, 0.4, 2.0, 0.0], [7.5, -3.0, 0.6, 0.7, 0.7, 1.8, -1.0, 0.5, 0.5]])
    classes = np.array([0, 2])
    targets = collate_targets([encode_targets(boxes, classes, cfg)] * 2)
    targets["map"] = torch.zeros(2, cfg.num_map_classes, *cfg.map_grid.shape)
    targets["map"][:, 0, :20] = 1
    model = BevFusionModel(cfg)
    optimizer = torch.optim.AdamW(model.parameters(), 3e-3)
    calibrator = GradientCalibrator("mgc")
    history = []
    for _ in range(80):
        optimizer.zero_grad()
        out = model(inputs, calibrator)
        losses, _ = task_losses(out, targets, cfg)
        history.append({k: float(v.detach()) for k, v in losses.items()})
        calibrator.step_backward(losses, out.shared, out.modality_features())
        optimizer.step()
    for task in ("detection", "map"):
        assert history[-1][task] < 0.25 * history[0][task], task
    model.eval()
    with torch.no_grad():
        detections = decode_detections(model(inputs), cfg)
    metrics = detection_metrics(detections, [{"boxes": boxes, "labels": classes}] * 2, cfg.box_classes)
    assert metrics["mAP"] > 0.9
