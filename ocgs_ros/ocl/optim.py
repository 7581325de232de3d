"""One optimisation step of GOCL (optimiser with encoder/decoder rates, warm-up, clipping, revival).

The training *command* (data loading, logging, checkpoint cadence) is built on this later; this
module holds only what every training loop must do the same way.
"""
from __future__ import annotations

import torch

from .config import GoclConfig
from .losses import gocl_loss
from .model import GoclModel
from .schedules import warmup_factor


def build_optimizer(model: GoclModel) -> torch.optim.Adam:
    """Adam with two groups: encoder side (``lr_encoder``) and decoders (``lr_decoder``)."""
    cfg = model.config
    groups = [
        {"params": model.encoder_parameters(), "lr": cfg.lr_encoder, "base_lr": cfg.lr_encoder,
         "name": "encoder"},
        {"params": model.decoder_parameters(), "lr": cfg.lr_decoder, "base_lr": cfg.lr_decoder,
         "name": "decoder"},
    ]
    return torch.optim.Adam(groups)


def train_step(model: GoclModel, optimizer: torch.optim.Optimizer, images: torch.Tensor,
               step: int) -> dict[str, float]:
    """Forward at the scheduled tau, backward, clip, step; every ``revive_every`` steps revive
    dead prototypes. Returns the loss terms as floats plus ``tau``, ``lr_scale``, ``grad_norm``
    and ``revived`` (number of prototypes re-initialised this step)."""
    cfg: GoclConfig = model.config
    model.train()
    scale = warmup_factor(step, cfg.warmup_steps)
    for group in optimizer.param_groups:
        group["lr"] = group.get("base_lr", group["lr"]) * scale
    tau = model.tau_at(step)
    output = model(images, tau=tau)
    terms = gocl_loss(output, images, cfg, model.colour_whitening)
    optimizer.zero_grad(set_to_none=True)
    terms["total"].backward()
    max_norm = cfg.grad_clip if cfg.grad_clip > 0 else float("inf")
    norm_type = float("inf") if cfg.grad_clip_norm == "inf" else 2.0
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm, norm_type=norm_type)
    if not torch.isfinite(grad_norm):
        raise FloatingPointError(f"non-finite gradient norm at step {step}: {float(grad_norm)}")
    optimizer.step()
    revived = 0
    if cfg.revive_every > 0 and step > 0 and step % cfg.revive_every == 0:
        revived = int(model.codebook.revive_dead_prototypes(cfg.dead_usage_fraction).numel())
    result = {name: float(value.detach()) for name, value in terms.items()}
    result.update(tau=tau, lr_scale=scale, grad_norm=float(grad_norm), revived=float(revived))
    return result
