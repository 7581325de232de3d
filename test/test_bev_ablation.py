"""The ablation reuses a cached arm only when it finished with an equal config and a sound checkpoint."""
from __future__ import annotations

import dataclasses
import types

import pytest
import torch

from ocgs_ros.bev import ablation
from ocgs_ros.bev.config import BevConfig
from ocgs_ros.bev.data import sim_dataset
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
    args = types.SimpleNamespace(work="w", steps=560, batch=2, threads=1)
    full = ablation.arm_config("full_cal", 0, args, "train", "val")
    naive = ablation.arm_config("sum", 0, args, "train", "val")
    differing = {k for k, v in full.to_dict().items() if naive.to_dict()[k] != v}
    assert differing == {"out", "calibration", "modality_cal"}
    assert (full.calibration, full.modality_cal, naive.calibration, naive.modality_cal) == ("mgc", True, "sum", False)
    assert full.steps == full.checkpoint_every == 560 and full.preset == ablation.PRESET
