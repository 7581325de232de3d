"""Step-dependent schedules: Gumbel-softmax temperature and learning-rate warm-up."""
from __future__ import annotations

import math

# Shapes of the Gumbel temperature anneal (GoclConfig.tau_schedule validates against this too).
TAU_SCHEDULES = ("exponential", "cosine")


def gumbel_tau(step: int, tau_start: float = 1.0, tau_end: float = 0.1, anneal_steps: int = 20000,
               anneal_start: int = 0, shape: str = "exponential") -> float:
    """Gumbel-softmax temperature at ``step``: ``tau_start`` until ``anneal_start``, annealed to
    ``tau_end`` at ``anneal_steps``, ``tau_end`` from then on.

    ``shape`` "exponential" (the default) decays geometrically, because what matters is the ratio
    of logit gaps to tau: each step sharpens the assignment by the same factor. "cosine" is GOLD's
    half-cosine, which lingers near both ends. ``anneal_steps == 0`` means "already annealed".
    """
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if not 0.0 < tau_end <= tau_start:
        raise ValueError(f"need 0 < tau_end <= tau_start, got {tau_start} -> {tau_end}")
    if shape not in TAU_SCHEDULES:
        raise ValueError(f"unknown tau schedule shape {shape!r}; choose one of {list(TAU_SCHEDULES)}")
    if anneal_start > 0 and anneal_start >= anneal_steps:
        raise ValueError(f"need anneal_start < anneal_steps, got {anneal_start} >= {anneal_steps}")
    if anneal_steps <= 0 or step >= anneal_steps:
        return float(tau_end)
    if step < anneal_start:
        return float(tau_start)
    fraction = (step - anneal_start) / (anneal_steps - anneal_start)
    if shape == "cosine":
        return float(tau_end + 0.5 * (tau_start - tau_end) * (1.0 + math.cos(math.pi * fraction)))
    return float(math.exp(math.log(tau_start) + fraction * (math.log(tau_end) - math.log(tau_start))))


def warmup_factor(step: int, warmup_steps: int) -> float:
    """Linear learning-rate warm-up multiplier in (0, 1]; 1 from ``warmup_steps`` on.

    Slot attention with a fresh codebook is unstable at full learning rate (slots collapse onto
    one prototype before the encoder has features worth separating), hence the ramp.
    """
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if warmup_steps <= 0:
        return 1.0
    return min(1.0, (step + 1) / warmup_steps)
