"""Global, scene-agnostic object codebook: M learnable prototypes over slots' intrinsic attributes.

Each object slot's intrinsic vector is replaced by a Gumbel-softmax mixture of prototypes, so the
decoder can only draw what a prototype describes: the prototype index *is* the object identity,
shared by every view and every scene.

Collapse guard (``revive_dead_prototypes``): an exponential moving average of how often each
prototype is the argmax of a slot is kept during training. A prototype whose usage stays far
below uniform receives no reconstruction gradient, so it can never come back by itself; it is
re-initialised from a recently seen slot feature that the live prototypes explain worst
(farthest from every live prototype, chosen greedily so that several revived prototypes do not
land on the same feature). That feature's slot will pick the revived prototype next time (its
dot product with itself beats a distant prototype), so the prototype gets gradient again. This
complements the batch-usage term KL(Cat(pi_mean) || uniform) in the loss, which discourages
collapse softly but cannot revive a prototype that no slot ever selects.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


REFINER_INIT_SEED = 0  # initial weights of the choice refiner (see GlobalCodebook.__init__)


@dataclass
class CodebookAssignment:
    """Result of quantising slot features against the prototypes (all per object slot)."""

    quantised: torch.Tensor  # [..., D] weights @ prototypes (what the decoder receives)
    weights: torch.Tensor  # [..., M] Gumbel-softmax sample (train) or one-hot argmax (eval)
    probs: torch.Tensor  # [..., M] softmax(logits): the categorical distribution pi
    logits: torch.Tensor  # [..., M]
    # Hidden state of the choice refiner ([..., M]), carried to the next slot-attention iteration;
    # None without refinement.
    refinement_state: torch.Tensor | None = None


class ChoiceRefiner(nn.Module):
    """GOLD's refined codebook choice, in a form that starts as the plain one.

    Scores are ``slot . projected prototypes / sqrt(d)``; a GRU cell reads them each slot-attention
    iteration, its hidden state carried over from the previous one, and a linear read-out of that
    state is added to the scores. The projection starts as the identity and the read-out at zero,
    so at its first step (e.g. right after the k-means warm-up) the choices are the plain ones and
    training decides how far to move from them.
    """

    def __init__(self, codebook_size: int, dim: int):
        super().__init__()
        self.prototype_projection = nn.Linear(dim, dim, bias=False)
        self.gru = nn.GRUCell(codebook_size, codebook_size)
        self.readout = nn.Linear(codebook_size, codebook_size)
        with torch.no_grad():
            self.prototype_projection.weight.copy_(torch.eye(dim))
            self.readout.weight.zero_()
            self.readout.bias.zero_()

    def forward(self, features: torch.Tensor, prototypes: torch.Tensor, state: torch.Tensor | None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Refined logits and new hidden state, both ``[..., M]``, for ``features [..., D]``."""
        scores = features @ self.prototype_projection(prototypes).t() / math.sqrt(features.shape[-1])
        flat = scores.reshape(-1, scores.shape[-1])
        hidden = self.gru(flat, None if state is None else state.reshape(flat.shape)).reshape(scores.shape)
        return scores + self.readout(hidden), hidden


class GlobalCodebook(nn.Module):
    """``codebook_size`` prototypes of size ``dim`` plus usage statistics for the collapse guard."""

    def __init__(self, codebook_size: int, dim: int, usage_ema_decay: float = 0.99,
                 max_recent_features: int = 1024, refine_logits: bool = False):
        super().__init__()
        if codebook_size < 1 or dim < 1:
            raise ValueError(f"codebook_size and dim must be >= 1 (got {codebook_size}, {dim})")
        self.codebook_size = codebook_size
        self.dim = dim
        self.usage_ema_decay = usage_ema_decay
        self.max_recent_features = max_recent_features
        self.prototypes = nn.Parameter(torch.randn(codebook_size, dim) * 0.5)
        # Start at uniform usage so nothing counts as dead before statistics exist.
        self.register_buffer("usage_ema", torch.full((codebook_size,), 1.0 / codebook_size))
        # Recent pre-quantisation slot features: revival candidates. Not saved in checkpoints.
        self.register_buffer("recent_features", torch.zeros(0, dim), persistent=False)
        self.refiner = None
        if refine_logits:
            # Built on a forked, fixed-seed RNG: turning the option on leaves every other module's
            # initial weights (drawn after this one) as they are, so an A/B against the plain choice
            # differs in the refiner only and shares its codebook warm-up; and the refiner starts the
            # same whether it is built at step 0 or when an arm starts from a plain warm-up checkpoint.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(REFINER_INIT_SEED)
                self.refiner = ChoiceRefiner(codebook_size, dim)

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """Scaled dot products ``features @ prototypes.T / sqrt(dim)``: ``[..., D] -> [..., M]``."""
        return features @ self.prototypes.t() / math.sqrt(self.dim)

    def quantise(self, features: torch.Tensor, tau: float, hard: bool = False,
                 refinement_state: torch.Tensor | None = None) -> CodebookAssignment:
        """Replace each feature by a prototype mixture.

        Training: Gumbel-softmax sample at temperature ``tau`` (straight-through one-hot if
        ``hard``). Eval: the one-hot argmax — deterministic, the mode of the categorical — with no
        noise, so repeated calls give identical assignments. ``refinement_state``: the previous
        iteration's ``CodebookAssignment.refinement_state`` (refined choice only; None at the first).
        """
        state = None
        if self.refiner is None:
            logits = self.logits(features)
        else:
            logits, state = self.refiner(features, self.prototypes, refinement_state)
        probs = logits.softmax(dim=-1)
        if self.training:
            if tau <= 0:
                raise ValueError(f"Gumbel-softmax temperature must be > 0, got {tau}")
            weights = F.gumbel_softmax(logits, tau=tau, hard=hard, dim=-1)
        else:
            weights = F.one_hot(logits.argmax(dim=-1), self.codebook_size).to(logits.dtype)
        return CodebookAssignment(weights @ self.prototypes, weights, probs, logits, state)

    @torch.no_grad()
    def record_usage(self, features: torch.Tensor, probs: torch.Tensor) -> None:
        """Update the usage EMA from argmax assignments and remember features (training only)."""
        flat_probs = probs.reshape(-1, self.codebook_size)
        counts = torch.bincount(flat_probs.argmax(dim=-1), minlength=self.codebook_size).float()
        batch_usage = counts / counts.sum().clamp_min(1.0)
        self.usage_ema.mul_(self.usage_ema_decay).add_((1.0 - self.usage_ema_decay) * batch_usage)
        recent = torch.cat([features.detach().reshape(-1, self.dim), self.recent_features])
        self.recent_features = recent[: self.max_recent_features]

    def dead_prototypes(self, dead_usage_fraction: float) -> torch.Tensor:
        """Indices of prototypes whose EMA usage is below ``dead_usage_fraction / M``."""
        threshold = dead_usage_fraction / self.codebook_size
        return torch.nonzero(self.usage_ema < threshold).flatten()

    @torch.no_grad()
    def revive_dead_prototypes(self, dead_usage_fraction: float, noise_std: float = 1e-3) -> torch.Tensor:
        """Re-initialise dead prototypes from the worst-explained recent slot features.

        Returns the revived indices (empty if none were dead or no features were recorded yet).
        The optimiser's moment estimates for those rows are left as they are: they decay within a
        few hundred steps, and resetting them would need the optimiser here.
        """
        dead = self.dead_prototypes(dead_usage_fraction)
        candidates = self.recent_features
        if dead.numel() == 0 or candidates.shape[0] == 0:
            return dead[:0]
        live_mask = torch.ones(self.codebook_size, dtype=torch.bool, device=dead.device)
        live_mask[dead] = False
        live = self.prototypes[live_mask]
        if live.shape[0] > 0:
            nearest = torch.cdist(candidates, live).min(dim=1).values
        else:
            nearest = torch.full((candidates.shape[0],), float("inf"), device=candidates.device)
        revived = []
        for index in dead.tolist():
            if len(revived) >= candidates.shape[0]:
                break
            pick = int(torch.argmax(nearest))
            chosen = candidates[pick]
            self.prototypes[index] = chosen + noise_std * torch.randn_like(chosen)
            self.usage_ema[index] = 1.0 / self.codebook_size
            # Greedy farthest-point choice: the next revival should explain something else.
            nearest = torch.minimum(nearest, torch.linalg.vector_norm(candidates - chosen, dim=1))
            revived.append(index)
        return torch.tensor(revived, dtype=torch.long, device=dead.device)
