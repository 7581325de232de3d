"""Step-dependent schedules: Gumbel-softmax temperature and learning-rate warm-up."""
from __future__ import annotations

import math


def gumbel_tau(step: int, tau_start: float = 1.0, tau_end: float = 0.1, anneal_steps: int = 20000) -> float:
    """Gumbel-softmax temperature at ``step``: exponential decay ``tau_start -> tau_end``.

    Exponential (not linear) because what matters is the ratio of logit gaps to tau: each step
    sharpens the assignment by the same factor. Exactly ``tau_start`` at step 0 and exactly
    ``tau_end`` from ``anneal_steps`` on (``anneal_steps == 0`` means "already annealed").
    """
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if not 0.0 < tau_end <= tau_start:
        raise ValueError(f"need 0 < tau_end <= tau_start, got {tau_start} -> {tau_end}")
    if anneal_steps <= 0 or step >= anneal_steps:
        return float(tau_end)
    fraction = step / anneal_steps
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
