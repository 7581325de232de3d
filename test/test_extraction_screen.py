"""benchmarks/extraction_screen.py, the dev screen of extraction settings on saved maps: it refuses
the evaluators' test seed and unknown settings, and scores a saved scene's objects against its truth."""
from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch
from conftest import REPO

from ocgs_ros.gaussians.map import GaussianMap, GaussianMapConfig
from ocgs_ros.gaussians.objects import ObjectConfig
from ocgs_ros.gaussians.objects.evidence import PointEvidence
from ocgs_ros.gaussians.persistence import save_map

spec = importlib.util.spec_from_file_location("extraction_screen", REPO / "benchmarks" / "extraction_screen.py")
screen = importlib.util.module_from_spec(spec)
spec.loader.exec_module(screen)


@pytest.mark.parametrize("argv", [["--seeds", "7"], ["--seeds", "11", "--obj", "no_such_field=1"],
                                  ["--seeds", "11", "--obj", "footprint_merge_iou"]])
def test_the_test_seed_and_bad_settings_are_refused(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        screen.main(argv)
    assert exit_info.value.code == 2 and "error" in capsys.readouterr().err


def test_a_saved_scene_is_scored_against_its_truth(tmp_path):
    gmap = GaussianMap(GaussianMapConfig(num_codebook_entries=3, identity_dim=8))
    with torch.no_grad():
        gmap.identity_head.weight.zero_()
        gmap.identity_head.weight[:, :4] = 10 * torch.eye(4)
        gmap.identity_head.bias.zero_()
    rng = np.random.default_rng(0)
    column = np.c_[rng.uniform(-0.03, 0.03, (200, 2)), rng.uniform(0.0, 0.1, 200)]
    table = np.c_[rng.uniform(-0.2, 0.2, (2000, 2)), np.zeros(2000)]
    table = table[np.abs(table[:, :2]).max(axis=1) > 0.04]
    for points, channel in ((column, 2), (table, 0)):
        feature = torch.zeros(len(points), 8)
        feature[:, channel] = 1.0
        gmap.add_gaussians(points, np.full((len(points), 3), 0.5), scales=np.full((len(points), 3), 0.003),
                           identity=feature, opacity=0.9)
    save_map(tmp_path / screen.MAP, gmap)
    evidence = PointEvidence(0.01, 1000)
    np.savez(tmp_path / screen.RETURNS, codes=evidence.codes, hits=evidence.hits, voxel=0.01, max_voxels=1000)
    truth = [{"kind": "box_here", "novel": False, "center": [0, 0, 0.05], "size": [0.06, 0.06, 0.1],
              "rotation": np.eye(3).tolist()},
             {"kind": "novel_box_elsewhere", "novel": True, "center": [0.15, 0.15, 0.05], "size": [0.06, 0.06, 0.1],
              "rotation": np.eye(3).tolist()}]
    (tmp_path / screen.TRUTH).write_text(json.dumps(truth))
    scene = screen.scene_figures(tmp_path, ObjectConfig(min_gaussians=20, box_sigma=0.0), 0.0)
    assert scene["groups"] == ["known", "novel"] and scene["published"] == 1
    assert scene["recalled"]["aabb50"] == [True, False] and scene["matched_aabb50"] == 1
    figures = screen.summarise([scene, scene])
    assert figures["known_recall_aabb50"] == "2/2" and figures["novel_recall_aabb50"] == "0/2"
    assert figures["precision_aabb50"] == "2/2"
