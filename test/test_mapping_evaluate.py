"""The map evaluation command end to end on a tiny configuration (untrained tiny GOCL: plumbing,
not quality), and its settings handling."""
from __future__ import annotations

import json

import pytest
import torch

from ocgs_ros.mapping.evaluate import main, mapping_config_from_args
from ocgs_ros.ocl.checkpoint import save_checkpoint
from ocgs_ros.ocl.config import GoclConfig
from ocgs_ros.ocl.model import GoclModel


def test_evaluate_writes_results(tmp_path):
    torch.manual_seed(0)
    checkpoint = save_checkpoint(tmp_path / "gocl_tiny.pt", GoclModel(GoclConfig.tiny()))
    out = tmp_path / "results" / "gaussian_map.json"
    args = ["--checkpoint", str(checkpoint), "--out", str(out), "--scenes", "2", "--frames", "3", "--heldout", "1",
            "--camera-width", "64", "--camera-height", "48", "--lidar-beams", "16", "--lidar-azimuth-steps", "256",
            "--set", "view.process_width=32", "--set", "view.process_height=24",
            "--set", "mapper.iterations_per_frame=2", "--set", "map.max_gaussians=1500",
            "--set", "gocl.mask_temperature=0.7", "--no-progress"]
    returned = main(args)
    data = json.loads(out.read_text())
    assert data == json.loads(json.dumps(returned))
    assert data["command"] == "python -m ocgs_ros.mapping.evaluate " + " ".join(args)
    assert (tmp_path / "results" / "gaussian_map.png").stat().st_size > 1000
    assert 5.0 < data["psnr"] < 60.0 and 0.0 < data["ssim"] <= 1.0
    for key in ("identity_miou", "cross_view_consistency", "instance_recall_iou25", "instance_recall_iou50",
                "instance_precision_iou25", "instance_precision_iou50",
                "baseline_slot_index_cross_view_consistency", "kind_collisions", "baseline_slot_index_kind_collisions"):
        assert data[key] is None or 0.0 <= data[key] <= 1.0, key
    assert data["instance_recall_iou50"] is None or data["instance_recall_iou50"] <= data["instance_recall_iou25"]
    assert 0 < data["num_gaussians"] <= 1500 and data["identity_source"] == "gocl"
    settings = data["mapping_settings"]
    assert settings["gocl.mask_temperature"] == 0.7 and settings["view.process_width"] == 32
    assert settings["mapper.iterations_per_frame"] == 2 and settings["gocl.checkpoint"] == str(checkpoint)
    assert settings["view.max_points"] == 6000 and settings["mapper.window"] == 4  # the rest: node defaults
    assert data["sizes"]["camera_width"] == 64 and len(data["per_scene"]) == 2
    for obj in (o for scene in data["per_scene"] for o in scene["objects"]):
        summary = obj["held_out_identity"]  # None: never visible in a held-out view
        assert summary is None or 0 <= summary["views_agreeing"] <= summary["views"]
    assert data["sizes"]["dataset_seed"] == 7 and data["sizes"]["codebook_entries"] == 8


def test_settings_are_the_node_defaults_unless_set():
    from ocgs_ros.mapping.config import MappingConfig

    assert mapping_config_from_args([], None, None) == MappingConfig()
    config = mapping_config_from_args(["mapper.window=3", "view.process_width=0", "view.process_height=0"],
                                      "none", 5)
    assert config.mapper.window == 3 and config.view.process_width == 0 and config.gocl.checkpoint == "none"
    assert config.seed == 5
    with pytest.raises(ValueError, match="unknown setting 'mapper.windw'"):
        mapping_config_from_args(["mapper.windw=3"], None, None)
    with pytest.raises(SystemExit) as info:
        main(["--set", "view.max_points=-2", "--out", "unused.json"])
    assert info.value.code == 2


def test_novel_option_reports_known_and_novel_kinds_with_and_without_the_geometric_path(tmp_path):
    torch.manual_seed(0)
    checkpoint = save_checkpoint(tmp_path / "gocl_tiny.pt", GoclModel(GoclConfig.tiny()))
    out = tmp_path / "novel_objects.json"
    args = ["--novel", "--checkpoint", str(checkpoint), "--out", str(out), "--scenes", "1", "--frames", "3",
            "--heldout", "1", "--camera-width", "64", "--camera-height", "48", "--lidar-beams", "16",
            "--lidar-azimuth-steps", "256", "--set", "view.process_width=32", "--set", "view.process_height=24",
            "--set", "mapper.iterations_per_frame=2", "--no-progress"]
    data = json.loads(json.dumps(main(args)))
    assert json.loads(out.read_text()) == data and (tmp_path / "novel_objects.png").stat().st_size > 1000
    scene = data["per_scene"][0]
    groups = [o["group"] for o in scene["objects"]]
    assert "novel" in groups and data["ground_truth_objects"]["novel"] == groups.count("novel")
    for variant in ("geometric", "identity_only"):
        figures = data[variant]
        for key in ("novel_instance_recall_aabb50", "instance_precision_aabb50", "instance_recall_iou25",
                    "identity_miou", "novel_object_cross_view_consistency"):
            assert figures[key] is None or 0.0 <= figures[key] <= 1.0, (variant, key)
    # one map, two readings: without the geometric path no object has the unknown kind
    assert scene["variants"]["identity_only"]["num_unknown_kind"] == 0
    assert all(o["codebook_entry"] >= 0 for o in scene["variants"]["identity_only"]["objects"])
    with pytest.raises(SystemExit):
        main(["--novel", "--oracle-identity", "--out", str(tmp_path / "x.json")])
