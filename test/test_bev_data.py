"""BEV data: frame preprocessing, the simulator dataset adapter and the nuScenes-format round trip."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ocgs_ros.bev.config import MAP_CLASSES, BevConfig, GridSpec
from ocgs_ros.bev.data import BevSampleDataset, SimDrivingRecords, lidar_to_ego
from ocgs_ros.bev.frames import collate_samples, prepare_inputs, resample_map_layers, resize_images
from ocgs_ros.bev.nuscenes import NuScenesRecords, export_simulated_scenes
from ocgs_ros.sim.dataset import scene_seed, write_driving_dataset
from ocgs_ros.sim.driving import DrivingWorld
from ocgs_ros.sim.types import CameraConfig, DrivingConfig, LidarConfig

torch.set_num_threads(1)

SIM = DrivingConfig(cameras=[CameraConfig(width=64, height=32, hfov_deg=70.0)],
                    lidar=LidarConfig(beams=16, azimuth_steps=256))
CFG = BevConfig.tiny()


@pytest.fixture(scope="module")
def sim_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("bev_sim")
    return write_driving_dataset(root, num_scenes=1, frames_per_scene=2, seed=3, config=SIM, progress=False)


@pytest.fixture(scope="module")
def nus_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("bev_nus")
    return export_simulated_scenes(root, num_scenes=1, frames_per_scene=3, seed=3, config=SIM, frame_stride=5,
                                   sweeps_per_sample=1)


def test_resize_adjusts_intrinsics_so_points_project_to_the_same_place():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (2, 40, 80, 3), dtype=np.uint8)
    K = np.array([[[60.0, 0, 39.5], [0, 60.0, 19.5], [0, 0, 1]]] * 2)
    out, K2 = resize_images(images, K, 20, 160)
    assert out.shape == (2, 20, 160, 3) and out.dtype == np.uint8
    point = np.array([1.3, -0.4, 5.0])
    u, v, w = K[0] @ point
    u2, v2, w2 = K2[0] @ point
    # pixel centres at integers: u' = (u + 0.5) * s - 0.5
    assert u2 / w2 == pytest.approx((u / w + 0.5) * 2.0 - 0.5)
    assert v2 / w2 == pytest.approx((v / w + 0.5) * 0.5 - 0.5)
    same, K_same = resize_images(images, K, 40, 80)
    assert same is images and np.array_equal(K_same, K)


def test_resample_map_layers_crops_aligned_grids_and_blanks_outside():
    source = GridSpec(-5.0, 5.0, -5.0, 5.0, 0.5)
    layers = np.random.default_rng(1).random((6, 20, 20)) > 0.5
    crop = resample_map_layers(layers, source, GridSpec(-2.0, 2.0, -1.0, 3.0, 0.5))
    assert np.array_equal(crop, layers[:, 6:14, 8:16])
    wider = resample_map_layers(layers, source, GridSpec(-6.0, 6.0, -5.0, 5.0, 0.5))
    assert not wider[:, :2].any() and not wider[:, -2:].any()
    assert np.array_equal(wider[:, 2:-2], layers)
    with pytest.raises(ValueError, match="do not fit"):
        resample_map_layers(layers[:, :10], source, source)


def test_sim_adapter_moves_lidar_to_ego_and_builds_targets(sim_root):
    records = SimDrivingRecords(sim_root)
    assert len(records) == 2
    world = DrivingWorld(SIM, seed=scene_seed(3, 0))
    frame = world.frame(5)  # second stored frame (frame_stride 5)
    rec = records[1]
    expected = frame.lidar.points @ frame.lidar.T_ego_lidar[:3, :3].T + frame.lidar.T_ego_lidar[:3, 3]
    np.testing.assert_allclose(rec.points[:, :3], expected, atol=1e-4)
    np.testing.assert_allclose(rec.boxes, frame.boxes, atol=1e-5)
    assert rec.map_grid == GridSpec(-50.0, 50.0, -50.0, 50.0, 0.5)

    dataset = BevSampleDataset(records, CFG)
    sample = dataset[1]
    assert sample["images"].shape == (1, 3, CFG.image_height, CFG.image_width)
    assert sample["map"].shape == (6, *CFG.map_grid.shape)
    np.testing.assert_array_equal(sample["map"].numpy().astype(bool),
                                  resample_map_layers(rec.map_layers, rec.map_grid, CFG.map_grid))
    g = CFG.det_grid
    pts = sample["points"].numpy()
    assert (pts[:, 0] >= g.x_min).all() and (pts[:, 0] < g.x_max).all()
    # every evaluation box inside the grid has a heatmap peak of 1 at its centre cell
    for box, label in zip(sample["gt_boxes"], sample["gt_labels"]):
        row, col = int((box[0] - g.x_min) // g.resolution), int((box[1] - g.y_min) // g.resolution)
        assert sample["heatmap"][label, row, col] == pytest.approx(1.0)
    assert len(sample["gt_boxes"]) > 0, "the fixture frame should contain at least one box with LiDAR points"
    inputs, targets, gts = collate_samples([dataset[0], dataset[1]])
    inputs.validate(CFG)
    assert targets["heatmap"].shape[0] == 2 and len(gts) == 2


def test_lidar_to_ego_applies_the_transform():
    T = np.eye(4)
    T[:3, 3] = [1.0, 0.0, 2.0]
    out = lidar_to_ego(np.array([[1.0, 2.0, 3.0, 0.5]], dtype=np.float32), T)
    np.testing.assert_allclose(out, [[2.0, 2.0, 5.0, 0.5]])


def test_nuscenes_fixture_round_trip_matches_the_simulator(nus_root):
    records = NuScenesRecords(nus_root, "v1.0-mini")
    assert len(records) == 3 and records.cameras == ("CAM_FRONT",)
    world = DrivingWorld(SIM, seed=scene_seed(3, 0))
    for i, rec in enumerate(records):
        frame = world.frame(i * 5)
        cam = frame.cameras[0]
        assert rec.images.shape == (1, 32, 64, 3)
        assert np.abs(rec.images[0].astype(int) - cam.rgb.astype(int)).mean() < 6  # JPEG, quality 95
        np.testing.assert_allclose(rec.intrinsics[0], cam.K, atol=1e-9)
        np.testing.assert_allclose(rec.T_ego_cam[0], cam.T_ego_cam, atol=1e-9)
        expected = frame.lidar.points @ frame.lidar.T_ego_lidar[:3, :3].T + frame.lidar.T_ego_lidar[:3, 3]
        np.testing.assert_allclose(rec.points[:, :3], expected, atol=1e-4)
        np.testing.assert_allclose(rec.points[:, 3], frame.lidar.intensity, atol=1e-6)
        assert len(rec.boxes) == len(frame.boxes) > 0
        np.testing.assert_allclose(rec.boxes[:, :6], frame.boxes[:, :6], atol=1e-4)
        yaw_err = np.abs((rec.boxes[:, 6] - frame.boxes[:, 6] + np.pi) % (2 * np.pi) - np.pi)
        assert yaw_err.max() < 1e-4
        # velocity from neighbouring annotations equals the simulator's constant velocities
        np.testing.assert_allclose(rec.boxes[:, 7:9], frame.boxes[:, 7:9], atol=1e-3)
        np.testing.assert_array_equal(rec.labels, frame.box_classes)
        np.testing.assert_array_equal(rec.num_points, frame.box_num_points)
        np.testing.assert_array_equal(rec.map_layers, frame.map_layers)


def test_nuscenes_layout_sweeps_and_errors(nus_root, tmp_path):
    tables = {p.stem for p in (nus_root / "v1.0-mini").glob("*.json")}
    assert {"scene", "sample", "sample_data", "ego_pose", "calibrated_sensor", "sample_annotation"} <= tables
    assert list((nus_root / "samples" / "LIDAR_TOP").glob("*.pcd.bin"))
    assert len(list((nus_root / "sweeps" / "LIDAR_TOP").glob("*.pcd.bin"))) == 2
    sizes = json.loads((nus_root / "v1.0-mini" / "sample_annotation.json").read_text())[0]["size"]
    assert sizes[0] < sizes[1] or sizes[0] == pytest.approx(sizes[1])  # nuScenes order: w, l, h
    one, two = NuScenesRecords(nus_root, "v1.0-mini"), NuScenesRecords(nus_root, "v1.0-mini", lidar_sweeps=2)
    assert len(two[0].points) == len(one[0].points)  # first sample has no earlier sweep
    assert len(two[1].points) > len(one[1].points)
    dataset = BevSampleDataset(one, CFG)
    assert dataset.has_map and dataset[0]["map"].shape == (len(MAP_CLASSES), *CFG.map_grid.shape)
    with pytest.raises(FileNotFoundError, match="no nuScenes tables"):
        NuScenesRecords(nus_root, "v1.0-trainval")
    broken = tmp_path / "v1.0-mini"
    broken.mkdir()
    with pytest.raises(FileNotFoundError, match="missing nuScenes table"):
        NuScenesRecords(tmp_path, "v1.0-mini")


def test_prepare_inputs_rejects_bad_arrays():
    cfg = BevConfig.tiny()
    img = np.zeros((1, 32, 64, 3), np.uint8)
    K = np.array([[[50.0, 0, 31.5], [0, 50.0, 15.5], [0, 0, 1]]])
    T = np.eye(4)[None]
    pts = np.zeros((10, 4), np.float32)
    prepare_inputs(img, K, T, pts, cfg)
    with pytest.raises(ValueError, match="uint8"):
        prepare_inputs(img.astype(np.float32), K, T, pts, cfg)
    with pytest.raises(ValueError, match="expects 1"):
        prepare_inputs(np.concatenate([img, img]), np.concatenate([K, K]), np.concatenate([T, T]), pts, cfg)
    with pytest.raises(ValueError, match="NaN"):
        prepare_inputs(img, K, T, np.full((3, 4), np.nan, np.float32), cfg)
    with pytest.raises(ValueError, match=r"\[P, 4\]"):
        prepare_inputs(img, K, T, pts[:, :3], cfg)
    with pytest.raises(ValueError, match="intrinsics"):
        prepare_inputs(img, K[:, :2], T, pts, cfg)
    with pytest.raises(ValueError, match="homogeneous"):
        prepare_inputs(img, K, T * 2, pts, cfg)


def test_evaluate_command_reads_the_nuscenes_layout(nus_root, tmp_path):
    from ocgs_ros.bev import evaluate as bev_evaluate
    from ocgs_ros.bev.checkpoint import save_checkpoint
    from ocgs_ros.bev.model import BevFusionModel

    ckpt = save_checkpoint(tmp_path / "tiny.pt", BevFusionModel(CFG))
    out = tmp_path / "eval.json"
    bev_evaluate.main(["--checkpoint", str(ckpt), "--data", str(nus_root), "--nuscenes-version", "v1.0-mini",
                       "--out", str(out)])
    result = json.loads(out.read_text())
    assert result["frames"] == 3 and result["map"] is not None and result["detection"] is not None
