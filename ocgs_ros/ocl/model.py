"""GoclModel: encoder -> disentangled slot attention with global codebook -> broadcast decoders.

Slot layout everywhere: index 0 = background slot, 1..K-1 = object slots (K = num_object_slots + 1).

With ``target == "vit_features"`` the decoders reconstruct a frozen ViT's patch features (ocl/vit.py)
on its patch grid instead of the image (masks are still given at the image size);
``"vit_features"`` as ``encoder_input`` feeds those features to the slot encoder. The ViT is loaded
from ``config.vit_weights`` and kept outside the state dict.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .codebook import GlobalCodebook
from .colour import ColourWhitening
from .config import EXTRINSIC_POSITION_SCALE_DIMS, GoclConfig
from .decoder import BackgroundDecoder, ObjectDecoder
from .encoder import PixelEncoder, ViTFeatureEncoder
from .schedules import gumbel_tau
from .slot_attention import DisentangledSlotAttention
from .vit import FrozenFeatures, load_frozen_vit

BACKGROUND_SLOT = 0
# Posterior log-variances are clamped: exp(-12) is far below any useful noise, exp(4) is far
# above the prior's 1 — the clamp only prevents inf/NaN when training goes astray.
LOGVAR_RANGE = (-12.0, 4.0)
# Initial posterior std exp(-3) ~ 0.05 (in [-1, 1] image coordinates): small enough that early
# training is not dominated by jittered slot positions.
INITIAL_LOGVAR = -6.0


@dataclass
class GoclOutput:
    """Everything one forward pass produces (B = batch, K = all slots, Ko = object slots)."""

    # H, W: the model's image size. C, h, w: 3, H, W for pixels; the ViT's width and patch grid
    # for a feature target (masks and alpha logits are then upsampled from the patch grid).
    reconstruction: torch.Tensor  # [B, C, h, w]
    masks: torch.Tensor  # [B, K, H, W], softmax over K (index 0 = background)
    slot_rgb: torch.Tensor  # [B, K, C, h, w]
    alpha_logits: torch.Tensor  # [B, K, H, W]
    codebook_logits: torch.Tensor  # [B, Ko, M]
    codebook_probs: torch.Tensor  # [B, Ko, M] pi = softmax(logits)
    codebook_weights: torch.Tensor  # [B, Ko, M] Gumbel sample (train) / one-hot argmax (eval)
    intrinsic_features: torch.Tensor  # [B, Ko, Di] before quantisation
    selected_prototypes: torch.Tensor | None  # [B, Ko, Di] prototype of argmax pi (None without codebook)
    extrinsic_mean: torch.Tensor  # [B, Ko, E] (x, y, log sx, log sy, extra...)
    extrinsic_logvar: torch.Tensor  # [B, Ko, E]
    extrinsic_sample: torch.Tensor  # [B, Ko, E] (= mean in eval)
    background_mean: torch.Tensor  # [B, Db]
    background_logvar: torch.Tensor  # [B, Db]
    attention: torch.Tensor  # [B, K, N] last slot-attention iteration
    target: torch.Tensor | None = None  # [B, C, H, W] what reconstruction should match (ViT target only)

    @property
    def background_rgb(self) -> torch.Tensor:
        return self.slot_rgb[:, BACKGROUND_SLOT]


def _reparameterise(mean: torch.Tensor, logvar: torch.Tensor, sample: bool) -> torch.Tensor:
    if not sample:
        return mean
    return mean + (0.5 * logvar).exp() * torch.randn_like(mean)


class GoclModel(nn.Module):
    """Global object-centric learning model (unsupervised; no masks or labels needed)."""

    def __init__(self, config: GoclConfig):
        super().__init__()
        self.config = config
        di, e = config.intrinsic_dim, config.extrinsic_dim
        self.vit_features = FrozenFeatures(load_frozen_vit(config.vit_weights)) if config.uses_vit else None
        self.encoder = (ViTFeatureEncoder(config, self.vit_features.dim) if config.encoder_input == "vit_features"
                        else PixelEncoder(config))
        self.codebook = GlobalCodebook(config.codebook_size, di, config.usage_ema_decay,
                                       refine_logits=config.codebook_refine_logits)
        self.slot_attention = DisentangledSlotAttention(config)
        extra = e - EXTRINSIC_POSITION_SCALE_DIMS
        # Extrinsic posterior: mean = (attention centroid, log attention spread, learned extras);
        # log-variance of every extrinsic dim is predicted from the slot's intrinsic features.
        self.extrinsic_extra_mean = nn.Linear(di, extra) if extra > 0 else None
        self.extrinsic_logvar = nn.Linear(di, e)
        nn.init.zeros_(self.extrinsic_logvar.weight)
        nn.init.constant_(self.extrinsic_logvar.bias, INITIAL_LOGVAR)
        self.background_posterior = nn.Linear(di, 2 * config.background_dim)
        with torch.no_grad():
            self.background_posterior.bias[config.background_dim:].fill_(INITIAL_LOGVAR)
        outputs = self.reconstruction_layout()
        self.object_decoder = ObjectDecoder(config, *outputs)
        self.background_decoder = BackgroundDecoder(config, *outputs)
        # Only configs that use it carry the buffers, so older checkpoints load unchanged.
        self.colour_whitening = (ColourWhitening()
                                 if config.whitened_colour_loss or config.whitened_encoder_input else None)

    def reconstruction_layout(self) -> tuple[int, tuple[int, int], bool]:
        """(channels, (H, W), bounded) of what the decoders reconstruct."""
        cfg = self.config
        if cfg.target == "pixels":
            return 3, (cfg.image_height, cfg.image_width), True
        patch = self.vit_features.patch_size
        if cfg.image_height % patch or cfg.image_width % patch:
            raise ValueError(f"image size {cfg.image_height}x{cfg.image_width} must be a multiple of the ViT "
                             f"patch size {patch} ({cfg.vit_weights})")
        return self.vit_features.dim, (cfg.image_height // patch, cfg.image_width // patch), False

    # ----- parameter groups (GOLD trains encoder side and decoder side at different rates) ----
    def encoder_parameters(self) -> list[nn.Parameter]:
        """Encoder, slot attention, codebook and posterior heads."""
        decoder_ids = {id(p) for p in self.decoder_parameters()}
        return [p for p in self.parameters() if id(p) not in decoder_ids]

    def decoder_parameters(self) -> list[nn.Parameter]:
        return list(self.object_decoder.parameters()) + list(self.background_decoder.parameters())

    def tau_at(self, step: int) -> float:
        """Gumbel temperature of the config's schedule at training ``step``."""
        cfg = self.config
        return gumbel_tau(step, cfg.tau_start, cfg.tau_end, cfg.tau_anneal_steps, cfg.tau_anneal_start,
                          cfg.tau_schedule)

    def check_images(self, images: torch.Tensor) -> None:
        """Raise if ``images`` is not a float ``[B, 3, H, W]`` batch at the model's resolution."""
        cfg = self.config
        if not isinstance(images, torch.Tensor):
            raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}")
        if not images.is_floating_point():
            raise TypeError(f"images must be float in [0, 1], got dtype {images.dtype}")
        expected = (3, cfg.image_height, cfg.image_width)
        if images.dim() != 4 or tuple(images.shape[1:]) != expected:
            raise ValueError(f"images must have shape [B, {expected[0]}, {expected[1]}, {expected[2]}], "
                             f"got {list(images.shape)} (use GoclSegmenter to resize other sizes)")

    def forward(self, images: torch.Tensor, tau: float | None = None) -> GoclOutput:
        """Decompose and reconstruct ``images`` (float ``[B, 3, H, W]`` in [0, 1]).

        ``tau`` is the Gumbel-softmax temperature, required in training mode (use
        ``self.tau_at(step)``); eval mode ignores it and is fully deterministic.
        """
        self.check_images(images)
        cfg = self.config
        if self.training and tau is None:
            raise ValueError("training-mode forward needs tau (e.g. tau=model.tau_at(step))")
        sampling = self.training
        vit_features = self.vit_features(images) if self.vit_features is not None else None
        if cfg.encoder_input == "vit_features":
            features = self.encoder(vit_features)
        else:
            features = self.encoder(self.colour_whitening(images) if cfg.whitened_encoder_input else images)
        slots = self.slot_attention(features, self.codebook, tau=tau if tau is not None else cfg.tau_end)
        assignment = slots.assignment
        if self.training and cfg.use_codebook:
            self.codebook.record_usage(slots.intrinsic_features, assignment.probs)

        mean_parts = [slots.positions, slots.scales.log()]
        if self.extrinsic_extra_mean is not None:
            mean_parts.append(self.extrinsic_extra_mean(slots.intrinsic_features))
        extrinsic_mean = torch.cat(mean_parts, dim=-1)
        extrinsic_logvar = self.extrinsic_logvar(slots.intrinsic_features).clamp(*LOGVAR_RANGE)
        extrinsic = _reparameterise(extrinsic_mean, extrinsic_logvar, sampling)
        positions = extrinsic[..., 0:2]
        scales = extrinsic[..., 2:4].exp().clamp(cfg.min_scale, cfg.max_scale)
        extra = extrinsic[..., EXTRINSIC_POSITION_SCALE_DIMS:]

        background_mean, background_logvar = self.background_posterior(slots.background_state).chunk(2, dim=-1)
        background_logvar = background_logvar.clamp(*LOGVAR_RANGE)
        background_latent = _reparameterise(background_mean, background_logvar, sampling)

        object_rgb, object_alpha = self.object_decoder(assignment.quantised, positions, scales, extra)
        background_rgb, background_alpha = self.background_decoder(background_latent)
        slot_rgb = torch.cat([background_rgb[:, None], object_rgb], dim=1)  # [B, K, 3, H, W]
        alpha_logits = torch.cat([background_alpha[:, None], object_alpha], dim=1)  # [B, K, H, W]
        masks = alpha_logits.softmax(dim=1)
        reconstruction = (masks[:, :, None] * slot_rgb).sum(dim=1)
        if tuple(alpha_logits.shape[-2:]) != (cfg.image_height, cfg.image_width):
            # ViT target: every consumer of masks (segmenter, metrics, image fit) reads them at the
            # model's image size; the patch-grid masks only compose the feature reconstruction.
            alpha_logits = F.interpolate(alpha_logits, size=(cfg.image_height, cfg.image_width), mode="bilinear",
                                         align_corners=False)
            masks = alpha_logits.softmax(dim=1)
        return GoclOutput(
            reconstruction=reconstruction, masks=masks, slot_rgb=slot_rgb, alpha_logits=alpha_logits,
            codebook_logits=assignment.logits, codebook_probs=assignment.probs,
            codebook_weights=assignment.weights, intrinsic_features=slots.intrinsic_features,
            selected_prototypes=(self.codebook.prototypes[assignment.logits.argmax(dim=-1)]
                                 if cfg.use_codebook else None),
            extrinsic_mean=extrinsic_mean, extrinsic_logvar=extrinsic_logvar,
            extrinsic_sample=extrinsic, background_mean=background_mean,
            background_logvar=background_logvar, attention=slots.attention,
            target=vit_features if cfg.target == "vit_features" else None,
        )
