"""Unsupervised GOCL loss: reconstruction + KL terms + codebook-usage prior + background smoothness.

Why each term:

* ``reconstruction`` — per-value MSE of the composited image (or, with ``target == "vit_features"``,
  of the frozen ViT's patch features: ``output.target``): the only learning signal; the slots
  must explain the image, and because intrinsic codes are quantised, they must do it with
  prototypes shared by all scenes. With ``whitened_colour_loss`` the error is taken in ZCA-whitened
  colour (ocl/colour.py), where a difference along the tabletop's weak colour axis (yellow against
  the brown table) costs as much as one along its dominant brightness axis.
* ``kl_ext`` — KL(q(ext) || N(0, I)) of each object slot's extrinsic posterior (summed over slots
  and dims, averaged over the batch). Sampling positions/scales during training makes the decoder
  robust to small placement errors, and the KL keeps the posterior a proper distribution.
* ``kl_bck`` — the same for the background latent; with only ``background_dim`` (8) dims and a
  KL price, the background cannot afford to encode objects.
* ``kl_codebook_usage`` — KL(Cat(pi_mean) || Uniform(M)), pi_mean = batch average of the slots'
  codebook distributions, each slot weighted by its (detached) mask mass. Zero when prototypes are
  used uniformly, log M when one prototype takes everything: it discourages codebook collapse.
  Mass weighting is our choice: empty slots must all draw "nothing" and so legitimately share one
  prototype; unweighted, they would be counted as collapse and pushed onto object prototypes.
* ``commitment`` — VQ-VAE's codebook + commitment terms on the argmax prototype ``p`` of each
  object slot's pre-quantisation feature ``f``: ``||sg(f) - p||^2 + beta ||f - sg(p)||^2`` (mean
  over dims), averaged over slots weighted by their detached mask mass (empty slots barely count).
  Gumbel-softmax alone lets ``f`` hover between prototypes, so the argmax — the identity — flips
  with small view changes; this term gives every prototype a compact basin. Zero without codebook.
* ``background_smoothness`` — mean absolute spatial gradient of the background slot's RGB (total
  variation). Objects are compact, high-contrast regions; a background that is penalised for
  sharp edges leaves them to object slots (our concrete form of GOLD's "small background
  regulariser").

Scale: ``reconstruction`` is a per-value MSE, the KL terms are nats per image. In ``total`` the
KL terms are divided by the number of reconstructed values (3·H·W for pixels, D·h·w for ViT
features), so the objective is a per-image ELBO
with Gaussian pixel noise of variance ``sigma^2 = kl_weight / 2``, divided by 3·H·W / (2 sigma^2):
weights then mean the same at every resolution (0.02 <-> sigma = 0.1).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .config import GoclConfig
from .model import BACKGROUND_SLOT, GoclOutput

LOSS_TERMS = ("reconstruction", "kl_ext", "kl_bck", "kl_codebook_usage", "background_smoothness",
              "commitment")


def kl_diagonal_gaussian_to_standard(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) || N(0, I)) summed over the last dim."""
    return 0.5 * (mean ** 2 + logvar.exp() - 1.0 - logvar).sum(dim=-1)


def kl_categorical_to_uniform(probs: torch.Tensor) -> torch.Tensor:
    """KL(Cat(p) || Uniform) = log M - H(p) for a probability vector ``p`` ``[M]`` (0 log 0 = 0)."""
    if probs.dim() != 1:
        raise ValueError(f"expected a probability vector [M], got shape {list(probs.shape)}")
    num = probs.shape[0]
    entropy = -torch.special.xlogy(probs, probs).sum()
    return math.log(num) - entropy


def codebook_usage(codebook_probs: torch.Tensor, slot_mass: torch.Tensor | None = None) -> torch.Tensor:
    """Batch-averaged codebook distribution ``[M]`` from per-slot pi ``[B, Ko, M]``.

    ``slot_mass`` ``[B, Ko]`` (optional) weights each slot; weights are not differentiated.
    """
    flat = codebook_probs.reshape(-1, codebook_probs.shape[-1])
    if slot_mass is None:
        return flat.mean(dim=0)
    weights = slot_mass.detach().reshape(-1, 1)
    total = weights.sum()
    if float(total) <= 0.0:
        return flat.mean(dim=0)
    return (flat * weights).sum(dim=0) / total


def total_variation(images: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between horizontal and vertical neighbours of ``[B, C, H, W]``."""
    dx = (images[..., :, 1:] - images[..., :, :-1]).abs().mean()
    dy = (images[..., 1:, :] - images[..., :-1, :]).abs().mean()
    return dx + dy


def commitment_loss(features: torch.Tensor, prototypes: torch.Tensor | None, slot_mass: torch.Tensor,
                    beta: float) -> torch.Tensor:
    """Mass-weighted ``||sg(f) - p||^2 + beta ||f - sg(p)||^2`` over ``[B, Ko, D]`` slots (0 if no codebook)."""
    if prototypes is None:
        return features.new_zeros(())
    codebook_term = (features.detach() - prototypes).pow(2).mean(dim=-1)
    commit_term = (features - prototypes.detach()).pow(2).mean(dim=-1)
    weights = slot_mass.detach()
    per_slot = codebook_term + beta * commit_term
    return (per_slot * weights).sum() / weights.sum().clamp_min(1e-8)


def reconstruction_error(reconstruction: torch.Tensor, images: torch.Tensor,
                         colour_whitening: torch.nn.Module | None = None) -> torch.Tensor:
    """Per-value MSE, in the whitened colour space when ``colour_whitening`` is given (ocl/colour.py)."""
    if colour_whitening is None:
        return F.mse_loss(reconstruction, images)
    return F.mse_loss(colour_whitening(reconstruction), colour_whitening(images))


def gocl_loss(output: GoclOutput, images: torch.Tensor, config: GoclConfig,
              colour_whitening: torch.nn.Module | None = None) -> dict[str, torch.Tensor]:
    """Named loss terms (unweighted) and their weighted sum under ``"total"``.

    ``colour_whitening``: the model's whitening module; required when ``config.whitened_colour_loss``.
    """
    if config.whitened_colour_loss and colour_whitening is None:
        raise ValueError("config.whitened_colour_loss is on but no colour_whitening module was given")
    loss_whitening = colour_whitening if config.whitened_colour_loss else None
    target = images if config.target == "pixels" else output.target
    if target is None:
        raise ValueError("config.target is 'vit_features' but the model output carries no ViT features")
    if output.reconstruction.shape != target.shape:
        raise ValueError(f"reconstruction {list(output.reconstruction.shape)} and {config.target} "
                         f"{list(target.shape)} differ in shape")
    slot_mass = output.masks[:, BACKGROUND_SLOT + 1:].mean(dim=(-2, -1))  # [B, Ko]
    terms = {
        "reconstruction": reconstruction_error(output.reconstruction, target, loss_whitening),
        "kl_ext": kl_diagonal_gaussian_to_standard(output.extrinsic_mean, output.extrinsic_logvar)
        .sum(dim=1).mean(),
        "kl_bck": kl_diagonal_gaussian_to_standard(output.background_mean, output.background_logvar).mean(),
        "kl_codebook_usage": kl_categorical_to_uniform(codebook_usage(output.codebook_probs, slot_mass)),
        "background_smoothness": total_variation(output.background_rgb),
        "commitment": commitment_loss(output.intrinsic_features, output.selected_prototypes, slot_mass,
                                      config.commitment_beta),
    }
    weights = {
        "reconstruction": config.recon_weight, "kl_ext": config.kl_ext_weight,
        "kl_bck": config.kl_bck_weight, "kl_codebook_usage": config.kl_pi_weight,
        "background_smoothness": config.background_smoothness_weight,
        "commitment": config.commitment_weight,
    }
    values_per_image = target.shape[1] * target.shape[2] * target.shape[3]
    weights["kl_ext"] /= values_per_image
    weights["kl_bck"] /= values_per_image
    terms["total"] = sum(weights[name] * terms[name] for name in LOSS_TERMS)
    return terms
