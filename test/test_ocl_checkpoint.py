"""GOCL checkpoint round trip and every unusable-checkpoint case -> CheckpointError."""
from __future__ import annotations

import pickle

import pytest
import torch

from ocgs_ros.ocl import (CheckpointError, GoclConfig, GoclModel, GoclSegmenter, build_optimizer,
                          load_checkpoint, save_checkpoint, train_step)

torch.set_num_threads(1)


@pytest.fixture
def trained(tmp_path):
    """A tiny model after two optimiser steps, saved with its optimiser; returns (model, opt, path)."""
    torch.manual_seed(0)
    config = GoclConfig.tiny()
    model = GoclModel(config)
    optimizer = build_optimizer(model)
    images = torch.rand(2, 3, 32, 32)
    for step in range(2):
        train_step(model, optimizer, images, step)
    path = tmp_path / "gocl.pt"
    save_checkpoint(path, model, config, optimizer=optimizer, step=2, extra={"dataset": "synthetic", "loss": 0.5})
    return model, optimizer, path


def _rewrite(path, edit):
    """Load the raw payload, apply ``edit`` to it and save it back (simulates foreign files)."""
    payload = torch.load(path, weights_only=True)
    edit(payload)
    torch.save(payload, path)


def test_round_trip_gives_identical_outputs(trained):
    model, optimizer, path = trained
    loaded, config, meta = load_checkpoint(path)
    assert config == model.config
    assert not loaded.training
    assert meta["step"] == 2 and meta["extra"] == {"dataset": "synthetic", "loss": 0.5}
    images = torch.rand(3, 3, 32, 32)
    before, after = GoclSegmenter(model).segment(images), GoclSegmenter(loaded).segment(images)
    assert torch.equal(before.masks, after.masks)
    assert torch.equal(before.slot_codebook_ids, after.slot_codebook_ids)
    assert torch.equal(before.pixel_codebook_logits, after.pixel_codebook_logits)
    # Collapse-guard statistics travel with the weights.
    assert torch.equal(loaded.codebook.usage_ema, model.codebook.usage_ema)
    # The optimiser state resumes.
    resumed = build_optimizer(loaded)
    resumed.load_state_dict(meta["optimizer"])
    assert resumed.state_dict()["state"].keys() == optimizer.state_dict()["state"].keys()


def test_save_is_atomic_and_overwrites(trained, tmp_path):
    model, _, path = trained
    save_checkpoint(path, model, step=5)
    assert load_checkpoint(path)[2]["step"] == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gocl.pt"]  # no temp files left behind


def test_save_rejects_config_that_differs_from_model(trained, tmp_path):
    model, _, _ = trained
    with pytest.raises(ValueError, match="differs"):
        save_checkpoint(tmp_path / "x.pt", model, GoclConfig.tiny(codebook_size=9))


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")


def test_empty_file(tmp_path):
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_checkpoint(tmp_path / "empty.pt")


def test_truncated_file(trained):
    _, _, path = trained
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated, corrupt"):
        load_checkpoint(path)


def test_garbage_bytes(tmp_path):
    path = tmp_path / "garbage.pt"
    path.write_bytes(b"this is not a checkpoint at all" * 10)
    with pytest.raises(CheckpointError, match="truncated, corrupt"):
        load_checkpoint(path)


class _Arbitrary:  # an object the safe (weights_only) unpickler must refuse
    pass


def test_file_with_arbitrary_python_objects_is_refused(tmp_path):
    path = tmp_path / "pickled.pt"
    torch.save({"format": "ocgs_ros.gocl", "payload": _Arbitrary()}, path, pickle_module=pickle)
    with pytest.raises(CheckpointError, match="plain data"):
        load_checkpoint(path)


def test_not_our_format(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"model": {"weight": torch.zeros(2)}}, path)
    with pytest.raises(CheckpointError, match="not an ocgs_ros GOCL checkpoint"):
        load_checkpoint(path)
    torch.save(torch.zeros(3), path)
    with pytest.raises(CheckpointError, match="not an ocgs_ros GOCL checkpoint"):
        load_checkpoint(path)


def test_wrong_model_kind(trained):
    _, _, path = trained
    _rewrite(path, lambda p: p.update(model_kind="BevModel"))
    with pytest.raises(CheckpointError, match="model kind 'BevModel'"):
        load_checkpoint(path)


def test_newer_format_version(trained):
    _, _, path = trained
    _rewrite(path, lambda p: p.update(format_version=99))
    with pytest.raises(CheckpointError, match="format version 99"):
        load_checkpoint(path)


def test_incomplete_payload(trained):
    _, _, path = trained
    _rewrite(path, lambda p: p.pop("state_dict"))
    with pytest.raises(CheckpointError, match="missing entries \\['state_dict'\\]"):
        load_checkpoint(path)


def test_invalid_config(trained):
    _, _, path = trained
    _rewrite(path, lambda p: p["config"].update(num_slotz=3))
    with pytest.raises(CheckpointError, match="invalid config.*num_slotz"):
        load_checkpoint(path)


def test_shape_mismatch_between_config_and_weights(trained):
    _, _, path = trained
    _rewrite(path, lambda p: p["config"].update(codebook_size=12))
    with pytest.raises(CheckpointError, match=r"shape mismatch codebook\.prototypes: file \[8, 32\] vs config \[12, 32\]"):
        load_checkpoint(path)


def test_missing_and_unexpected_keys(trained):
    _, _, path = trained

    def edit(payload):
        payload["state_dict"].pop("codebook.prototypes")
        payload["state_dict"]["extra_head.weight"] = torch.zeros(1)

    _rewrite(path, edit)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert "missing keys ['codebook.prototypes']" in message
    assert "unexpected keys ['extra_head.weight']" in message
    assert str(path) in message


def test_export_keeps_weights_and_provenance_and_drops_resume_state(trained, tmp_path):
    from ocgs_ros.ocl.export import export_checkpoint

    model, _, path = trained
    payload = torch.load(path, weights_only=True)
    payload["extra"].update(command="--steps 2", seed=0, rng_states=[{"torch": torch.zeros(4)}])
    torch.save(payload, path)
    summary = export_checkpoint(path, tmp_path / "shipped.pt", note="test")
    shipped = torch.load(tmp_path / "shipped.pt", weights_only=True)
    assert shipped["optimizer"] is None and "rng_states" not in shipped["extra"]
    assert shipped["extra"]["command"] == "--steps 2" and shipped["extra"]["source_checkpoint"] == str(path)
    assert summary["step"] == 2 and (tmp_path / "shipped.pt").stat().st_size < path.stat().st_size
    loaded, _, _ = load_checkpoint(tmp_path / "shipped.pt")
    images = torch.rand(2, 3, 32, 32)
    assert torch.equal(GoclSegmenter(model).segment(images).pixel_codebook_logits,
                       GoclSegmenter(loaded).segment(images).pixel_codebook_logits)


def test_export_refuses_a_model_without_codebook(tmp_path):
    from ocgs_ros.ocl.export import export_checkpoint

    baseline = GoclModel(GoclConfig.tiny(use_codebook=False))
    save_checkpoint(tmp_path / "baseline.pt", baseline)
    with pytest.raises(ValueError, match="no codebook"):
        export_checkpoint(tmp_path / "baseline.pt", tmp_path / "out.pt")
    assert not (tmp_path / "out.pt").exists()
