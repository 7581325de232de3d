"""Configuration of the GOCL model (architecture, loss weights, schedules, optimiser).

A checkpoint stores the config as a plain dict (``to_dict``) so it loads with
``torch.load(weights_only=True)``; ``from_dict`` rebuilds and validates it.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

# Extrinsic latent layout: [x, y, log_scale_x, log_scale_y, extra...]. Position and scale are
# what the decoder needs to place and size an object; extra dims (e.g. orientation, depth order)
# are free latent pose attributes the decoder may use.
EXTRINSIC_POSITION_SCALE_DIMS = 4


@dataclass(frozen=True)
class GoclConfig:
    """Every setting of the GOCL model. Slot index 0 is always the background slot."""

    # Images (the model works at this resolution; GoclSegmenter resizes other sizes).
    image_height: int = 64
    image_width: int = 64

    # Slots: 1 background slot + ``num_object_slots`` object slots.
    num_object_slots: int = 7
    num_iterations: int = 2

    # CNN encoder: one conv per entry; overall stride = product of strides.
    encoder_channels: tuple[int, ...] = (32, 32, 32, 32)
    encoder_strides: tuple[int, ...] = (1, 2, 1, 1)
    encoder_kernel_size: int = 5
    feature_dim: int = 64

    # Slot latent sizes. GOLD's reference: intrinsic 122 + extrinsic 6, background 8.
    intrinsic_dim: int = 64
    extrinsic_dim: int = 6
    background_dim: int = 8
    mlp_hidden: int = 128
    position_hidden: int = 64
    slot_init_noise: float = 0.0  # std of Gaussian noise on learned slot inits (training only)
    min_scale: float = 0.05  # in normalised coords ([-1, 1] spans the image)
    max_scale: float = 2.0
    max_relative_coord: float = 4.0  # decoder sees at most this many scales from a slot's centre

    # Global codebook (scene-agnostic prototypes). Default > 24 simulator kinds + "empty slot".
    codebook_size: int = 32
    hard_gumbel: bool = False  # straight-through one-hot samples when True
    tau_start: float = 1.0
    tau_end: float = 0.1
    tau_anneal_steps: int = 20000

    # Spatial-broadcast decoders (per-pixel MLP on broadcast latents + coordinates).
    decoder_hidden: int = 64
    decoder_layers: int = 2  # the per-pixel decoder dominates CPU time (B*Ko*H*W*hidden^2)

    # Loss weights (reconstruction is the per-value MSE; KL weights are 2 sigma^2 of the implied
    # Gaussian pixel noise, resolution-independent — see ocl/losses.py).
    recon_weight: float = 1.0
    kl_ext_weight: float = 0.02
    kl_bck_weight: float = 0.02
    kl_pi_weight: float = 1e-2
    background_smoothness_weight: float = 1e-3

    # Collapse guard: dead-prototype revival (see ocl/codebook.py).
    usage_ema_decay: float = 0.99
    dead_usage_fraction: float = 0.05  # dead if EMA usage < fraction / codebook_size
    revive_every: int = 200  # steps between revival checks (0 disables)

    # Optimiser (GOLD: 4e-5 / 4e-4, 10k warm-up, clip 0.05 — for its own loss scale).
    lr_encoder: float = 1e-4
    lr_decoder: float = 4e-4
    warmup_steps: int = 2000
    grad_clip: float = 1.0

    def __post_init__(self) -> None:
        problems = []
        for name in ("image_height", "image_width", "num_object_slots", "num_iterations",
                     "feature_dim", "intrinsic_dim", "background_dim", "mlp_hidden",
                     "position_hidden", "codebook_size", "decoder_hidden", "decoder_layers",
                     "encoder_kernel_size"):
            if int(getattr(self, name)) < 1:
                problems.append(f"{name} must be >= 1 (got {getattr(self, name)})")
        if self.extrinsic_dim < EXTRINSIC_POSITION_SCALE_DIMS:
            problems.append(f"extrinsic_dim must be >= {EXTRINSIC_POSITION_SCALE_DIMS} "
                            f"(x, y, log-scale x, log-scale y); got {self.extrinsic_dim}")
        if len(self.encoder_channels) == 0 or len(self.encoder_channels) != len(self.encoder_strides):
            problems.append("encoder_channels and encoder_strides must be non-empty and equally long "
                            f"(got {self.encoder_channels} and {self.encoder_strides})")
        if any(int(s) < 1 for s in self.encoder_strides) or any(int(c) < 1 for c in self.encoder_channels):
            problems.append("encoder strides and channels must be >= 1")
        if self.encoder_kernel_size % 2 == 0:
            problems.append(f"encoder_kernel_size must be odd (got {self.encoder_kernel_size})")
        if not 0.0 < self.tau_end <= self.tau_start:
            problems.append(f"need 0 < tau_end <= tau_start (got {self.tau_start} -> {self.tau_end})")
        if self.tau_anneal_steps < 0 or self.warmup_steps < 0 or self.revive_every < 0:
            problems.append("tau_anneal_steps, warmup_steps and revive_every must be >= 0")
        if not 0.0 < self.min_scale < self.max_scale:
            problems.append(f"need 0 < min_scale < max_scale (got {self.min_scale}, {self.max_scale})")
        if not 0.0 <= self.usage_ema_decay < 1.0:
            problems.append(f"usage_ema_decay must be in [0, 1) (got {self.usage_ema_decay})")
        for name in ("recon_weight", "kl_ext_weight", "kl_bck_weight", "kl_pi_weight",
                     "background_smoothness_weight", "slot_init_noise", "dead_usage_fraction",
                     "lr_encoder", "lr_decoder", "grad_clip"):
            if float(getattr(self, name)) < 0:
                problems.append(f"{name} must be >= 0 (got {getattr(self, name)})")
        stride = self.total_encoder_stride
        if self.image_height % stride or self.image_width % stride:
            problems.append(f"image size {self.image_height}x{self.image_width} must be divisible by "
                            f"the encoder stride {stride}")
        if problems:
            raise ValueError("invalid GoclConfig: " + "; ".join(problems))

    # ----- derived sizes -------------------------------------------------------------------
    @property
    def num_slots(self) -> int:
        """Total slots K including the background slot (index 0)."""
        return self.num_object_slots + 1

    @property
    def total_encoder_stride(self) -> int:
        stride = 1
        for s in self.encoder_strides:
            stride *= int(s)
        return stride

    @property
    def feature_map_size(self) -> tuple[int, int]:
        stride = self.total_encoder_stride
        return self.image_height // stride, self.image_width // stride

    # ----- presets -------------------------------------------------------------------------
    @classmethod
    def tiny(cls, **overrides: Any) -> "GoclConfig":
        """32x32, small channels: fast enough for unit tests."""
        base = dict(
            image_height=32, image_width=32, num_object_slots=4, num_iterations=2,
            encoder_channels=(16, 16, 32), encoder_strides=(1, 2, 1), encoder_kernel_size=3,
            feature_dim=32, intrinsic_dim=32, background_dim=8, mlp_hidden=64, position_hidden=32,
            codebook_size=8, decoder_hidden=32, decoder_layers=2, tau_anneal_steps=200,
            lr_encoder=2e-3, lr_decoder=2e-3, warmup_steps=0, grad_clip=1.0, revive_every=20,
        )
        base.update(overrides)
        return cls(**base)

    @classmethod
    def default(cls, **overrides: Any) -> "GoclConfig":
        """64x64, CPU-trainable; codebook larger than the simulator's 24 object kinds."""
        return cls(**overrides)

    @classmethod
    def gold_reference(cls, **overrides: Any) -> "GoclConfig":
        """GOLD's public hyperparameters (128 px, 7+1 slots, 122+6 slot dims, 10 prototypes)."""
        base = dict(
            image_height=128, image_width=128, num_object_slots=7, num_iterations=2,
            encoder_channels=(64, 64, 64, 64), encoder_strides=(2, 1, 1, 1), feature_dim=128,
            intrinsic_dim=122, extrinsic_dim=6, background_dim=8, mlp_hidden=512,
            codebook_size=10, lr_encoder=4e-5, lr_decoder=4e-4, warmup_steps=10000,
            grad_clip=0.05,
        )
        base.update(overrides)
        return cls(**base)

    # ----- plain-dict round trip (checkpoints, YAML) ---------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Only ints, floats, bools and lists: safe for ``torch.load(weights_only=True)``/JSON."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = [int(v) for v in value] if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "GoclConfig":
        """Build from a dict; unknown keys are an error (they usually mean a typo or a wrong file)."""
        if not isinstance(data, Mapping):
            raise ValueError(f"GoclConfig.from_dict needs a mapping, got {type(data).__name__}")
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"unknown GoclConfig keys: {unknown}")
        kwargs: dict[str, Any] = {}
        for name, value in data.items():
            default = known[name].default
            if isinstance(default, tuple):
                kwargs[name] = tuple(int(v) for v in value)
            elif isinstance(default, bool):
                kwargs[name] = bool(value)
            elif isinstance(default, int):
                kwargs[name] = int(value)
            elif isinstance(default, float):
                kwargs[name] = float(value)
            else:
                kwargs[name] = value
        return cls(**kwargs)

