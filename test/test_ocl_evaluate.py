"""GOCL evaluation command: JSON keys, baseline path, figures (tiny models trained for a few steps)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from ocgs_ros.ocl import GoclSegmenter, load_checkpoint
from ocgs_ros.ocl.data import GoclViewDataset, ensure_gocl_dataset
from ocgs_ros.ocl.evaluate import evaluate_model, example_indices, main as evaluate_main
from ocgs_ros.ocl.metrics import GoclMetricAccumulator
from ocgs_ros.ocl.train import main as train_main

torch.set_num_threads(1)
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_gocl_train_data) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("gocl_eval")
    train = tiny_gocl_train_data
    heldout = ensure_gocl_dataset(root / "heldout", 3, seed=1, width=32, height=32, views_per_scene=2,
                                  progress=False)
    common = ["--data", str(train), "--preset", "tiny", "--steps", "4", "--batch", "3", "--threads", "1",
              "--log-every", "2", "--checkpoint-every", "2", "--snapshot-every", "2", "--no-progress"]
    train_main([*common, "--out", str(root / "gocl")])
    train_main([*common, "--out", str(root / "baseline"), "--no-codebook"])
    return {"root": root, "train": train, "heldout": heldout, "gocl": root / "gocl", "baseline": root / "baseline"}


def test_evaluate_command_writes_json_and_figures(trained):
    root = trained["root"]
    out, figure, curve = root / "results" / "gocl.json", root / "results" / "examples.png", root / "curve.png"
    argv = ["--checkpoint", str(trained["gocl"] / "checkpoint.pt"), "--data", str(trained["heldout"]),
            "--baseline-checkpoint", str(trained["baseline"] / "checkpoint.pt"), "--out", str(out),
            "--figure", str(figure), "--examples", "4", "--curve-dir", str(trained["gocl"] / "snapshots"),
            "--baseline-curve-dir", str(trained["baseline"] / "snapshots"), "--curve-figure", str(curve),
            "--batch", "4"]
    assert evaluate_main(argv) == 0
    result = json.loads(out.read_text())
    for key in ("fg_ari", "miou", "codebook_consistency", "nmi", "baseline_no_codebook_consistency",
                "num_heldout_scenes", "checkpoint", "command", "identification_accuracy", "background_iou",
                "foreground_iou", "baseline_no_codebook_nmi", "codebook_consistency_per_kind"):
        assert key in result, key
    assert result["num_heldout_scenes"] == 3 and result["num_heldout_images"] == 6
    assert result["heldout_dataset"]["seed"] == 1 and result["checkpoint_step"] == 4
    for key in ("codebook_consistency", "nmi", "baseline_no_codebook_consistency", "background_iou"):
        assert 0.0 <= result[key] <= 1.0, key
    assert result["baseline_no_codebook"]["checkpoint_step"] == 4
    assert "--baseline-checkpoint" in result["command"]
    assert [p["step"] for p in result["learning_curve"]] == [2, 4]
    assert [p["step"] for p in result["baseline_learning_curve"]] == [2, 4]
    for path in (figure, curve):
        assert path.read_bytes()[:8] == PNG


def test_evaluate_matches_a_direct_metric_computation(trained):
    """The command's numbers are the metric module applied to the segmenter's output, view by view."""
    model, _, _ = load_checkpoint(trained["gocl"] / "checkpoint.pt")
    dataset = GoclViewDataset(trained["heldout"])
    summary, examples = evaluate_model(model, dataset, batch_size=4, keep_examples=2)
    reference = GoclMetricAccumulator()
    segmenter = GoclSegmenter(model)
    for i in range(len(dataset)):
        item = dataset[i]
        result = segmenter.segment(item["image"][None])
        reference.add_image(result.masks[0], result.slot_codebook_ids[0], item["instance"], item["kind"])
    expected = reference.summary()
    for key in ("fg_ari", "miou", "codebook_consistency", "nmi"):
        a, b = summary[key], expected[key]
        assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, abs=1e-6), key
    assert examples["image"].shape[0] == 2 and examples["masks"].shape[1] == model.config.num_slots


def test_baseline_identity_is_the_slot_index(trained):
    model, config, _ = load_checkpoint(trained["baseline"] / "checkpoint.pt")
    images = torch.stack([GoclViewDataset(trained["heldout"])[i]["image"] for i in range(2)])
    ids = GoclSegmenter(model).segment(images).slot_codebook_ids
    expected = torch.cat([torch.tensor([-1]), torch.arange(config.num_object_slots)])
    assert torch.equal(ids, expected.expand(2, -1))


def test_example_indices_take_two_views_per_scene(trained):
    dataset = GoclViewDataset(trained["heldout"])
    picks = example_indices(dataset, 4)
    assert [(int(dataset.scene_index[i]), int(dataset.view_index[i])) for i in picks] == [(0, 0), (0, 1), (1, 0), (1, 1)]


def test_evaluate_refuses_swapped_checkpoints(trained, tmp_path):
    with pytest.raises(ValueError, match="no-codebook"):
        evaluate_main(["--checkpoint", str(trained["baseline"] / "checkpoint.pt"), "--data",
                       str(trained["heldout"]), "--out", str(tmp_path / "a.json")])
    with pytest.raises(ValueError, match="uses the codebook"):
        evaluate_main(["--checkpoint", str(trained["gocl"] / "checkpoint.pt"), "--data", str(trained["heldout"]),
                       "--baseline-checkpoint", str(trained["gocl"] / "checkpoint.pt"),
                       "--out", str(tmp_path / "b.json")])
    assert not (tmp_path / "b.json").exists()


def test_metrics_are_nan_free_json(trained, tmp_path):
    out = tmp_path / "r.json"
    evaluate_main(["--checkpoint", str(trained["gocl"] / "checkpoint.pt"), "--data", str(trained["heldout"]),
                   "--out", str(out)])
    text = out.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text)["baseline_no_codebook_consistency"] is None  # no baseline given
    assert np.isfinite(json.loads(text)["background_iou"])
