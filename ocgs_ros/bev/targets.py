"""CenterPoint-style detection targets and their inverse, box decoding with circle NMS.

A box ``[x, y, z, l, w, h, yaw, vx, vy]`` of class ``k`` whose centre falls in detection-grid
cell ``(row, col)`` is encoded as

* a Gaussian bump on heatmap channel ``k`` peaking at 1.0 on ``(row, col)``, radius from the
  box footprint (CornerNet/CenterPoint rule, ``gaussian_overlap``, at least
  ``min_gaussian_radius`` cells), sigma = (2r + 1) / 6;
* regression at ``(row, col)``: ``[x/res - x_min/res - row, y/res - y_min/res - col, z,
  log l, log w, log h, sin yaw, cos yaw, vx, vy]`` (offsets are in cells, in ``[0, 1)``).

``decode_detections`` inverts this exactly, so encoding ground truth and decoding "perfect" head
outputs returns the ground truth (up to float rounding) as long as no two boxes share a cell.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .config import REGRESSION_CHANNELS, BevConfig

BOX_DIM = 9


def gaussian_radius(length_cells: Tensor, width_cells: Tensor, min_overlap: float) -> Tensor:
    """Largest centre displacement (cells) keeping IoU >= ``min_overlap`` with the true box.

    The three cases of CornerNet's rule (both corners shifted inwards, outwards, or one each);
    CenterPoint applies it to the BEV footprint.
    """
    height, width = length_cells, width_cells
    b1 = height + width
    c1 = width * height * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + torch.sqrt(b1 ** 2 - 4 * c1)) / 2
    b2 = 2 * (height + width)
    c2 = (1 - min_overlap) * width * height
    r2 = (b2 + torch.sqrt(b2 ** 2 - 16 * c2)) / 2
    a3 = 4 * min_overlap
    b3 = -2 * min_overlap * (height + width)
    c3 = (min_overlap - 1) * width * height
    r3 = (b3 + torch.sqrt(b3 ** 2 - 4 * a3 * c3)) / 2
    return torch.minimum(torch.minimum(r1, r2), r3)


def encode_targets(boxes: Tensor | np.ndarray, classes: Tensor | np.ndarray, cfg: BevConfig) -> dict[str, Tensor]:
    """Dense CenterPoint targets for one sample.

    Returns ``heatmap [K, rows, cols]`` float32, ``regression [10, rows, cols]`` float32 and
    ``regression_mask [rows, cols]`` bool (True at the centre cell of every encoded box). Boxes
    whose centre is outside the detection grid are skipped.
    """
    boxes_t = torch.as_tensor(np.asarray(boxes) if not isinstance(boxes, Tensor) else boxes, dtype=torch.float64)
    classes_t = torch.as_tensor(np.asarray(classes) if not isinstance(classes, Tensor) else classes).long()
    boxes_t = boxes_t.reshape(-1, BOX_DIM) if boxes_t.numel() == 0 else boxes_t
    if boxes_t.ndim != 2 or boxes_t.shape[1] != BOX_DIM:
        raise ValueError(f"boxes must be [N, {BOX_DIM}] (x, y, z, l, w, h, yaw, vx, vy), got {tuple(boxes_t.shape)}")
    if classes_t.shape != (boxes_t.shape[0],):
        raise ValueError(f"classes must be [N] matching {boxes_t.shape[0]} boxes, got {tuple(classes_t.shape)}")
    if boxes_t.shape[0] and (classes_t.min() < 0 or classes_t.max() >= cfg.num_box_classes):
        raise ValueError(f"box class indices must be in [0, {cfg.num_box_classes}), got {classes_t.tolist()}")
    if not torch.isfinite(boxes_t).all():
        raise ValueError("boxes contain NaN or inf")
    if boxes_t.shape[0] and (boxes_t[:, 3:6] <= 0).any():
        raise ValueError("box sizes l, w, h must be > 0")

    grid = cfg.det_grid
    heatmap = torch.zeros(cfg.num_box_classes, grid.rows, grid.cols, dtype=torch.float32)
    regression = torch.zeros(REGRESSION_CHANNELS, grid.rows, grid.cols, dtype=torch.float32)
    mask = torch.zeros(grid.rows, grid.cols, dtype=torch.bool)
    u = (boxes_t[:, 0] - grid.x_min) / grid.resolution
    v = (boxes_t[:, 1] - grid.y_min) / grid.resolution
    row, col = torch.floor(u).long(), torch.floor(v).long()
    inside = (row >= 0) & (row < grid.rows) & (col >= 0) & (col < grid.cols)
    if not inside.any():
        return {"heatmap": heatmap, "regression": regression, "regression_mask": mask}
    boxes_t, classes_t, u, v, row, col = (t[inside] for t in (boxes_t, classes_t, u, v, row, col))

    radius = gaussian_radius(boxes_t[:, 3] / grid.resolution, boxes_t[:, 4] / grid.resolution, cfg.gaussian_overlap)
    radius = torch.clamp(torch.floor(radius), min=cfg.min_gaussian_radius)
    sigma = (2 * radius + 1) / 6
    d_row = torch.arange(grid.rows, dtype=torch.float64)[None, :, None] - row[:, None, None]
    d_col = torch.arange(grid.cols, dtype=torch.float64)[None, None, :] - col[:, None, None]
    bumps = torch.exp(-(d_row ** 2 + d_col ** 2) / (2 * sigma[:, None, None] ** 2))
    window = (d_row.abs() <= radius[:, None, None]) & (d_col.abs() <= radius[:, None, None])
    bumps = (bumps * window).float()
    for k in classes_t.unique().tolist():
        heatmap[k] = bumps[classes_t == k].amax(dim=0)

    reg = torch.stack(
        [
            u - row, v - col, boxes_t[:, 2],
            torch.log(boxes_t[:, 3]), torch.log(boxes_t[:, 4]), torch.log(boxes_t[:, 5]),
            torch.sin(boxes_t[:, 6]), torch.cos(boxes_t[:, 6]), boxes_t[:, 7], boxes_t[:, 8],
        ],
        dim=1,
    ).float()
    regression[:, row, col] = reg.T  # later boxes win a shared cell
    mask[row, col] = True
    return {"heatmap": heatmap, "regression": regression, "regression_mask": mask}


def collate_targets(per_sample: Sequence[Mapping[str, Tensor]]) -> dict[str, Tensor]:
    """Stack per-sample targets from ``encode_targets`` into batch tensors."""
    if not per_sample:
        raise ValueError("collate_targets needs at least one sample")
    return {key: torch.stack([t[key] for t in per_sample]) for key in per_sample[0]}


def circle_nms(centres: np.ndarray, scores: np.ndarray, labels: np.ndarray, radii: Sequence[float]) -> np.ndarray:
    """Greedy class-wise NMS on BEV centre distance; returns kept indices, best score first.

    A detection is suppressed by a higher-scoring kept detection of the same class whose centre
    is closer than that class's radius (metres).
    """
    order = np.argsort(-scores, kind="stable")
    if order.size == 0:
        return order
    radius = np.asarray(radii, dtype=np.float64)[labels]
    dist = np.linalg.norm(centres[:, None, :] - centres[None, :, :], axis=-1)
    same_class = labels[:, None] == labels[None, :]
    suppresses = same_class & (dist < radius[None, :])  # [i, j]: i would suppress j
    removed = np.zeros(scores.shape[0], dtype=bool)
    keep = []
    for i in order:
        if removed[i]:
            continue
        keep.append(i)
        removed |= suppresses[i]
    return np.asarray(keep, dtype=np.int64)


def decode_detections(head_out: Mapping[str, Tensor], cfg: BevConfig) -> list[dict[str, np.ndarray]]:
    """Boxes, scores and labels per sample from heatmap logits and regression maps.

    Peaks are cells equal to their 3x3 max-pool; the top ``max_detections`` peaks above
    ``score_threshold`` are decoded and pruned by class-wise circle NMS (``nms_radius``).
    Returns one dict per sample with ``boxes [M, 9]`` float32, ``scores [M]`` and ``labels [M]``.
    """
    heat_logits, regression = head_out["heatmap"], head_out["regression"]
    if heat_logits.ndim != 4 or heat_logits.shape[1] != cfg.num_box_classes:
        raise ValueError(f"heatmap must be [B, {cfg.num_box_classes}, rows, cols], got {tuple(heat_logits.shape)}")
    if regression.shape[1] != REGRESSION_CHANNELS or regression.shape[2:] != heat_logits.shape[2:]:
        raise ValueError(f"regression must be [B, {REGRESSION_CHANNELS}, rows, cols], got {tuple(regression.shape)}")
    grid = cfg.det_grid
    with torch.no_grad():
        heat = heat_logits.float().sigmoid()
        peaks = heat * (heat == F.max_pool2d(heat, 3, stride=1, padding=1))
        batch, classes, rows, cols = heat.shape
        k = min(cfg.max_detections, classes * rows * cols)
        scores, flat = peaks.reshape(batch, -1).topk(k, dim=1)
    results = []
    for b in range(batch):
        keep = scores[b] > cfg.score_threshold
        s, idx = scores[b][keep], flat[b][keep]
        label = torch.div(idx, rows * cols, rounding_mode="floor")
        cell = idx % (rows * cols)
        row = torch.div(cell, cols, rounding_mode="floor")
        col = cell % cols
        reg = regression[b, :, row, col].detach().float().T  # [M, 10]
        x = grid.x_min + (row.float() + reg[:, 0]) * grid.resolution
        y = grid.y_min + (col.float() + reg[:, 1]) * grid.resolution
        size = torch.exp(reg[:, 3:6])
        yaw = torch.atan2(reg[:, 6], reg[:, 7])
        boxes = torch.cat([x[:, None], y[:, None], reg[:, 2:3], size, yaw[:, None], reg[:, 8:10]], dim=1)
        boxes_np, scores_np, labels_np = boxes.cpu().numpy(), s.cpu().numpy(), label.cpu().numpy()
        kept = circle_nms(boxes_np[:, :2].astype(np.float64), scores_np, labels_np, cfg.nms_radius)
        results.append({"boxes": boxes_np[kept].astype(np.float32), "scores": scores_np[kept].astype(np.float32),
                        "labels": labels_np[kept].astype(np.int64)})
    return results


def perfect_head_outputs(targets: Mapping[str, Tensor], saturation: float = 1e-6) -> dict[str, Tensor]:
    """Head outputs a perfect model would produce for ``targets`` (batched, from ``collate_targets``).

    Heatmap logits are ``logit(clamp(heatmap))``; regression is the target itself. Used to check
    that ``decode_detections`` inverts ``encode_targets``.
    """
    heat = targets["heatmap"].clamp(saturation, 1 - saturation)
    return {"heatmap": torch.log(heat) - torch.log1p(-heat), "regression": targets["regression"].clone()}

