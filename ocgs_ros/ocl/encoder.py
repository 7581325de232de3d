"""Slot encoders: a small CNN on pixels (trained from scratch) plus a learned positional embedding, or
an adapter on a frozen ViT's patch features (``GoclConfig.encoder_input == "vit_features"``)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import GoclConfig


def coordinate_grid(height: int, width: int, device: torch.device | None = None) -> torch.Tensor:
    """Pixel-centre coordinates ``[H*W, 2]`` as (x, y) in [-1, 1], row-major (y outer, x inner).

    Pixel centres, not edges, so a 1-pixel-wide image gives x = 0 and grids of different
    resolutions describe the same continuous image plane.
    """
    ys = (torch.arange(height, device=device, dtype=torch.float32) + 0.5) / height * 2.0 - 1.0
    xs = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) / width * 2.0 - 1.0
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_x, grid_y], dim=-1).reshape(height * width, 2)


# Sin/cos bands of the coordinates: lets small ReLU MLPs represent curved functions of position
# (the decoders' disc/ring outlines, the encoder's position embedding) without many layers.
# Frequencies in cycles per 2 units (one image width in absolute coordinates).
COORDINATE_FREQUENCIES = (1.0, 2.0, 4.0)


def coordinate_features(coords: torch.Tensor) -> torch.Tensor:
    """``[..., 2] -> [..., 3 + 4 * len(COORDINATE_FREQUENCIES)]``: coords, squared radius, sin/cos."""
    parts = [coords, (coords ** 2).sum(dim=-1, keepdim=True)]
    for frequency in COORDINATE_FREQUENCIES:
        angle = math.pi * frequency * coords
        parts += [angle.sin(), angle.cos()]
    return torch.cat(parts, dim=-1)


COORDINATE_FEATURE_DIM = 3 + 4 * len(COORDINATE_FREQUENCIES)


class PixelEncoder(nn.Module):
    """CNN -> + positional embedding -> LayerNorm -> MLP: image ``[B,3,H,W]`` -> features ``[B,N,D]``."""

    def __init__(self, config: GoclConfig):
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = 3
        padding = config.encoder_kernel_size // 2
        for channels, stride in zip(config.encoder_channels, config.encoder_strides):
            layers += [nn.Conv2d(in_channels, channels, config.encoder_kernel_size, stride=stride,
                                 padding=padding), nn.ReLU(inplace=True)]
            in_channels = channels
        self.cnn = nn.Sequential(*layers)
        self.feature_height, self.feature_width = config.feature_map_size
        self.register_buffer("grid", coordinate_grid(self.feature_height, self.feature_width),
                             persistent=False)
        # Learned embedding of each feature's coordinates (plus sin/cos bands): every feature knows
        # where it is without the encoder having to infer it from zero padding.
        self.position_embedding = nn.Linear(COORDINATE_FEATURE_DIM, in_channels)
        self.norm = nn.LayerNorm(in_channels)
        self.mlp = nn.Sequential(nn.Linear(in_channels, config.feature_dim), nn.ReLU(inplace=True),
                                 nn.Linear(config.feature_dim, config.feature_dim))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.cnn(images)  # [B, C, h, w]
        b, c, h, w = features.shape
        if (h, w) != (self.feature_height, self.feature_width):
            raise ValueError(f"encoder produced a {h}x{w} feature map, expected "
                             f"{self.feature_height}x{self.feature_width}: input size does not match the config")
        features = features.flatten(2).transpose(1, 2)  # [B, N, C]
        features = features + self.position_embedding(coordinate_features(self.grid))[None]
        return self.mlp(self.norm(features))


class ViTFeatureEncoder(nn.Module):
    """Frozen-ViT patch features ``[B, Dv, h, w]`` -> slot-attention features ``[B, N, D]``.

    The patch grid is resampled (bilinear) to the config's ``feature_map_size``, which the slot
    attention's position grid is built for; then, as in :class:`PixelEncoder`, a learned position
    embedding, LayerNorm and MLP. Only this adapter trains: the ViT stays frozen.
    """

    def __init__(self, config: GoclConfig, vit_dim: int):
        super().__init__()
        self.feature_height, self.feature_width = config.feature_map_size
        self.register_buffer("grid", coordinate_grid(self.feature_height, self.feature_width),
                             persistent=False)
        self.input_norm = nn.LayerNorm(vit_dim)
        self.position_embedding = nn.Linear(COORDINATE_FEATURE_DIM, vit_dim)
        self.norm = nn.LayerNorm(vit_dim)
        self.mlp = nn.Sequential(nn.Linear(vit_dim, config.feature_dim), nn.ReLU(inplace=True),
                                 nn.Linear(config.feature_dim, config.feature_dim))

    def forward(self, vit_features: torch.Tensor) -> torch.Tensor:
        size = (self.feature_height, self.feature_width)
        if tuple(vit_features.shape[-2:]) != size:
            vit_features = F.interpolate(vit_features, size=size, mode="bilinear", align_corners=False)
        features = self.input_norm(vit_features.flatten(2).transpose(1, 2))  # [B, N, Dv]
        features = features + self.position_embedding(coordinate_features(self.grid))[None]
        return self.mlp(self.norm(features))
