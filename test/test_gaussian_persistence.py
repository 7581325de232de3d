"""save_map/load_map: PLY (3DGS layout + identity) and objects JSON round trip in one map directory, with checks."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_gaussian_objects import _map  # noqa: E402

from ocgs_ros.gaussians.objects import ObjectConfig, ObjectTracker  # noqa: E402
from ocgs_ros.gaussians.persistence import load_map, map_paths, save_map  # noqa: E402


@pytest.mark.parametrize("target", ["prefix", "dir"])
def test_round_trip(tmp_path, target):
    gmap = _map()
    tracker = ObjectTracker(ObjectConfig(min_gaussians=20, link_radius=0.03))
    tracker.update(gmap)
    where = tmp_path / "scene1" if target == "prefix" else tmp_path
    paths = save_map(where, gmap, tracker)
    stem = "scene1" if target == "prefix" else "map"
    assert paths == map_paths(where) and paths["dir"] == tmp_path / stem
    assert sorted(p.name for p in paths["dir"].iterdir()) == ["gaussians.ply", "identity.json", "manifest.json",
                                                               "objects.json"]
    assert len(list(tmp_path.iterdir())) == 2  # the map directory (a symlink) and the one version it names
    loaded, loaded_tracker = load_map(where)
    for name, value in gmap.params.items():
        assert torch.equal(loaded.params[name], value.detach()), name
    assert torch.equal(loaded.identity_logits(), gmap.identity_logits())
    assert [o.to_json() for o in loaded_tracker.objects] == [o.to_json() for o in tracker.objects]
    # the next update on the loaded map keeps the ids
    assert [o.id for o in loaded_tracker.update(loaded)] == [o.id for o in tracker.objects]


def test_map_without_objects_and_mismatched_files(tmp_path):
    gmap = _map()
    save_map(tmp_path / "a.ply", gmap)
    loaded, tracker = load_map(tmp_path / "a")
    assert tracker is None and loaded.num_gaussians == gmap.num_gaussians
    tracker = ObjectTracker()
    tracker.update(gmap)
    save_map(tmp_path / "a", gmap, tracker)
    objects = tmp_path / "a" / "objects.json"
    data = json.loads(objects.read_text())
    data["num_gaussians"] += 1
    objects.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="sha256"):
        load_map(tmp_path / "a")
    with pytest.raises(FileNotFoundError):
        load_map(tmp_path / "missing")
    assert len(list(tmp_path.iterdir())) == 2  # the second save removed the first version; no temporaries
    assert np.isfinite(json.loads((tmp_path / "a" / "identity.json").read_text())["identity_head"]["bias"]).all()


def test_mapping_continues_on_a_loaded_map(tmp_path):
    from ocgs_ros.gaussians.mapper import MapperConfig, OnlineMapper

    gmap = _map()
    save_map(tmp_path / "m", gmap)
    loaded, _ = load_map(tmp_path / "m")
    mapper = OnlineMapper.from_map(loaded, MapperConfig(iterations_per_frame=2))
    K = np.array([[40.0, 0, 15.5], [0, 40.0, 11.5], [0, 0, 1]])
    T = np.eye(4)
    T[:3, 3] = [0.0, 0.0, -1.0]
    before = mapper.map.params["means"].detach().clone()
    stats = mapper.integrate(np.full((24, 32, 3), 90, np.uint8), K, T, np.array([[0.0, 0.0, 0.5]]))
    assert mapper.map is loaded and stats["num_gaussians"] >= gmap.num_gaussians
    assert not torch.equal(mapper.map.params["means"][:len(before)].detach(), before)  # it optimised the loaded map
