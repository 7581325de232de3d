"""The BEV checkpoints shipped in the package: load safely and perceive unseen simulated drives.

A regression guard, not the evaluation (that is the ablation for the one-camera model,
docs/results/bev_ablation.json, and ``python -m ocgs_ros.bev.evaluate --summary`` for the surround
model, docs/results/bev_surround.json): on a few scenes of a seed never used for training or
evaluation, each shipped model must detect and segment far better than an untrained model of the
same config, and above floors set well under its published figures, so a model that lost its
quality (or random weights) fails.
"""
from __future__ import annotations

import pytest
import torch

from ocgs_ros.bev.ablation import SIM_CONFIG, TRAIN_STRIDE
from ocgs_ros.bev.checkpoint import load_checkpoint, read_checkpoint
from ocgs_ros.bev.data import driving_dataset
from ocgs_ros.bev.evaluate import evaluate_model
from ocgs_ros.bev.model import BevFusionModel
from ocgs_ros.bev.nuscenes import export_simulated_scenes
from ocgs_ros.models import shipped_checkpoint
from ocgs_ros.sim.dataset import write_driving_dataset
from ocgs_ros.sim.driving import surround_config

torch.set_num_threads(1)
UNSEEN_SEED = 54321  # no training, validation or test set of either model uses it

# Floors, far under the published figures (bev_ablation.json full_cal, bev_surround.json) so that
# seed spread on a few scenes does not trip them, and far over an untrained model (mAP ~0, mIoU of
# a constant guess ~0.1).
FLOORS = {"bev": {"mAP": 0.35, "mIoU": 0.25}, "bev_surround": {"mAP": 0.30, "mIoU": 0.25}}
MARGIN = 0.2  # over the untrained model of the same config, on each metric


def _unseen_front_camera_set(root):
    write_driving_dataset(root, 4, 4, seed=UNSEEN_SEED, config=SIM_CONFIG, frame_stride=TRAIN_STRIDE)
    return root


def _unseen_surround_set(root):
    export_simulated_scenes(root, 3, 4, seed=UNSEEN_SEED, config=surround_config(256, 144),
                            frame_stride=TRAIN_STRIDE, staggered_cameras=True)
    return root


UNSEEN_SETS = {"bev": _unseen_front_camera_set, "bev_surround": _unseen_surround_set}


@pytest.fixture(scope="module", params=sorted(UNSEEN_SETS))
def shipped(request, tmp_path_factory):
    name = request.param
    path = shipped_checkpoint(name)
    model, config, meta = load_checkpoint(path)
    dataset = driving_dataset(UNSEEN_SETS[name](tmp_path_factory.mktemp(name)), config)
    return name, path, model, config, meta, dataset


def _scores(model: BevFusionModel, dataset) -> tuple[float, float]:
    metrics = evaluate_model(model, dataset)
    return float(metrics["mAP"]), float(metrics["mIoU"])


def test_shipped_checkpoint_is_small_loads_with_weights_only_and_names_its_command(shipped):
    name, path, _, config, meta, _ = shipped
    assert path.stat().st_size < 25 * 2 ** 20
    payload = read_checkpoint(path)
    assert payload["optimizer"] is None, "a shipped model carries no optimiser state"
    assert meta["step"] > 0 and meta["extra"].get("produced_by"), "a shipped model names the command that made it"
    assert config.num_cameras == (6 if name == "bev_surround" else 1)


def test_shipped_model_detects_and_segments_unseen_drives_far_better_than_untrained(shipped):
    name, _, model, config, _, dataset = shipped
    torch.manual_seed(0)
    untrained = BevFusionModel(config).eval()
    (trained_map, trained_miou), (raw_map, raw_miou) = _scores(model, dataset), _scores(untrained, dataset)
    floors = FLOORS[name]
    figures = dict(trained_mAP=trained_map, trained_mIoU=trained_miou, untrained_mAP=raw_map, untrained_mIoU=raw_miou)
    assert trained_map >= floors["mAP"] and trained_map >= raw_map + MARGIN, figures
    assert trained_miou >= floors["mIoU"] and trained_miou >= raw_miou + MARGIN, figures
