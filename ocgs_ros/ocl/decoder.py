"""Spatial-broadcast decoders: each slot's latent is broadcast over the pixel grid and a per-pixel
MLP turns (latent, coordinate) into RGB + an alpha logit.

With a ViT target (``GoclConfig.target == "vit_features"``) the same decoders predict the ViT's
feature vector per patch instead (``output_channels`` = its width, on its patch grid, unbounded).

Object slots see coordinates *relative* to their extrinsic position and scale, so the same
(quantised) intrinsic code draws the same object anywhere at any size — the decoder is where the
intrinsic/extrinsic split is enforced. The background slot sees absolute coordinates.
"""
from __future__ import annotations

import torch
from torch import nn

from .config import EXTRINSIC_POSITION_SCALE_DIMS, GoclConfig
from .encoder import COORDINATE_FEATURE_DIM, coordinate_features, coordinate_grid


def _pixel_mlp(hidden: int, layers: int, outputs: int) -> nn.Sequential:
    modules: list[nn.Module] = []
    for _ in range(layers):
        modules += [nn.ReLU(inplace=True), nn.Linear(hidden, hidden)]
    modules += [nn.ReLU(inplace=True), nn.Linear(hidden, outputs)]
    return nn.Sequential(*modules)


def _values(out: torch.Tensor, bounded: bool) -> torch.Tensor:
    """Colours are squashed into (0, 1); ViT features are unbounded."""
    return out.sigmoid() if bounded else out


class ObjectDecoder(nn.Module):
    """Quantised intrinsic code + extrinsic (position, scale, extra) -> per-slot RGB, alpha logit.

    ``output_channels`` / ``grid_size`` / ``bounded``: 3, the image size and sigmoid for pixels
    (the defaults); the ViT's width, its patch grid and no squashing for a feature target.
    """

    def __init__(self, config: GoclConfig, output_channels: int = 3, grid_size: tuple[int, int] | None = None,
                 bounded: bool = True):
        super().__init__()
        self.config = config
        self.height, self.width = grid_size or (config.image_height, config.image_width)
        self.channels, self.bounded = int(output_channels), bool(bounded)
        self.register_buffer("grid", coordinate_grid(self.height, self.width), persistent=False)
        extra = config.extrinsic_dim - EXTRINSIC_POSITION_SCALE_DIMS
        self.latent_projection = nn.Linear(config.intrinsic_dim + extra, config.decoder_hidden)
        self.coordinate_projection = nn.Linear(COORDINATE_FEATURE_DIM, config.decoder_hidden)
        self.mlp = _pixel_mlp(config.decoder_hidden, config.decoder_layers, self.channels + 1)

    def forward(self, intrinsic: torch.Tensor, positions: torch.Tensor, scales: torch.Tensor,
                extra: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B,Ko,Di], [B,Ko,2], [B,Ko,2], [B,Ko,E]`` -> rgb ``[B,Ko,C,H,W]`` (C = 3: in (0,1)),
        alpha ``[B,Ko,H,W]``."""
        batch, slots = intrinsic.shape[:2]
        relative = (self.grid[None, None] - positions[:, :, None]) / scales[:, :, None]  # [B,Ko,P,2]
        # Clamped: far from its centre a slot sees a constant coordinate, so it cannot paint
        # remote pixels by extrapolating its shape function.
        limit = self.config.max_relative_coord
        relative = relative.clamp(-limit, limit)
        hidden = (self.latent_projection(torch.cat([intrinsic, extra], dim=-1))[:, :, None]
                  + self.coordinate_projection(coordinate_features(relative)))
        out = self.mlp(hidden)  # [B, Ko, P, C + 1]
        out = out.transpose(2, 3).reshape(batch, slots, self.channels + 1, self.height, self.width)
        return _values(out[:, :, :self.channels], self.bounded), out[:, :, self.channels]


class BackgroundDecoder(nn.Module):
    """Background latent + absolute coordinates -> background RGB, alpha logit (outputs as ObjectDecoder)."""

    def __init__(self, config: GoclConfig, output_channels: int = 3, grid_size: tuple[int, int] | None = None,
                 bounded: bool = True):
        super().__init__()
        self.height, self.width = grid_size or (config.image_height, config.image_width)
        self.channels, self.bounded = int(output_channels), bool(bounded)
        self.register_buffer("grid", coordinate_grid(self.height, self.width), persistent=False)
        self.latent_projection = nn.Linear(config.background_dim, config.decoder_hidden)
        self.coordinate_projection = nn.Linear(COORDINATE_FEATURE_DIM, config.decoder_hidden)
        self.mlp = _pixel_mlp(config.decoder_hidden, config.decoder_layers, self.channels + 1)

    def forward(self, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, Db]`` -> rgb ``[B,C,H,W]`` (C = 3: in (0,1)), alpha logit ``[B,H,W]``."""
        batch = latent.shape[0]
        hidden = (self.latent_projection(latent)[:, None]
                  + self.coordinate_projection(coordinate_features(self.grid))[None])
        out = self.mlp(hidden)  # [B, P, C + 1]
        out = out.transpose(1, 2).reshape(batch, self.channels + 1, self.height, self.width)
        return _values(out[:, :self.channels], self.bounded), out[:, self.channels]
