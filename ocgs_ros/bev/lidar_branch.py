"""LiDAR branch: pillar encoding scattered to the BEV grid, then a few conv stages.

Every point of every sample is handled in one vectorised pass: point -> (sample, cell) index,
per-pillar mean by ``index_add_``, a PointNet-like linear layer on decorated points, then a
per-cell max with ``scatter_reduce`` (PointPillars' pillar feature net without the fixed
points-per-pillar buffer, so variable point counts cost nothing extra).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from .config import BevConfig
from .layers import conv_bn_relu

POINT_FEATURES = 4  # x, y, z, intensity (ego frame)
DECORATED_FEATURES = 9  # x, y, z, intensity, dx/dy/dz to pillar mean, dx/dy to cell centre


def points_to_cells(points: Tensor, cfg: BevConfig) -> tuple[Tensor, Tensor]:
    """Flat cell index (row * cols + col) of each point and a mask of points inside the grid.

    ``points`` is ``[N, >=3]`` in the ego frame. Points outside ``det_grid`` or the
    ``[z_min, z_max)`` slab are masked out.
    """
    grid = cfg.det_grid
    row = torch.floor((points[:, 0] - grid.x_min) / grid.resolution).long()
    col = torch.floor((points[:, 1] - grid.y_min) / grid.resolution).long()
    inside = (
        (row >= 0) & (row < grid.rows) & (col >= 0) & (col < grid.cols)
        & (points[:, 2] >= cfg.z_min) & (points[:, 2] < cfg.z_max)
    )
    return row * grid.cols + col, inside


class PillarScatter(nn.Module):
    """Decorated points -> linear/BN/ReLU -> per-cell max, returned as ``[B, C, rows, cols]``."""

    def __init__(self, cfg: BevConfig) -> None:
        super().__init__()
        self.cfg = cfg
        channels = cfg.lidar_point_channels
        self.point_net = nn.Sequential(
            nn.Linear(DECORATED_FEATURES, channels, bias=False),
            # LayerNorm, not BatchNorm1d: a sweep with a single in-range point must not fail.
            nn.LayerNorm(channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, points: Sequence[Tensor]) -> Tensor:
        cfg, grid = self.cfg, self.cfg.det_grid
        batch = len(points)
        cells = grid.rows * grid.cols
        device = self.point_net[0].weight.device
        flat_points, flat_cells = [], []
        for sample, pts in enumerate(points):
            _check_points(pts, sample)
            pts = pts.to(device=device, dtype=torch.float32)
            cell, inside = points_to_cells(pts, cfg)
            flat_points.append(pts[inside])
            flat_cells.append(cell[inside] + sample * cells)
        pts = torch.cat(flat_points)
        cell = torch.cat(flat_cells)
        channels = cfg.lidar_point_channels
        if pts.shape[0] == 0:
            return torch.zeros(batch, channels, grid.rows, grid.cols, device=device)

        count = torch.zeros(batch * cells, device=device).index_add_(0, cell, torch.ones_like(cell, dtype=torch.float32))
        xyz_sum = torch.zeros(batch * cells, 3, device=device).index_add_(0, cell, pts[:, :3])
        pillar_mean = xyz_sum[cell] / count[cell].unsqueeze(1)
        local = cell % cells
        centre_x = grid.x_min + (torch.div(local, grid.cols, rounding_mode="floor").float() + 0.5) * grid.resolution
        centre_y = grid.y_min + ((local % grid.cols).float() + 0.5) * grid.resolution
        decorated = torch.cat(
            [
                pts[:, :POINT_FEATURES],
                pts[:, :3] - pillar_mean,
                (pts[:, 0] - centre_x).unsqueeze(1),
                (pts[:, 1] - centre_y).unsqueeze(1),
            ],
            dim=1,
        )
        feats = self.point_net(decorated)
        # ReLU output is >= 0, so a zero-initialised amax with include_self=False leaves empty
        # cells at exactly zero and non-empty cells at their max.
        bev = torch.zeros(batch * cells, channels, device=device, dtype=feats.dtype)
        bev = bev.scatter_reduce(0, cell.unsqueeze(1).expand(-1, channels), feats, reduce="amax", include_self=False)
        return bev.view(batch, grid.rows, grid.cols, channels).permute(0, 3, 1, 2).contiguous()


class LidarBranch(nn.Module):
    """Pillar scatter followed by two 3x3 conv blocks at the BEV grid resolution."""

    def __init__(self, cfg: BevConfig) -> None:
        super().__init__()
        self.scatter = PillarScatter(cfg)
        self.convs = nn.Sequential(
            conv_bn_relu(cfg.lidar_point_channels, cfg.lidar_bev_channels),
            conv_bn_relu(cfg.lidar_bev_channels, cfg.lidar_bev_channels),
        )

    def forward(self, points: Sequence[Tensor]) -> Tensor:
        """``points``: one ``[N_i, 4]`` tensor per sample -> ``[B, C_lidar, rows, cols]``."""
        return self.convs(self.scatter(points))


def _check_points(points: Tensor, sample: int) -> None:
    if not isinstance(points, Tensor):
        raise TypeError(f"LiDAR points of sample {sample} must be a torch.Tensor, got {type(points).__name__}")
    if points.ndim != 2 or points.shape[1] != POINT_FEATURES:
        raise ValueError(
            f"LiDAR points of sample {sample} must be [N, {POINT_FEATURES}] (x, y, z, intensity), "
            f"got {tuple(points.shape)}"
        )
