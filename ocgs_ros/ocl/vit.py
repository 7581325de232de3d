"""A frozen self-supervised ViT (DINO / DINOv2 weight layout) as GOCL's feature source.

GOLD's recipe for real objects reconstructs the patch features of a frozen self-supervised ViT
instead of pixels: those features already group object parts, so slots need not explain texture
and lighting. The architecture here is ours (standard pre-norm ViT); only the *weights* come from
a local file in the DINO / DINOv2 ``state_dict`` layout (nothing is downloaded):

* ``patch_embed.proj.{weight,bias}`` (``[D, 3, p, p]``: embedding width D and patch size p),
  ``cls_token`` ``[1, 1, D]``, ``pos_embed`` ``[1, 1 + N, D]`` (for a square training grid),
* ``blocks.<i>.norm1``, ``.attn.qkv``, ``.attn.proj``, ``.norm2``, ``.mlp.fc1``, ``.mlp.fc2``
  (depth and MLP width read from the keys and shapes), ``norm.{weight,bias}``,
* DINOv2 extras: ``register_tokens`` ``[1, R, D]``, ``mask_token`` (unused at inference, accepted
  so the file loads strictly), ``blocks.<i>.ls1.gamma`` / ``ls2.gamma`` (layer scale).

Heads are D / 64 (:data:`HEAD_DIM`): true of every DINO and DINOv2 ViT-S/B/L/g. Files whose keys
carry a ``module.`` or ``backbone.`` prefix (DDP / DINO training checkpoints) are accepted; any
other missing or unexpected key is a :class:`ViTWeightsError` naming it. Positional embeddings are
interpolated (bicubic) to the input's patch grid, so any input size divisible by p works.
Inputs are RGB in [0, 1], normalised with the ImageNet statistics both DINO models were trained
with.
"""
from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

HEAD_DIM = 64
LAYER_NORM_EPS = 1e-6  # DINO and DINOv2 both use 1e-6
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
STRIPPED_PREFIXES = ("module.", "backbone.")


class ViTWeightsError(ValueError):
    """A ViT weight file is missing, unreadable or not in the DINO / DINOv2 layout."""


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int, qkv_bias: bool):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        batch, count, dim = tokens.shape
        qkv = self.qkv(tokens).reshape(batch, count, 3, self.num_heads, dim // self.num_heads)
        query, key, value = qkv.permute(2, 0, 3, 1, 4)  # each [B, heads, N, head_dim]
        attended = F.scaled_dot_product_attention(query, key, value)
        return self.proj(attended.transpose(1, 2).reshape(batch, count, dim))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(tokens)))


class LayerScale(nn.Module):
    """DINOv2's per-channel residual scale (``ls1.gamma`` / ``ls2.gamma``)."""

    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens * self.gamma


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_hidden: int, qkv_bias: bool, layer_scale: bool):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.attn = Attention(dim, num_heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.mlp = Mlp(dim, mlp_hidden)
        self.ls1 = LayerScale(dim) if layer_scale else nn.Identity()
        self.ls2 = LayerScale(dim) if layer_scale else nn.Identity()

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        tokens = tokens + self.ls1(self.attn(self.norm1(tokens)))
        return tokens + self.ls2(self.mlp(self.norm2(tokens)))


class VisionTransformer(nn.Module):
    """Pre-norm ViT with the DINO / DINOv2 parameter names; :meth:`patch_features` is its use here."""

    def __init__(self, embed_dim: int, depth: int, patch_size: int, num_positions: int, mlp_hidden: int,
                 num_heads: int | None = None, num_register_tokens: int = 0, layer_scale: bool = False,
                 qkv_bias: bool = True, mask_token: bool = False):
        super().__init__()
        num_heads = num_heads or max(1, embed_dim // HEAD_DIM)
        if embed_dim % num_heads:
            raise ValueError(f"embedding width {embed_dim} is not divisible by {num_heads} heads")
        self.embed_dim, self.patch_size = embed_dim, patch_size
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, embed_dim, patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_positions, embed_dim))
        self.register_tokens = (nn.Parameter(torch.zeros(1, num_register_tokens, embed_dim))
                                if num_register_tokens > 0 else None)
        self.mask_token = nn.Parameter(torch.zeros(1, embed_dim)) if mask_token else None
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_hidden, qkv_bias, layer_scale)
                                    for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim, eps=LAYER_NORM_EPS)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def _positions(self, grid_height: int, grid_width: int) -> torch.Tensor:
        """``pos_embed`` for a ``grid_height x grid_width`` patch grid (cls position first)."""
        cls_position, patch_positions = self.pos_embed[:, :1], self.pos_embed[:, 1:]
        side = math.isqrt(patch_positions.shape[1])
        if (side, side) == (grid_height, grid_width):
            return self.pos_embed
        grid = patch_positions.reshape(1, side, side, self.embed_dim).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(grid_height, grid_width), mode="bicubic", align_corners=False)
        return torch.cat([cls_position, grid.permute(0, 2, 3, 1).reshape(1, -1, self.embed_dim)], dim=1)

    def patch_features(self, images: torch.Tensor) -> torch.Tensor:
        """RGB ``[B, 3, H, W]`` in [0, 1] (H, W multiples of the patch size) -> ``[B, D, H/p, W/p]``."""
        height, width = images.shape[-2:]
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(f"image size {height}x{width} is not a multiple of the ViT patch size {self.patch_size}")
        patches = self.patch_embed.proj((images - self.mean) / self.std)  # [B, D, h, w]
        batch, _, grid_height, grid_width = patches.shape
        tokens = torch.cat([self.cls_token.expand(batch, -1, -1), patches.flatten(2).transpose(1, 2)], dim=1)
        tokens = tokens + self._positions(grid_height, grid_width)
        if self.register_tokens is not None:  # DINOv2: registers go after cls, without positions
            tokens = torch.cat([tokens[:, :1], self.register_tokens.expand(batch, -1, -1), tokens[:, 1:]], dim=1)
        for block in self.blocks:
            tokens = block(tokens)
        patch_tokens = self.norm(tokens)[:, tokens.shape[1] - grid_height * grid_width:]
        return patch_tokens.transpose(1, 2).reshape(batch, self.embed_dim, grid_height, grid_width)


def _strip_prefixes(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        for prefix in STRIPPED_PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    return out


def _required(state: Mapping[str, torch.Tensor], key: str, source: str) -> torch.Tensor:
    if key not in state:
        raise ViTWeightsError(f"{source}: not a DINO/DINOv2 ViT state dict: key {key!r} is missing")
    return state[key]


def vit_from_state_dict(state: Mapping[str, torch.Tensor], source: str = "state dict") -> VisionTransformer:
    """Build our ViT with the shapes of ``state`` (DINO or DINOv2 layout) and load it strictly."""
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ViTWeightsError(f"{source}: expected a state dict (name -> tensor)")
    state = _strip_prefixes(state)
    proj = _required(state, "patch_embed.proj.weight", source)
    if proj.dim() != 4 or proj.shape[1] != 3 or proj.shape[2] != proj.shape[3]:
        raise ViTWeightsError(f"{source}: patch_embed.proj.weight must be [D, 3, p, p], got {list(proj.shape)}")
    embed_dim, patch_size = int(proj.shape[0]), int(proj.shape[2])
    positions = _required(state, "pos_embed", source)
    if positions.dim() != 3 or math.isqrt(positions.shape[1] - 1) ** 2 != positions.shape[1] - 1:
        raise ViTWeightsError(f"{source}: pos_embed must be [1, 1 + n*n, D], got {list(positions.shape)}")
    depth = len({int(m.group(1)) for key in state if (m := re.match(r"blocks\.(\d+)\.", key))})
    if depth == 0:
        raise ViTWeightsError(f"{source}: no transformer blocks (keys blocks.<i>.*)")
    registers = state.get("register_tokens")
    vit = VisionTransformer(
        embed_dim=embed_dim, depth=depth, patch_size=patch_size, num_positions=int(positions.shape[1]),
        mlp_hidden=int(_required(state, "blocks.0.mlp.fc1.weight", source).shape[0]),
        num_register_tokens=int(registers.shape[1]) if registers is not None else 0,
        layer_scale="blocks.0.ls1.gamma" in state, qkv_bias="blocks.0.attn.qkv.bias" in state,
        mask_token="mask_token" in state)
    missing, unexpected = [], []
    try:
        result = vit.load_state_dict(state, strict=False)
        missing, unexpected = result.missing_keys, result.unexpected_keys
    except RuntimeError as exc:  # shape mismatches
        raise ViTWeightsError(f"{source}: weights do not fit a ViT of width {embed_dim}, depth {depth}: "
                              f"{str(exc).splitlines()[-1].strip()}") from exc
    if missing or unexpected:
        raise ViTWeightsError(f"{source}: not a DINO/DINOv2 ViT state dict: missing keys {missing[:5]}, "
                              f"unexpected keys {unexpected[:5]}")
    return vit


def load_frozen_vit(path: str | os.PathLike) -> VisionTransformer:
    """Read a local weight file (``torch.save`` of a state dict) into a frozen ViT in eval mode."""
    path = Path(path)
    if not path.is_file():
        raise ViTWeightsError(f"ViT weight file {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises several types for bad files
        raise ViTWeightsError(f"ViT weight file {path} cannot be read: {exc}") from exc
    vit = vit_from_state_dict(state, source=str(path))
    vit.requires_grad_(False)
    return vit.eval()


class FrozenFeatures:
    """Callable ``images -> [B, D, h, w]`` patch features of a frozen ViT, without gradients.

    Deliberately *not* an ``nn.Module``: the ViT must not enter the GOCL model's parameters (it is
    never trained, and the optimiser/DDP must not see it) nor its state dict (a ViT-S is ~85 MB;
    checkpoints refer to the weight file by path instead). It follows its input's device.
    """

    def __init__(self, vit: VisionTransformer):
        self.vit = vit

    @property
    def dim(self) -> int:
        return self.vit.embed_dim

    @property
    def patch_size(self) -> int:
        return self.vit.patch_size

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if self.vit.cls_token.device != images.device:
            self.vit.to(images.device)
        return self.vit.patch_features(images)
