"""Datasets on disk: write → read round trip, resume, and refusing a folder made with other settings."""
from __future__ import annotations

import numpy as np
import pytest

from ocgs_ros.sim.dataset import DrivingDataset, TabletopDataset, write_driving_dataset, write_tabletop_dataset
from ocgs_ros.sim.make_dataset import main as make_dataset_main
from ocgs_ros.sim.tabletop import TabletopWorld
from ocgs_ros.sim.types import DrivingConfig


def test_tabletop_round_trip_and_resume(tmp_path):
    root = write_tabletop_dataset(tmp_path / "tt", 2, 3, 32, 24, seed=7, progress=False)
    data = TabletopDataset(root)
    assert len(data) == 2 and data.meta["views_per_scene"] == 3 and len(data.meta["catalogue"]) >= 24
    scene = data.scene(1)
    assert scene["rgb"].shape == (3, 24, 32, 3) and scene["rgb"].dtype == np.uint8
    assert scene["instance"].dtype == np.int32 and scene["kind"].dtype == np.int32
    world = TabletopWorld(seed=scene["meta"]["world_seed"])
    assert [o["kind_id"] for o in scene["meta"]["objects"]] == [o.kind_id for o in world.objects]
    # the stored view is exactly what the world renders from the stored pose
    frame_meta = scene["meta"]["frames"][0]
    again = world.render_camera(np.array(frame_meta["T_world_cam"]), np.array(frame_meta["K"]), 32, 24)
    np.testing.assert_array_equal(again.rgb, scene["rgb"][0])
    np.testing.assert_array_equal(again.instance, scene["instance"][0])
    assert len(list(data.iter_views())) == 6

    before = (root / "scene_00000" / "frames.npz").stat().st_mtime_ns
    write_tabletop_dataset(root, 3, 3, 32, 24, seed=7, progress=False)  # resume: one more scene
    assert (root / "scene_00000" / "frames.npz").stat().st_mtime_ns == before
    assert len(TabletopDataset(root)) == 3
    with pytest.raises(ValueError, match="other settings"):
        write_tabletop_dataset(root, 3, 3, 32, 24, seed=8, progress=False)


def test_driving_round_trip(tmp_path):
    config = DrivingConfig.from_dict({"cameras": [{"width": 88, "height": 32}], "lidar": {"azimuth_steps": 256},
                                      "bev_grid": {"resolution": 1.0}})
    root = write_driving_dataset(tmp_path / "dr", 1, 2, seed=1, config=config, progress=False)
    data = DrivingDataset(root)
    frame = data.frame(0, 1)
    assert frame["images"].shape == (1, 32, 88, 3)
    assert frame["map_layers"].shape == (6, 100, 100) and frame["map_layers"].dtype == bool
    assert frame["lidar_points"].shape[1] == 4 and len(frame["boxes"]) == len(frame["box_classes"])
    assert frame["stamp_ns"] == int(round(5 * config.frame_period_s * 1e9))  # stride 5: second sample = frame 5
    with pytest.raises(ValueError, match="not 'tabletop'"):
        TabletopDataset(root)


def test_command_line(tmp_path, capsys):
    make_dataset_main(["tabletop", "--out", str(tmp_path / "cli"), "--scenes", "1", "--views", "2",
                       "--width", "16", "--height", "16", "--seed", "3"])
    assert "dataset ready" in capsys.readouterr().out
    assert len(TabletopDataset(tmp_path / "cli")) == 1
    with pytest.raises(SystemExit):
        make_dataset_main(["tabletop", "--out", str(tmp_path / "x"), "--scenes", "0"])
