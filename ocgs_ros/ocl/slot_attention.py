"""Disentangled slot attention with a background slot and a global codebook in the loop.

Slot 0 is the background; slots 1..K-1 are object slots. Each object slot carries

* intrinsic attributes (what the object is): updated by a GRU from the attended values and then
  quantised against the global codebook *inside every iteration*, so the next iteration already
  competes with codebook-shaped slots;
* extrinsic attributes (where and how big): position = centroid and scale = standard deviation of
  the slot's attention over the feature grid, updated in closed form each iteration (ISA-style).
  Keys and values of an object slot see pixel coordinates relative to its own position/scale,
  which makes the intrinsic part translation- and scale-invariant.

The background slot has no position: it attends with plain (absolutely embedded) features.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .codebook import CodebookAssignment, GlobalCodebook
from .config import GoclConfig
from .encoder import coordinate_grid

ATTENTION_EPS = 1e-8


@dataclass
class SlotAttentionOutput:
    intrinsic_features: torch.Tensor  # [B, Ko, Di] final GRU output before quantisation
    assignment: CodebookAssignment  # final iteration's codebook assignment, per object slot
    positions: torch.Tensor  # [B, Ko, 2] (x, y) in [-1, 1]
    scales: torch.Tensor  # [B, Ko, 2]
    background_state: torch.Tensor  # [B, Di]
    attention: torch.Tensor  # [B, K, N] last iteration, softmax over slots (index 0 = background)


# Log-probability standing in for "impossible" in the baseline's one-hot logits (finite, so no
# inf - inf NaNs downstream).
IMPOSSIBLE_LOGIT = -1e4


def slot_index_assignment(features: torch.Tensor, codebook_size: int) -> CodebookAssignment:
    """No-codebook baseline: features pass through unquantised and object slot k (0-based among
    object slots) is reported as entry k — identity = slot index, as in plain slot attention."""
    num_slots = features.shape[-2]
    index = torch.arange(num_slots, device=features.device)
    one_hot = torch.nn.functional.one_hot(index, codebook_size).to(features.dtype)
    one_hot = one_hot.expand(*features.shape[:-2], num_slots, codebook_size)
    logits = torch.where(one_hot > 0, torch.zeros_like(one_hot), torch.full_like(one_hot, IMPOSSIBLE_LOGIT))
    return CodebookAssignment(features, one_hot, one_hot, logits)


class DisentangledSlotAttention(nn.Module):
    """Iterative competitive attention of 1 background + ``num_object_slots`` slots over features."""

    def __init__(self, config: GoclConfig):
        super().__init__()
        self.config = config
        d, di = config.feature_dim, config.intrinsic_dim
        self.feature_height, self.feature_width = config.feature_map_size
        self.register_buffer("grid", coordinate_grid(self.feature_height, self.feature_width),
                             persistent=False)
        self.input_norm = nn.LayerNorm(d)
        self.to_k = nn.Linear(d, d, bias=False)
        self.to_v = nn.Linear(d, d, bias=False)
        # Relative-position code added to keys and values of each object slot (one MLP, split).
        self.relative_position = nn.Sequential(
            nn.Linear(2, config.position_hidden), nn.ReLU(inplace=True),
            nn.Linear(config.position_hidden, 2 * d))

        self.object_query = nn.Sequential(nn.LayerNorm(di), nn.Linear(di, d, bias=False))
        self.object_gru = nn.GRUCell(d, di)
        self.object_mlp = nn.Sequential(nn.LayerNorm(di), nn.Linear(di, config.mlp_hidden),
                                        nn.ReLU(inplace=True), nn.Linear(config.mlp_hidden, di))
        self.background_query = nn.Sequential(nn.LayerNorm(di), nn.Linear(di, d, bias=False))
        self.background_gru = nn.GRUCell(d, di)
        self.background_mlp = nn.Sequential(nn.LayerNorm(di), nn.Linear(di, config.mlp_hidden),
                                            nn.ReLU(inplace=True), nn.Linear(config.mlp_hidden, di))

        # Learned initial slots. Distinct learned start positions break the symmetry between object
        # slots deterministically, so eval needs no random initialisation.
        ko = config.num_object_slots
        self.initial_intrinsic = nn.Parameter(torch.randn(ko, di) * 0.1)
        self.initial_background = nn.Parameter(torch.randn(di) * 0.1)
        self.initial_position = nn.Parameter(torch.rand(ko, 2) - 0.5)
        self.initial_log_scale = nn.Parameter(torch.full((ko, 2), math.log(0.5)))

    def _initial_state(self, batch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        cfg = self.config
        intrinsic = self.initial_intrinsic[None].expand(batch, -1, -1)
        if self.training and cfg.slot_init_noise > 0:
            intrinsic = intrinsic + cfg.slot_init_noise * torch.randn_like(intrinsic)
        positions = self.initial_position.clamp(-1.0, 1.0)[None].expand(batch, -1, -1)
        scales = self.initial_log_scale.exp().clamp(cfg.min_scale, cfg.max_scale)[None].expand(batch, -1, -1)
        background = self.initial_background[None].expand(batch, -1)
        return intrinsic, positions, scales, background

    def forward(self, features: torch.Tensor, codebook: GlobalCodebook, tau: float) -> SlotAttentionOutput:
        """Attend ``features [B, N, D]``; ``codebook`` quantises intrinsic attributes each iteration
        (passed in, not owned, so its prototypes are stored once in the model's state dict)."""
        cfg = self.config
        batch, num_inputs, dim = features.shape
        features = self.input_norm(features)
        keys = self.to_k(features)  # [B, N, D]
        values = self.to_v(features)
        grid = self.grid  # [N, 2]
        intrinsic, positions, scales, background = self._initial_state(batch)
        scale_factor = 1.0 / math.sqrt(dim)
        assignment = None
        pre_quantised = intrinsic
        attention = features.new_zeros(batch, cfg.num_slots, num_inputs)

        for _ in range(cfg.num_iterations):
            relative = (grid[None, None] - positions[:, :, None]) / scales[:, :, None]  # [B,Ko,N,2]
            rel_k, rel_v = self.relative_position(relative).chunk(2, dim=-1)  # [B,Ko,N,D] each
            object_q = self.object_query(intrinsic)  # [B, Ko, D]
            background_q = self.background_query(background)  # [B, D]
            object_logits = (torch.einsum("bnd,bkd->bkn", keys, object_q)
                             + torch.einsum("bknd,bkd->bkn", rel_k, object_q)) * scale_factor
            background_logits = torch.einsum("bnd,bd->bn", keys, background_q) * scale_factor
            logits = torch.cat([background_logits[:, None], object_logits], dim=1)  # [B, K, N]
            attention = logits.softmax(dim=1)  # slots compete for each input
            weights = attention + ATTENTION_EPS
            weights = weights / weights.sum(dim=-1, keepdim=True)  # weighted mean over inputs
            object_w, background_w = weights[:, 1:], weights[:, 0]

            object_updates = (torch.einsum("bkn,bnd->bkd", object_w, values)
                              + torch.einsum("bkn,bknd->bkd", object_w, rel_v))
            background_updates = torch.einsum("bn,bnd->bd", background_w, values)

            # Extrinsic update: attention centroid and spread (differentiable, no parameters).
            positions = torch.einsum("bkn,nc->bkc", object_w, grid)
            spread = torch.einsum("bkn,bknc->bkc", object_w, (grid[None, None] - positions[:, :, None]) ** 2)
            scales = (spread + 1e-6).sqrt().clamp(cfg.min_scale, cfg.max_scale)

            # Intrinsic update, then quantisation against the global codebook.
            pre_quantised = self.object_gru(object_updates.reshape(-1, dim),
                                            intrinsic.reshape(-1, cfg.intrinsic_dim))
            pre_quantised = pre_quantised.reshape(batch, cfg.num_object_slots, cfg.intrinsic_dim)
            pre_quantised = pre_quantised + self.object_mlp(pre_quantised)
            if cfg.use_codebook:
                assignment = codebook.quantise(pre_quantised, tau=tau, hard=cfg.hard_gumbel,
                                               refinement_state=None if assignment is None
                                               else assignment.refinement_state)
            else:
                assignment = slot_index_assignment(pre_quantised, codebook.codebook_size)
            intrinsic = assignment.quantised

            background = self.background_gru(background_updates, background)
            background = background + self.background_mlp(background)

        assert assignment is not None  # num_iterations >= 1 is validated by GoclConfig
        return SlotAttentionOutput(pre_quantised, assignment, positions, scales, background, attention)
