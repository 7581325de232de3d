"""The codebook warm-up of GOCL training: train without quantisation first, then switch it on.

For ``codebook_warmup_steps`` steps the model runs without the codebook (as the no-codebook
baseline); at that step the prototypes are initialised by k-means of the slots' intrinsic features
and the run continues under the target config at ``codebook_lr_scale`` times the learning rates.
Why: with random prototypes the Gumbel samples hand the decoder near-random codes and short CPU
runs never discovered objects (ocl/config.py, docs/results/gocl.md).
"""
from __future__ import annotations

import dataclasses

import torch
from scipy.cluster.vq import kmeans2

from .config import GoclConfig
from .data import GoclViewDataset
from .model import BACKGROUND_SLOT, GoclModel
from .optim import build_optimizer

KMEANS_IMAGES = 512  # views whose slot features seed the prototypes (deterministic: the first ones)
KMEANS_SEED = 0


def phase_config(config: GoclConfig, step: int) -> GoclConfig:
    """The config the model runs with at ``step``: without quantisation during the codebook
    warm-up (``codebook_warmup_steps``), the target config afterwards."""
    if config.use_codebook and step < config.codebook_warmup_steps:
        return dataclasses.replace(config, use_codebook=False)
    return config


def phase_learning_rates(config: GoclConfig, step: int) -> dict[str, float]:
    """Base learning rates of the optimiser groups at ``step`` (scaled after a codebook warm-up)."""
    scale = 1.0
    if config.use_codebook and config.codebook_warmup_steps > 0 and step >= config.codebook_warmup_steps:
        scale = config.codebook_lr_scale
    return {"encoder": config.lr_encoder * scale, "decoder": config.lr_decoder * scale}


def set_base_learning_rates(optimizer: torch.optim.Optimizer, rates: dict[str, float]) -> None:
    for group in optimizer.param_groups:
        if group.get("name") in rates:
            group["base_lr"] = rates[group["name"]]


@torch.no_grad()
def collect_slot_features(model: GoclModel, dataset: GoclViewDataset, count: int, device: torch.device,
                          batch_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Intrinsic features ``[N, Di]`` and mask mass ``[N]`` of every object slot over the first
    ``count`` views (eval mode, no flips: identical on every rank and on resume)."""
    was_training = model.training
    model.eval()
    features, masses = [], []
    try:
        for first in range(0, min(count, len(dataset)), batch_size):
            rows = range(first, min(first + batch_size, count, len(dataset)))
            images = dataset.rgb[list(rows)].permute(0, 3, 1, 2).float().div(255.0).to(device)
            output = model(images)
            features.append(output.intrinsic_features.reshape(-1, model.config.intrinsic_dim).cpu())
            masses.append(output.masks[:, BACKGROUND_SLOT + 1:].mean(dim=(-2, -1)).reshape(-1).cpu())
    finally:
        model.train(was_training)
    return torch.cat(features), torch.cat(masses)


def kmeans_prototypes(features: torch.Tensor, num_prototypes: int, seed: int = KMEANS_SEED) -> torch.Tensor:
    """``num_prototypes`` k-means++ centres of ``features`` (scipy), float32 ``[M, Di]``."""
    data = features.double().numpy()
    if data.shape[0] < num_prototypes:
        raise ValueError(f"k-means needs >= {num_prototypes} slot features, got {data.shape[0]}")
    centres, _ = kmeans2(data, num_prototypes, minit="++", seed=seed, iter=25)
    return torch.from_numpy(centres).float()


def switch_on_codebook(model: GoclModel, optimizer: torch.optim.Optimizer, config: GoclConfig,
                       dataset: GoclViewDataset, device: torch.device
                       ) -> tuple[GoclModel, torch.optim.Optimizer, dict[str, float]]:
    """End of the warm-up: same weights under the codebook config, prototypes = k-means centres
    of the slots' intrinsic features; the optimiser state carries over (same parameter order)."""
    features, masses = collect_slot_features(model, dataset, KMEANS_IMAGES, device)
    target = GoclModel(config).to(device)
    target.load_state_dict(model.state_dict())
    target.codebook.prototypes.data.copy_(kmeans_prototypes(features, config.codebook_size).to(device))
    target.train()
    new_optimizer = build_optimizer(target)
    new_optimizer.load_state_dict(optimizer.state_dict())
    set_base_learning_rates(new_optimizer, phase_learning_rates(config, config.codebook_warmup_steps))
    info = {"kmeans_features": float(features.shape[0]),
            "kmeans_present_slots": float((masses > 1e-3).sum())}
    return target, new_optimizer, info
