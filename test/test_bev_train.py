"""BEV train -> checkpoint -> resume -> evaluate on a tiny config, and checkpoint failure modes."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import run_torchrun, torchrun_failure
from ocgs_ros.bev import evaluate as bev_evaluate
from ocgs_ros.bev.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from ocgs_ros.bev.config import BevConfig
from ocgs_ros.bev.model import BevFusionModel
from ocgs_ros.bev.train import BevTrainConfig, main as train_main, train
from ocgs_ros.training import RunSetupError
from ocgs_ros.training.cli import config_to_argv, parse_config

torch.set_num_threads(1)

def _run(out, tiny_driving_data, steps, *extra, resume=False):
    argv = ["--data", str(tiny_driving_data), "--val-data", str(tiny_driving_data), "--out", str(out), "--preset", "tiny",
            "--steps", str(steps), "--batch", "2", "--seed", "1", "--checkpoint-every", "4", "--no-progress",
            *extra] + (["--resume"] if resume else [])
    return train(parse_config(BevTrainConfig, argv, "bev_train", ""), argv=argv)


def test_train_resume_is_identical_and_logs_calibration_statistics(tmp_path, tiny_driving_data):
    straight = _run(tmp_path / "straight", tiny_driving_data, 4)
    interrupted = _run(tmp_path / "resumed", tiny_driving_data, 4, "--stop-after", "2")
    assert interrupted.evaluation is None and load_checkpoint(interrupted.checkpoint)[2]["step"] == 2
    resumed = _run(tmp_path / "resumed", tiny_driving_data, 4, resume=True)
    a, _, meta_a = load_checkpoint(straight.checkpoint)
    b, _, meta_b = load_checkpoint(resumed.checkpoint)
    assert meta_a["step"] == meta_b["step"] == 4
    for name, tensor in a.state_dict().items():
        torch.testing.assert_close(b.state_dict()[name], tensor, msg=name)

    rows = [json.loads(line) for line in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    for r in rows:
        assert -1.0 <= r["task_cosine"] <= 1.0
        # default --calibration mgc turns the modality level on: equal norms after, not before
        assert r["modality_grad_norm_after_camera"] == pytest.approx(r["modality_grad_norm_after_lidar"], rel=1e-3)
        assert r["modality_grad_norm_before_camera"] != pytest.approx(r["modality_grad_norm_before_lidar"], rel=1e-3)
    assert (tmp_path / "resumed" / "curves.png").stat().st_size > 0
    ev = json.loads((tmp_path / "resumed" / "eval.json").read_text())
    assert set(ev["detection"]["class_ap"]) == {"car", "truck", "pedestrian", "cyclist"}
    assert 0.0 <= ev["mIoU"] <= 1.0

    with pytest.raises(CheckpointError, match="calibration"):
        _run(tmp_path / "resumed", tiny_driving_data, 6, "--calibration", "sum", resume=True)
    with pytest.raises(RunSetupError, match="exists: pass --resume"):
        _run(tmp_path / "resumed", tiny_driving_data, 4)


def test_single_task_and_uncalibrated_runs(tmp_path, tiny_driving_data):
    result = _run(tmp_path / "det", tiny_driving_data, 2, "--tasks", "det", "--calibration", "sum", "--no-modality-cal")
    assert result.evaluation["mIoU"] is None and result.evaluation["mAP"] is not None
    rows = [json.loads(line) for line in (tmp_path / "det" / "metrics.jsonl").read_text().splitlines()]
    assert all(r["task_grad_norm_map"] == 0.0 for r in rows)  # map loss x 0 sends nothing into the backbone
    assert rows[0]["modality_grad_norm_after_camera"] == pytest.approx(rows[0]["modality_grad_norm_before_camera"])


def test_config_round_trip_from_argv():
    """The documented command parses to what it says; every config prints back to an equal one."""
    argv = ["--data", "runs/bev/data_train", "--val-data", "runs/bev/data_val", "--out", "runs/bev/full",
            "--preset", "small", "--steps", "560", "--batch", "2", "--seed", "0", "--calibration", "mgc",
            "--modality-cal", "--tasks", "det,map"]
    config = parse_config(BevTrainConfig, argv, "bev_train", "")
    assert (config.steps, config.modality_cal, config.task_names()) == (560, True, ("detection", "map"))
    assert (config.lr, config.threads, config.log_every, config.checkpoint_every) == (2e-3, 1, 1, 100)  # defaults
    assert parse_config(BevTrainConfig, config_to_argv(config), "bev_train", "") == config
    other = BevTrainConfig(data="d", out="o", steps=3, modality_cal=False, tasks="map", lr=1.5e-4, stop_after=1,
                           overrides=("det_grid=-12.8,12.8,-12.8,12.8,0.8", "nms_radius=1,2,3,4"), preset="tiny")
    assert parse_config(BevTrainConfig, config_to_argv(other), "bev_train", "") == other
    assert other.model_config().nms_radius == (1.0, 2.0, 3.0, 4.0) and other.model_config().det_grid.x_min == -12.8
    assert "--no-modality-cal" in config_to_argv(other)


def test_bad_command_lines_exit_2_with_one_line(tmp_path, tiny_driving_data, capsys):
    base = ["--data", str(tiny_driving_data), "--out", str(tmp_path / "r"), "--preset", "tiny", "--steps", "2"]
    for extra, message in ((["--tasks", "lidar"], "--tasks must be a comma list"),
                           (["--calibration", "best"], "invalid choice"),
                           (["--lr", "-1"], "--lr must be > 0"),
                           (["--calibration", "partial", "--partial-beta", "2"], "--partial-beta must be in [0, 1]"),
                           (["--set", "det_grid=1,2"], "det_grid=1,2: needs 5 comma-separated values")):
        with pytest.raises(SystemExit) as exc:
            train_main([*base, *extra])
        assert exc.value.code == 2 and message in capsys.readouterr().err, extra
    assert train_main([*base, "--batch", "64", "--no-progress"]) == 2  # 4 frames cannot fill a batch of 64
    assert "fewer than --batch 64" in capsys.readouterr().err


def test_evaluate_command_writes_metrics(tmp_path, tiny_driving_data):
    _run(tmp_path / "run", tiny_driving_data, 2)
    out = tmp_path / "eval.json"
    assert bev_evaluate.main(["--checkpoint", str(tmp_path / "run" / "checkpoint.pt"), "--data", str(tiny_driving_data),
                              "--out", str(out), "--figure", str(tmp_path / "eval.png")]) == 0
    result = json.loads(out.read_text())
    assert result["frames"] == 4 and result["step"] == 2
    assert set(result["map"]["best_iou"]) == set(BevConfig.tiny().map_classes)
    assert set(result["detection"]["ap"]["car"]) == {"0.5", "1.0", "2.0", "4.0"}
    assert result["command"].startswith("python -m ocgs_ros.bev.evaluate")
    assert (tmp_path / "eval.png").stat().st_size > 0


def test_corrupt_and_mismatched_checkpoints_raise_clear_errors(tmp_path):
    model = BevFusionModel(BevConfig.tiny())
    good = save_checkpoint(tmp_path / "good.pt", model, step=3)
    data = good.read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_checkpoint(truncated)
    with pytest.raises(CheckpointError, match="file not found"):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_checkpoint(tmp_path / "empty.pt")
    torch.save({"format": "ocgs_ros.gocl", "state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not an ocgs_ros BEV checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    payload = torch.load(good, weights_only=True)
    payload["config"]["shared_channels"] = 24  # weights were made for 16
    torch.save(payload, tmp_path / "mismatch.pt")
    with pytest.raises(CheckpointError, match="weights do not match"):
        load_checkpoint(tmp_path / "mismatch.pt")
    loaded, cfg, meta = load_checkpoint(good)
    assert meta["step"] == 3 and cfg == model.cfg and not loaded.training
    np.testing.assert_array_equal(loaded.fuser[0].weight.detach().numpy(), model.fuser[0].weight.detach().numpy())


def test_torchrun_ddp_two_processes_on_cpu(tmp_path, tiny_driving_data):
    """Two gloo ranks through torch.distributed (torchrun); rank 0 writes the run folder."""
    out, logs = tmp_path / "ddp", tmp_path / "torchrun_logs"
    done = run_torchrun("ocgs_ros.bev.train", ["--data", str(tiny_driving_data), "--out", str(out), "--preset", "tiny",
                                               "--steps", "2", "--batch", "1", "--no-progress"], logs)
    assert done.returncode == 0, torchrun_failure(done, logs)
    run = json.loads((out / "config.json").read_text())["run"]
    assert run["world_size"] == 2
    assert load_checkpoint(out / "checkpoint.pt")[2]["step"] == 2
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2
