"""Task heads on the shared BEV feature: CenterPoint-style detection and map segmentation."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import REGRESSION_CHANNELS, BevConfig, GridSpec
from .layers import conv_bn_relu

HEATMAP_PRIOR = 0.1  # initial foreground probability of every heatmap cell (CenterNet init)


class DetectionHead(nn.Module):
    """Class heatmap logits ``[B, K, rows, cols]`` and box regression ``[B, 10, rows, cols]``.

    Regression channels: offset of the centre inside its cell (x, y, in cells, [0, 1)), z centre,
    log l/w/h, sin/cos yaw, vx, vy.
    """

    def __init__(self, cfg: BevConfig) -> None:
        super().__init__()
        ch = cfg.head_channels
        self.heatmap = nn.Sequential(conv_bn_relu(cfg.shared_channels, ch), nn.Conv2d(ch, cfg.num_box_classes, 1))
        self.regression = nn.Sequential(conv_bn_relu(cfg.shared_channels, ch), nn.Conv2d(ch, REGRESSION_CHANNELS, 1))
        # Start every cell at the prior so the focal loss does not begin with a flood of
        # confident false positives.
        nn.init.constant_(self.heatmap[-1].bias, -math.log((1 - HEATMAP_PRIOR) / HEATMAP_PRIOR))

    def forward(self, shared: Tensor) -> dict[str, Tensor]:
        return {"heatmap": self.heatmap(shared), "regression": self.regression(shared)}


def bev_resample_grid(source: GridSpec, target: GridSpec) -> Tensor:
    """``grid_sample`` grid ``[1, rows_t, cols_t, 2]`` reading ``source`` cells at ``target`` cell centres.

    Feature maps are ``[.., rows (x), cols (y)]``, so grid_sample's width coordinate is y and its
    height coordinate is x; ``align_corners=False`` puts -1/+1 on the outer cell edges.
    """
    x = target.x_min + (torch.arange(target.rows, dtype=torch.float64) + 0.5) * target.resolution
    y = target.y_min + (torch.arange(target.cols, dtype=torch.float64) + 0.5) * target.resolution
    gx = (x - source.x_min) / (source.x_max - source.x_min) * 2 - 1
    gy = (y - source.y_min) / (source.y_max - source.y_min) * 2 - 1
    xx, yy = torch.meshgrid(gx, gy, indexing="ij")
    return torch.stack([yy, xx], dim=-1).unsqueeze(0).float()


class MapHead(nn.Module):
    """Per-class map logits ``[B, 6, map_rows, map_cols]`` (sigmoid per class, classes may overlap).

    Logits are computed on the shared (detection) grid and bilinearly resampled to the map grid:
    resampling 6 logit channels instead of the feature channels keeps the head at a few ms on
    CPU for a 200 x 200 map grid.
    """

    def __init__(self, cfg: BevConfig) -> None:
        super().__init__()
        ch = cfg.head_channels
        self.features = conv_bn_relu(cfg.shared_channels, ch)
        self.classifier = nn.Sequential(
            nn.Conv2d(ch, ch, 1, bias=False), nn.BatchNorm2d(ch), nn.ReLU(inplace=True),
            nn.Conv2d(ch, cfg.num_map_classes, 1),
        )
        self.resample = cfg.map_grid != cfg.det_grid
        if self.resample:
            self.register_buffer("sample_grid", bev_resample_grid(cfg.det_grid, cfg.map_grid), persistent=False)

    def forward(self, shared: Tensor) -> Tensor:
        logits = self.classifier(self.features(shared))
        if self.resample:
            grid = self.sample_grid.expand(logits.shape[0], -1, -1, -1)
            # Border padding: map cells just outside the detection grid take the edge logits
            # instead of a logit of 0 (= probability 0.5).
            logits = F.grid_sample(logits, grid, mode="bilinear", padding_mode="border", align_corners=False)
        return logits
