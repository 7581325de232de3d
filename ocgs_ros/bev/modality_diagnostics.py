"""Where the modality imbalance is: per-branch gradient norms per task, and per-branch contribution.

Two measurements on a trained model (issue 18's modality-level question):

* :func:`branch_gradient_norms` -- the gradient each task sends into each modality branch (at the
  fuser inputs, camera BEV and LiDAR BEV), one backward per task, mean over batches. The
  modality level of :mod:`.gradcal` rescales the *combined* gradient there; this says which task
  makes up which branch's gradient.
* :func:`branch_contribution` -- detection mAP and map mIoU with one branch's BEV feature replaced
  by zeros at evaluation: what each task actually takes from each modality.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from .config import TASKS
from .data import BevSampleDataset
from .evaluate import evaluate_model
from .frames import collate_samples
from .losses import task_losses
from .model import MODALITIES, BevFusionModel


def branch_gradient_norms(model: BevFusionModel, dataset: BevSampleDataset, batches: int = 8,
                          batch_size: int = 2, seed: int = 0) -> dict[str, dict[str, float]]:
    """``{task: {modality: mean ||dL_task / d feature_modality||}}`` over random training batches.

    The model is put in eval mode (BatchNorm running statistics, no update of them); weights are
    not changed.
    """
    was_training = model.training
    model.eval()
    rng = np.random.default_rng(seed)
    sums = {t: {m: 0.0 for m in MODALITIES} for t in TASKS}
    try:
        for _ in range(batches):
            picks = rng.choice(len(dataset), min(batch_size, len(dataset)), replace=False)
            inputs, targets, _ = collate_samples([dataset[int(i)] for i in picks])
            out = model(inputs)
            features = out.modality_features()
            losses, _ = task_losses(out, targets, model.cfg)
            for task in TASKS:
                grads = torch.autograd.grad(losses[task], [features[m] for m in MODALITIES], retain_graph=True)
                for name, grad in zip(MODALITIES, grads):
                    sums[task][name] += float(grad.norm()) / batches
    finally:
        model.train(was_training)
    return sums


def branch_contribution(model: BevFusionModel, dataset: BevSampleDataset,
                        tasks: Sequence[str] = TASKS) -> dict[str, dict[str, Any]]:
    """mAP / mIoU of ``model`` on ``dataset`` with both branches, and with each branch zeroed."""
    results = {"both": _scores(evaluate_model(model, dataset, tasks=tasks))}
    branches = {"camera": model.camera, "lidar": model.lidar}
    for name in MODALITIES:
        # A forward hook's return value replaces the module's output: the fuser sees zeros there.
        handle = branches[name].register_forward_hook(lambda _m, _i, output: torch.zeros_like(output))
        try:
            results[f"without_{name}"] = _scores(evaluate_model(model, dataset, tasks=tasks))
        finally:
            handle.remove()
    return results


def _scores(evaluation: dict[str, Any]) -> dict[str, Any]:
    return {"mAP": evaluation["mAP"], "mIoU": evaluation["mIoU"]}
