"""BevPredictor: the ROS node's inference API (shapes, resizing, bad input)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ocgs_ros.bev.checkpoint import CheckpointError, save_checkpoint
from ocgs_ros.bev.config import BOX_CLASSES, MAP_CLASSES, BevConfig
from ocgs_ros.bev.inference import BevPrediction, BevPredictor
from ocgs_ros.bev.model import BevFusionModel
from ocgs_ros.bev.synthetic import camera_rig

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    torch.manual_seed(0)
    cfg = BevConfig.tiny(score_threshold=0.0, max_detections=10)  # untrained: decode every peak
    path = save_checkpoint(tmp_path_factory.mktemp("bev_inf") / "tiny.pt", BevFusionModel(cfg))
    return BevPredictor.from_checkpoint(path)


def _frame(cfg, height, width, points=500, seed=0):
    rng = np.random.default_rng(seed)
    K, T = camera_rig(cfg)
    scale = width / cfg.image_width
    K = K.copy()
    K[:, :2] *= scale
    images = rng.integers(0, 256, (cfg.num_cameras, height, width, 3), dtype=np.uint8)
    pts = np.concatenate([rng.uniform(-15, 15, (points, 2)), rng.uniform(-1, 2, (points, 1)),
                          rng.uniform(0, 1, (points, 1))], axis=1).astype(np.float32)
    return images, K, T, pts


def test_predict_shapes_types_and_resizing(predictor):
    cfg = predictor.config
    assert predictor.num_cameras == 1
    images, K, T, pts = _frame(cfg, 64, 128)  # twice the model's size: resized, K scaled
    pred = predictor.predict(images, K, T, pts)
    assert isinstance(pred, BevPrediction)
    d = len(pred.scores)
    assert 0 < d <= cfg.max_detections
    assert pred.boxes.shape == (d, 9) and pred.labels.shape == (d,) and pred.labels.dtype == np.int64
    assert pred.labels.min() >= 0 and pred.labels.max() < len(BOX_CLASSES)
    assert np.all(np.diff(pred.scores) <= 0)
    assert pred.class_names == BOX_CLASSES and pred.map_classes == MAP_CLASSES
    assert pred.map_probs.shape == (len(MAP_CLASSES), *cfg.map_grid.shape) and pred.map_probs.dtype == np.float32
    assert pred.map_probs.min() >= 0 and pred.map_probs.max() <= 1
    assert pred.grid == cfg.map_grid and pred.latency_ms > 0
    small = predictor.predict(images[:, ::2, ::2].copy(), K / np.array([2, 2, 1])[None, :, None], T, pts)
    assert small.map_probs.shape == pred.map_probs.shape
    # points far outside the grid are ignored rather than rejected
    far = np.concatenate([pts, np.array([[500.0, 0, 0, 1]], np.float32)])
    np.testing.assert_allclose(predictor.predict(images, K, T, far).map_probs, pred.map_probs, atol=1e-6)


def test_batchnorm_folding_keeps_the_outputs(predictor):
    plain = BevPredictor(predictor.model, fuse_bn=False)  # already folded model, unchanged
    images, K, T, pts = _frame(predictor.config, 32, 64, seed=2)
    torch.manual_seed(1)
    model = BevFusionModel(predictor.config)
    with torch.no_grad():  # non-trivial BN statistics
        for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
    fused, unfused = BevPredictor(model), BevPredictor(model, fuse_bn=False)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.model.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in unfused.model.modules())
    a, b = fused.predict(images, K, T, pts), unfused.predict(images, K, T, pts)
    np.testing.assert_allclose(a.map_probs, b.map_probs, atol=1e-5)
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-5)
    assert plain.predict(images, K, T, pts).map_probs.shape == a.map_probs.shape


def test_predict_rejects_bad_inputs(predictor):
    images, K, T, pts = _frame(predictor.config, 32, 64)
    bad_points = pts.copy()
    bad_points[3, 1] = np.nan
    cases = [
        ((images.astype(np.float32), K, T, pts), "uint8"),
        ((images[0], K, T, pts), r"\[N, H, W, 3\]"),
        ((np.concatenate([images, images]), np.concatenate([K, K]), np.concatenate([T, T]), pts), "expects 1"),
        ((images, K[0], T, pts), "intrinsics"),
        ((images, K, T[:, :3], pts), "T_ego_cam"),
        ((images, K, T, pts[:, :3]), r"\[P, 4\]"),
        ((images, K, T, bad_points), "NaN"),
    ]
    for args, message in cases:
        with pytest.raises(ValueError, match=message):
            predictor.predict(*args)


def test_from_checkpoint_reports_unusable_files(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot be read"):
        BevPredictor.from_checkpoint(tmp_path / "junk.pt")
