"""Camera branch: a small CNN image backbone and a Lift-Splat-Shoot view transform.

Lift: each feature pixel predicts a categorical distribution over ``depth_bins`` depths and a
context vector; their outer product places the context along the pixel's ray. Splat: every
(pixel, depth) frustum point is mapped through ``K`` and ``T_ego_cam`` to a BEV cell and the
features are summed into it with one ``index_add_`` for the whole batch.

The frustum -> BEV cell mapping depends only on ``(K, T_ego_cam)`` and the image size, so it is
cached per camera: fixed rigs (the simulator, a real car) pay for it once.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import Tensor, nn

from .config import BevConfig
from .layers import conv_bn_relu


class ImageBackbone(nn.Module):
    """Stride-2 conv stages (``cfg.image_channels``), each followed by a 3x3 refinement conv."""

    def __init__(self, cfg: BevConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = 3
        for out_ch in cfg.image_channels:
            layers += [conv_bn_relu(in_ch, out_ch, stride=2), conv_bn_relu(out_ch, out_ch)]
            in_ch = out_ch
        self.stages = nn.Sequential(*layers)
        self.out_channels = in_ch

    def forward(self, images: Tensor) -> Tensor:
        return self.stages(images)


class FrustumCellCache:
    """Flat BEV cell index of every frustum point of one camera, cached per ``(K, T_ego_cam)``.

    The index is ``-1`` for frustum points that fall outside the detection grid or z slab.
    """

    def __init__(self, cfg: BevConfig, max_entries: int = 64) -> None:
        self.cfg = cfg
        self.max_entries = max_entries
        self._entries: OrderedDict[bytes, Tensor] = OrderedDict()
        h, w, stride = cfg.feature_height, cfg.feature_width, cfg.image_stride
        # Pixel centres of the feature cells in input-image pixel coordinates (integer = centre).
        v = (torch.arange(h, dtype=torch.float64) + 0.5) * stride - 0.5
        u = (torch.arange(w, dtype=torch.float64) + 0.5) * stride - 0.5
        depth = torch.tensor(cfg.depth_bin_centres(), dtype=torch.float64)
        dd, vv, uu = torch.meshgrid(depth, v, u, indexing="ij")
        # Homogeneous pixels scaled by depth: K^-1 @ (u d, v d, d) is the camera-frame point.
        self._pixels_times_depth = torch.stack([uu * dd, vv * dd, dd], dim=-1).reshape(-1, 3)

    def __len__(self) -> int:
        return len(self._entries)

    def cells(self, intrinsics: Tensor, cam_to_ego: Tensor) -> Tensor:
        """``[D * h * w]`` long tensor of flat cell indices (or -1) for one camera."""
        key = intrinsics.detach().cpu().double().numpy().tobytes() + cam_to_ego.detach().cpu().double().numpy().tobytes()
        hit = self._entries.get(key)
        if hit is not None:
            self._entries.move_to_end(key)
            return hit
        cells = self._compute(intrinsics.detach().cpu().double(), cam_to_ego.detach().cpu().double())
        self._entries[key] = cells
        if len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return cells

    def _compute(self, intrinsics: Tensor, cam_to_ego: Tensor) -> Tensor:
        cfg, grid = self.cfg, self.cfg.det_grid
        cam_points = self._pixels_times_depth @ torch.linalg.inv(intrinsics).T
        ego = cam_points @ cam_to_ego[:3, :3].T + cam_to_ego[:3, 3]
        row = torch.floor((ego[:, 0] - grid.x_min) / grid.resolution).long()
        col = torch.floor((ego[:, 1] - grid.y_min) / grid.resolution).long()
        inside = (
            (row >= 0) & (row < grid.rows) & (col >= 0) & (col < grid.cols)
            & (ego[:, 2] >= cfg.z_min) & (ego[:, 2] < cfg.z_max)
        )
        return torch.where(inside, row * grid.cols + col, torch.full_like(row, -1))


class CameraBranch(nn.Module):
    """Images ``[B, N, 3, H, W]`` + ``K``/``T_ego_cam`` -> camera BEV feature ``[B, C, rows, cols]``."""

    def __init__(self, cfg: BevConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = ImageBackbone(cfg)
        self.depth_net = nn.Conv2d(self.backbone.out_channels, cfg.depth_bins + cfg.camera_bev_channels, 1)
        self.geometry = FrustumCellCache(cfg)
        self.bev_refine = conv_bn_relu(cfg.camera_bev_channels, cfg.camera_bev_channels)

    def forward(self, images: Tensor, intrinsics: Tensor, cam_to_ego: Tensor) -> Tensor:
        cfg, grid = self.cfg, self.cfg.det_grid
        batch, cams = images.shape[:2]
        depth_bins, channels = cfg.depth_bins, cfg.camera_bev_channels
        feats = self.depth_net(self.backbone(images.flatten(0, 1)))
        depth_prob = feats[:, :depth_bins].softmax(dim=1)  # [B*N, D, h, w]
        context = feats[:, depth_bins:]  # [B*N, C, h, w]
        # Lift: [B*N, D, h, w, C], flattened to one row per frustum point.
        frustum = (depth_prob.unsqueeze(-1) * context.permute(0, 2, 3, 1).unsqueeze(1)).reshape(batch * cams, -1, channels)

        cells_per_sample = grid.rows * grid.cols
        index = torch.stack(
            [
                self.geometry.cells(intrinsics[b, n], cam_to_ego[b, n])
                for b in range(batch)
                for n in range(cams)
            ]
        ).to(images.device)  # [B*N, D*h*w]
        sample_offset = (torch.arange(batch * cams, device=images.device) // cams) * cells_per_sample
        valid = index >= 0
        flat_index = (index + sample_offset.unsqueeze(1))[valid]
        # Splat: sum pooling of all frustum points that land in the same BEV cell.
        bev = frustum.new_zeros(batch * cells_per_sample, channels).index_add_(0, flat_index, frustum[valid])
        bev = bev.view(batch, grid.rows, grid.cols, channels).permute(0, 3, 1, 2).contiguous()
        return self.bev_refine(bev)
