"""Task losses of the BEV model: detection (heatmap focal + box L1) and map segmentation (focal).

Each task's loss is one scalar so the gradient calibrator can treat the two tasks separately.
"""
from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from .config import BevConfig


def gaussian_focal_loss(logits: Tensor, target: Tensor, alpha: float = 2.0, beta: float = 4.0) -> Tensor:
    """CenterNet's penalty-reduced focal loss on a Gaussian-splatted heatmap, per positive.

    Positives are cells with target 1 (the box centres): ``-(1 - p)^alpha log p``. Every other
    cell is a negative down-weighted near a centre: ``-(1 - t)^beta p^alpha log(1 - p)``. The
    sum is divided by the number of positives (at least 1).
    """
    if logits.shape != target.shape:
        raise ValueError(f"heatmap logits {tuple(logits.shape)} and target {tuple(target.shape)} differ")
    prob = logits.sigmoid()
    positive = target >= 1.0 - 1e-6
    log_p, log_not_p = F.logsigmoid(logits), F.logsigmoid(-logits)
    pos_loss = ((1 - prob) ** alpha * log_p)[positive].sum()
    neg_loss = ((1 - target) ** beta * prob ** alpha * log_not_p)[~positive].sum()
    return -(pos_loss + neg_loss) / positive.sum().clamp(min=1)


def masked_l1_loss(pred: Tensor, target: Tensor, mask: Tensor, code_weights: Tensor) -> Tensor:
    """Weighted L1 over the channels of ``[B, C, H, W]`` maps at the ``mask [B, H, W]`` cells, per cell."""
    if pred.shape != target.shape or mask.shape != (pred.shape[0],) + pred.shape[2:]:
        raise ValueError(f"regression shapes disagree: pred {tuple(pred.shape)}, target {tuple(target.shape)}, "
                         f"mask {tuple(mask.shape)}")
    diff = (pred - target).abs() * code_weights.view(1, -1, 1, 1)
    return (diff.sum(1) * mask).sum() / mask.sum().clamp(min=1)


def sigmoid_focal_loss(logits: Tensor, target: Tensor, alpha: float = 0.25, gamma: float = 2.0) -> Tensor:
    """Per-class sigmoid focal loss averaged over cells and summed over classes (``[B, K, H, W]``)."""
    if logits.shape != target.shape:
        raise ValueError(f"map logits {tuple(logits.shape)} and target {tuple(target.shape)} differ")
    target = target.to(logits.dtype)
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = prob * target + (1 - prob) * (1 - target)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = loss * (alpha * target + (1 - alpha) * (1 - target))
    return loss.mean(dim=(0, 2, 3)).sum()


def task_losses(outputs: Mapping[str, Tensor], targets: Mapping[str, Tensor], cfg: BevConfig
                ) -> tuple[dict[str, Tensor], dict[str, float]]:
    """``({"detection": L_det, "map": L_map}, logged components)`` for one batch.

    ``outputs`` needs ``heatmap``, ``regression``, ``map_logits``; ``targets`` needs ``heatmap``,
    ``regression``, ``regression_mask`` (from ``encode_targets``/``collate_targets``) and ``map``
    ``[B, 6, map_rows, map_cols]`` (0/1).
    """
    missing = [k for k in ("heatmap", "regression", "regression_mask", "map") if k not in targets]
    if missing:
        raise KeyError(f"targets lack {missing}")
    device = outputs["heatmap"].device
    heat = gaussian_focal_loss(outputs["heatmap"], targets["heatmap"].to(device))
    code_weights = torch.tensor(cfg.regression_code_weights, dtype=outputs["regression"].dtype, device=device)
    reg = masked_l1_loss(outputs["regression"], targets["regression"].to(device),
                         targets["regression_mask"].to(device), code_weights)
    seg = sigmoid_focal_loss(outputs["map_logits"], targets["map"].to(device), cfg.map_focal_alpha, cfg.map_focal_gamma)
    losses = {
        "detection": cfg.heatmap_weight * heat + cfg.regression_weight * reg,
        "map": cfg.map_weight * seg,
    }
    logged = {"heatmap": float(heat.detach()), "regression": float(reg.detach()), "map": float(seg.detach())}
    return losses, logged
