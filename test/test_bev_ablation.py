"""The ablation reuses a cached arm only when it finished with an equal config and a sound checkpoint."""
from __future__ import annotations

import dataclasses
import types

import pytest
import torch

from ocgs_ros.bev import ablation
from ocgs_ros.bev.config import BevConfig
from ocgs_ros.bev.data import sim_dataset
from ocgs_ros.bev.frames import collate_samples
from ocgs_ros.bev.modality_diagnostics import branch_contribution, branch_gradient_norms
from ocgs_ros.bev.model import BevFusionModel
from ocgs_ros.bev.train import BevTrainConfig
from ocgs_ros.training import CHECKPOINT_NAME

torch.set_num_threads(1)

@pytest.fixture
def counted_training(monkeypatch):
    """The real trainer, counting how often the ablation calls it."""
    calls = []

    def train(config, train_set, val_set):
        calls.append(config)
        return real_train(config, train_set, val_set)

    real_train = ablation.train
    monkeypatch.setattr(ablation, "train", train)
    return calls


def test_arm_is_reused_only_for_an_equal_config_and_a_complete_checkpoint(tmp_path, tiny_driving_data, counted_training):
    sets = [sim_dataset(tiny_driving_data, BevConfig.tiny())] * 2
    config = BevTrainConfig(data=str(tiny_driving_data), val_data=str(tiny_driving_data), out=str(tmp_path / "arm"), preset="tiny",
                            steps=2, batch=2, seed=1, checkpoint_every=2, no_progress=True, device="cpu")
    first = ablation.run_arm("arm", config, *sets)
    assert len(counted_training) == 1 and first["step"] == 2
    assert ablation.run_arm("arm", config, *sets) == first and len(counted_training) == 1  # reused

    changed = dataclasses.replace(config, calibration="sum")  # same folder, other settings
    assert ablation.finished_run(changed) is None
    ablation.run_arm("arm", changed, *sets)
    assert len(counted_training) == 2
    assert ablation.finished_run(config) is None  # the folder now holds the changed run
    assert ablation.finished_run(changed) is not None

    checkpoint = tmp_path / "arm" / CHECKPOINT_NAME
    data = checkpoint.read_bytes()
    checkpoint.write_bytes(data[: len(data) // 2])  # a truncated checkpoint must not count as done
    assert ablation.finished_run(changed) is None
    ablation.run_arm("arm", changed, *sets)
    assert len(counted_training) == 3 and ablation.finished_run(changed) is not None


def test_a_run_stopped_early_is_not_finished(tmp_path, tiny_driving_data, counted_training):
    sets = [sim_dataset(tiny_driving_data, BevConfig.tiny())] * 2
    config = BevTrainConfig(data=str(tiny_driving_data), val_data=str(tiny_driving_data), out=str(tmp_path / "arm"), preset="tiny",
                            steps=3, batch=2, checkpoint_every=1, no_progress=True, device="cpu")
    ablation.train(dataclasses.replace(config, stop_after=1), *sets)  # checkpoint at step 1 of 3
    assert ablation.finished_run(config) is None
    result = ablation.run_arm("arm", config, *sets)
    assert result["step"] == 3 and len(counted_training) == 2


def test_arm_configs_differ_only_in_what_the_arm_names():
    args = types.SimpleNamespace(work="w", steps=560, batch=2, threads=1, beta=0.3, overrides=[])
    full = ablation.arm_config("full_cal", 0, args, "train", "val")
    naive = ablation.arm_config("sum", 0, args, "train", "val")
    differing = {k for k, v in full.to_dict().items() if naive.to_dict()[k] != v}
    assert differing == {"out", "calibration", "partial_beta", "modality_cal"}
    assert (full.calibration, full.partial_beta, full.modality_cal) == ("partial", 0.3, True)
    assert (naive.calibration, naive.partial_beta, naive.modality_cal) == ("sum", 0.0, False)
    assert full.steps == full.checkpoint_every == 560 and full.preset == ablation.PRESET
    # another beta is another run folder for the partial arms, and the same run for the others
    other = types.SimpleNamespace(**{**vars(args), "beta": 0.1})
    assert ablation.arm_config("full_cal", 0, other, "train", "val").out != full.out
    assert ablation.arm_config("sum", 0, other, "train", "val") == naive
    wide = types.SimpleNamespace(**{**vars(args), "overrides": ["shared_channels=64"]})
    assert ablation.arm_config("sum", 0, wide, "train", "val").model_config().shared_channels == 64


def test_bad_ablation_settings_exit_2_with_one_line(capsys):
    for extra, message in ((["--set", "shared_channel=64"], "unknown BevConfig keys ['shared_channel']"),
                           (["--beta", "1.5"], "--beta must be in [0, 1]"),
                           (["--ship", "x.pt", "--split", "val"], "--ship needs the full_cal arm and --split test")):
        assert ablation.main(["--work", "unused", *extra]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err


def test_test_split_is_evaluated_once_per_finished_run(tmp_path, tiny_driving_data, monkeypatch):
    dataset = sim_dataset(tiny_driving_data, BevConfig.tiny())
    config = BevTrainConfig(data=str(tiny_driving_data), val_data=str(tiny_driving_data), out=str(tmp_path / "arm"),
                            preset="tiny", steps=2, batch=2, checkpoint_every=2, no_progress=True, device="cpu")
    ablation.run_arm("arm", config, dataset, dataset)
    calls = []
    real = ablation.evaluate_model
    monkeypatch.setattr(ablation, "evaluate_model", lambda *a, **k: calls.append(1) or real(*a, **k))
    first = ablation.test_evaluation(config, dataset)
    assert first["train_config"] == config.to_dict() and "mAP" in first and len(calls) == 1
    assert ablation.test_evaluation(config, dataset) == first and len(calls) == 1  # reused
    ablation.run_arm("arm", dataclasses.replace(config, calibration="partial"), dataset, dataset)
    ablation.test_evaluation(dataclasses.replace(config, calibration="partial"), dataset)
    assert len(calls) == 2  # a new run in the folder is evaluated again


def test_verdict_names_each_missed_target():
    def arm(m, i):
        return {"map_mean": m, "map_std": 0.01, "miou_mean": i, "miou_std": 0.01}

    arms = {"sum": arm(0.70, 0.30), "single_seg": arm(None, 0.45), "full_cal": arm(0.71, 0.46)}
    assert ablation.verdict(arms).startswith("`full_cal` meets every target")
    arms["full_cal"] = arm(0.65, 0.38)
    text = ablation.verdict(arms)
    assert "misses: mAP ≥ `sum`'s; mIoU ≥ `sum`'s + 10 points; mIoU ≥ `single_seg`'s" in text


def test_modality_diagnostics_measure_each_branch_and_leave_the_model_as_it_was(tiny_driving_data):
    cfg = BevConfig.tiny()
    dataset = sim_dataset(tiny_driving_data, cfg)
    torch.manual_seed(0)
    model = BevFusionModel(cfg).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    norms = branch_gradient_norms(model, dataset, batches=2)
    assert set(norms) == {"detection", "map"} and all(set(n) == {"camera", "lidar"} for n in norms.values())
    assert all(0 < v < float("inf") for n in norms.values() for v in n.values())
    contribution = branch_contribution(model, dataset)
    assert set(contribution) == {"both", "without_camera", "without_lidar"}
    assert model.training  # the mode it came in with
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # no step, no BN update
    # the zeroing hook is gone: the branch output is the real one again
    inputs, _, _ = collate_samples([dataset[0]])
    model.eval()
    with torch.no_grad():
        assert model.camera(inputs.images, inputs.intrinsics, inputs.cam_to_ego).abs().sum() > 0
        # zeroing the LiDAR branch changes what the model predicts (the measurement is not a no-op)
        plain = model(inputs).map_logits
        handle = model.lidar.register_forward_hook(lambda _m, _i, out: torch.zeros_like(out))
        zeroed = model(inputs).map_logits
        handle.remove()
    assert not torch.allclose(plain, zeroed)
