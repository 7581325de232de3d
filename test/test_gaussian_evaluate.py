"""The evaluate command end to end on a tiny configuration (untrained tiny GOCL: plumbing, not quality)."""
from __future__ import annotations

import json

import torch

from ocgs_ros.gaussians.evaluate import main
from ocgs_ros.ocl.checkpoint import save_checkpoint
from ocgs_ros.ocl.config import GoclConfig
from ocgs_ros.ocl.model import GoclModel


def test_evaluate_writes_results(tmp_path):
    torch.manual_seed(0)
    checkpoint = save_checkpoint(tmp_path / "gocl_tiny.pt", GoclModel(GoclConfig.tiny()))
    out = tmp_path / "results" / "gaussian_map.json"
    args = ["--checkpoint", str(checkpoint), "--out", str(out), "--scenes", "2", "--frames", "3", "--heldout", "1",
            "--width", "32", "--height", "32", "--iterations", "2", "--max-gaussians", "1500",
            "--lidar-beams", "16", "--lidar-azimuth-steps", "256", "--no-progress"]
    returned = main(args)
    data = json.loads(out.read_text())
    assert data == json.loads(json.dumps(returned))
    assert data["command"] == "python -m ocgs_ros.gaussians.evaluate " + " ".join(args)
    assert (tmp_path / "results" / "gaussian_map.png").stat().st_size > 1000
    assert 5.0 < data["psnr"] < 60.0 and 0.0 < data["ssim"] <= 1.0
    for key in ("identity_miou", "cross_view_consistency", "instance_recall_iou50",
                "baseline_slot_index_cross_view_consistency"):
        assert data[key] is None or 0.0 <= data[key] <= 1.0, key
    assert 0 < data["num_gaussians"] <= 1500 and data["identity_source"] == "gocl"
    assert data["sizes"]["width"] == 32 and len(data["per_scene"]) == 2
    assert data["sizes"]["dataset_seed"] == 7 and data["sizes"]["codebook_entries"] == 8
