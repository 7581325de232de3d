"""The GOCL checkpoint shipped in the package: loads safely and segments unseen simulated scenes.

A regression guard, not the evaluation (that is ``python -m ocgs_ros.ocl.evaluate``, on 200
held-out scenes, in docs/results/gocl.json): on a few scenes of a seed never used for training,
the shipped model must separate objects far better than an untrained model of the same config.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ocgs_ros.models import GOCL_TABLETOP, shipped_checkpoint
from ocgs_ros.ocl import GoclModel, GoclSegmenter, load_checkpoint
from ocgs_ros.ocl.data import GoclViewDataset, ensure_gocl_dataset
from ocgs_ros.ocl.metrics import foreground_ari

torch.set_num_threads(1)
UNSEEN_SEED = 12345  # neither the training (0) nor the held-out (1) dataset seed


@pytest.fixture(scope="module")
def unseen_views(tmp_path_factory):
    root = ensure_gocl_dataset(tmp_path_factory.mktemp("gocl_unseen"), num_scenes=6, seed=UNSEEN_SEED,
                               views_per_scene=2, progress=False)
    return GoclViewDataset(root)


def _mean_fg_ari(model: GoclModel, dataset: GoclViewDataset) -> float:
    images = torch.stack([dataset[i]["image"] for i in range(len(dataset))])
    result = GoclSegmenter(model).segment(images)
    scores = [foreground_ari(result.masks[i].numpy(), dataset[i]["instance"].numpy())
              for i in range(len(dataset))]
    return float(np.nanmean(scores))


def test_shipped_checkpoint_is_small_and_loads_with_weights_only():
    path = shipped_checkpoint("gocl")
    assert path == GOCL_TABLETOP and path.stat().st_size < 25 * 2 ** 20
    payload = torch.load(path, weights_only=True)
    assert payload["optimizer"] is None and payload["config"]["use_codebook"] is True
    model, config, meta = load_checkpoint(path)
    assert meta["step"] > 0 and "command" in meta["extra"]
    assert config.image_height == config.image_width == 48


def test_shipped_model_segments_unseen_scenes_far_better_than_untrained(unseen_views):
    model, config, _ = load_checkpoint(GOCL_TABLETOP)
    torch.manual_seed(0)
    untrained = GoclModel(config).eval()
    trained_score, untrained_score = _mean_fg_ari(model, unseen_views), _mean_fg_ari(untrained, unseen_views)
    assert trained_score > 0.4 and trained_score > untrained_score + 0.25, (trained_score, untrained_score)


def test_shipped_model_identities_are_deterministic(unseen_views):
    model, _, _ = load_checkpoint(GOCL_TABLETOP)
    images = torch.stack([unseen_views[i]["image"] for i in range(4)])
    first, second = GoclSegmenter(model).segment(images), GoclSegmenter(model).segment(images)
    assert torch.equal(first.slot_codebook_ids, second.slot_codebook_ids)
    assert torch.equal(first.pixel_codebook_logits, second.pixel_codebook_logits)
