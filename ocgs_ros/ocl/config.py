"""Configuration of the GOCL model (architecture, loss weights, schedules, optimiser).

A checkpoint stores the config as a plain dict (``to_dict``) so it loads with
``torch.load(weights_only=True)``; ``from_dict`` rebuilds and validates it.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from .schedules import TAU_SCHEDULES

# Extrinsic latent layout: [x, y, log_scale_x, log_scale_y, extra...]. Position and scale are
# what the decoder needs to place and size an object; extra dims (e.g. orientation, depth order)
# are free latent pose attributes the decoder may use.
EXTRINSIC_POSITION_SCALE_DIMS = 4

# Values of ``target`` / ``encoder_input``.
FEATURE_SOURCES = ("pixels", "vit_features")
# Values of ``grad_clip_norm`` (ocl/optim.py); those of ``tau_schedule`` are the schedule's own.
GRAD_CLIP_NORMS = ("l2", "inf")


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
    # False = ablation baseline: plain slot attention, no quantisation; the slot index stands in
    # for the identity (each object slot k "selects" entry k-1), so evaluation code is shared.
    use_codebook: bool = True
    # Training recipe (read by ocl/train.py, not by the model): the first this-many steps train
    # without quantisation (as the baseline), then the prototypes are initialised by k-means of
    # the slots' intrinsic features and the codebook is switched on. Why: with random prototypes
    # the Gumbel samples hand the decoder near-random codes and short CPU runs never discovered
    # objects, while the same model without codebook did within ~1k steps.
    codebook_warmup_steps: int = 0
    # Learning-rate multiplier once the codebook is on after a warm-up (also read by train.py):
    # at the warm-up's rate the fresh codebook phase fell back to background-only solutions.
    codebook_lr_scale: float = 1.0
    hard_gumbel: bool = False  # straight-through one-hot samples when True
    tau_start: float = 1.0
    tau_end: float = 0.1
    tau_anneal_steps: int = 20000  # step at which tau reaches tau_end
    # Shape of the anneal and the step it starts at (tau_start until then). GOLD anneals with a
    # cosine between two steps of its run; "exponential" from step 0 is this project's original.
    tau_schedule: str = "exponential"
    tau_anneal_start: int = 0
    # GOLD's choice refinement: the codebook logits are slot . projected prototypes / sqrt(d), refined
    # by a GRU carried across the slot-attention iterations. Our form (ocl/codebook.py) starts
    # as the plain logits (identity projection, zero-initialised GRU read-out), so a run that turns
    # it on after the k-means warm-up starts from the same choices. Off: plain scaled dot products.
    codebook_refine_logits: bool = False

    # Spatial-broadcast decoders (per-pixel MLP on broadcast latents + coordinates).
    decoder_hidden: int = 64
    decoder_layers: int = 2  # the per-pixel decoder dominates CPU time (B*Ko*H*W*hidden^2)

    # Colour space of the reconstruction error and of the encoder input. Off: RGB. On: ZCA-whitened
    # RGB fitted on the training images (train.py), rescaled to keep the total colour variance, so
    # loss weights keep their meaning. Why: the tabletop's colours vary mostly in brightness; a
    # small solid yellow object differs from the brown table almost only along the weakest colour
    # axis (blue), so in RGB its whole area costs less than the blur of the table's checkers and
    # even the no-codebook model left it to the background (held-out IoU 0.04-0.05).
    whitened_colour_loss: bool = False
    whitened_encoder_input: bool = False

    # Loss weights (reconstruction is the per-value MSE; KL weights are 2 sigma^2 of the implied
    # Gaussian pixel noise, resolution-independent — see ocl/losses.py).
    recon_weight: float = 1.0
    kl_ext_weight: float = 0.02
    kl_bck_weight: float = 0.02
    kl_pi_weight: float = 1e-2
    background_smoothness_weight: float = 1e-3
    # VQ-style codebook + commitment term (ocl/losses.py): pulls each present slot's intrinsic
    # feature and its selected prototype towards each other, so an object's feature sits inside
    # one prototype's basin and small view changes do not flip its codebook entry. 0 = off.
    commitment_weight: float = 0.0
    commitment_beta: float = 0.25  # share of the term that moves features (rest moves prototypes)

    # Collapse guard: dead-prototype revival (see ocl/codebook.py).
    usage_ema_decay: float = 0.99
    dead_usage_fraction: float = 0.05  # dead if EMA usage < fraction / codebook_size
    revive_every: int = 200  # steps between revival checks (0 disables)

    # Optimiser (GOLD: 4e-5 / 4e-4, 10k warm-up, clip 0.05 — for its own loss scale).
    lr_encoder: float = 1e-4
    lr_decoder: float = 4e-4
    warmup_steps: int = 2000
    grad_clip: float = 1.0
    # Norm that grad_clip bounds: "l2" (global 2-norm) or "inf" (largest absolute gradient; GOLD's).
    grad_clip_norm: str = "l2"

    # What the decoders reconstruct, and what the slot encoder reads: "pixels" (RGB, the default)
    # or "vit_features" (patch features of the frozen self-supervised ViT in ``vit_weights``, a
    # local DINO / DINOv2 state-dict file; see ocl/vit.py). Why: GOLD's recipe for real objects
    # reconstructs DINO features, which group object parts where real texture and lighting make
    # pixel reconstruction favour colour blobs. With a ViT target the decoders work on its patch
    # grid (image size / patch size); the model's masks are upsampled to the image size.
    target: str = "pixels"
    encoder_input: str = "pixels"
    vit_weights: str = ""

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
        if (self.tau_anneal_steps < 0 or self.warmup_steps < 0 or self.revive_every < 0
                or self.codebook_warmup_steps < 0 or self.tau_anneal_start < 0):
            problems.append("tau_anneal_steps, tau_anneal_start, warmup_steps, revive_every and "
                            "codebook_warmup_steps must be >= 0")
        if self.tau_anneal_start > 0 and self.tau_anneal_start >= self.tau_anneal_steps:
            problems.append(f"tau_anneal_start must be < tau_anneal_steps (the step tau reaches tau_end); got "
                            f"{self.tau_anneal_start} >= {self.tau_anneal_steps}")
        if self.tau_schedule not in TAU_SCHEDULES:
            problems.append(f"tau_schedule must be one of {list(TAU_SCHEDULES)} (got {self.tau_schedule!r})")
        if self.grad_clip_norm not in GRAD_CLIP_NORMS:
            problems.append(f"grad_clip_norm must be one of {list(GRAD_CLIP_NORMS)} (got {self.grad_clip_norm!r})")
        if not 0.0 < self.min_scale < self.max_scale:
            problems.append(f"need 0 < min_scale < max_scale (got {self.min_scale}, {self.max_scale})")
        if not 0.0 <= self.usage_ema_decay < 1.0:
            problems.append(f"usage_ema_decay must be in [0, 1) (got {self.usage_ema_decay})")
        if self.codebook_lr_scale <= 0:
            problems.append(f"codebook_lr_scale must be > 0 (got {self.codebook_lr_scale})")
        for name in ("recon_weight", "kl_ext_weight", "kl_bck_weight", "kl_pi_weight",
                     "background_smoothness_weight", "commitment_weight", "commitment_beta", "slot_init_noise", "dead_usage_fraction",
                     "lr_encoder", "lr_decoder", "grad_clip"):
            if float(getattr(self, name)) < 0:
                problems.append(f"{name} must be >= 0 (got {getattr(self, name)})")
        for name in ("target", "encoder_input"):
            if getattr(self, name) not in FEATURE_SOURCES:
                problems.append(f"{name} must be one of {list(FEATURE_SOURCES)} (got {getattr(self, name)!r})")
        if self.uses_vit and not self.vit_weights:
            problems.append("target or encoder_input 'vit_features' needs vit_weights (a DINO/DINOv2 weight file)")
        if self.target == "vit_features" and self.whitened_colour_loss:
            problems.append("whitened_colour_loss applies to pixels only; turn it off with target 'vit_features'")
        if self.encoder_input == "vit_features" and self.whitened_encoder_input:
            problems.append("whitened_encoder_input applies to pixels only; turn it off with encoder_input "
                            "'vit_features'")
        if not self.use_codebook and self.num_object_slots > self.codebook_size:
            problems.append(f"without the codebook each object slot stands for one entry: need "
                            f"num_object_slots <= codebook_size (got {self.num_object_slots} > "
                            f"{self.codebook_size})")
        stride = self.total_encoder_stride
        if self.image_height % stride or self.image_width % stride:
            problems.append(f"image size {self.image_height}x{self.image_width} must be divisible by "
                            f"the encoder stride {stride}")
        if problems:
            raise ValueError("invalid GoclConfig: " + "; ".join(problems))

    # ----- derived sizes -------------------------------------------------------------------
    @property
    def uses_vit(self) -> bool:
        """Whether the model needs the frozen ViT (as reconstruction target or encoder input)."""
        return "vit_features" in (self.target, self.encoder_input)

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
    def cpu(cls, **overrides: Any) -> "GoclConfig":
        """48x48, 1 + 5 slots, small per-pixel decoder: ~0.15–0.2 s per batch-8 step on one idle CPU core.

        Sized for the GOCL tabletop scenes (ocl/data.py: 2–5 objects per view). The per-pixel
        object decoder costs B*Ko*H*W*hidden^2 per layer; 48x48, 5 object slots and one 32-wide
        hidden layer cut ``default()``'s ~3 s step (64x64, 7 slots, 2x64, batch 16) by ~15x.
        The codebook (32) exceeds the simulator's 24 kinds.

        Training recipe (measured in CPU runs, see docs/results/gocl.md): steps 0–1999 train
        without quantisation at lr 1e-3 (objects are discovered there; with the codebook on from
        step 0 they never were, and held-out FG-ARI no longer rose after ~2000 steps), then
        prototypes = k-means of slot features and the codebook phase runs at lr 2e-4
        (``codebook_lr_scale``; at 1e-3 it fell back to a background-only decomposition within
        ~500 steps) with tau from ~0.23 down and the commitment term on (at 1000 codebook steps it
        raised validation consistency from 0.35 to 0.52 and FG-ARI from 0.57 to 0.62 against the
        same phase without it). Reconstruction error and encoder input are in whitened colour
        (ocl/colour.py): on the validation set at step 4000 that halved the appearances left to
        the background (15 % -> 9 %) and raised codebook consistency from 0.45 to 0.55; the weaker
        usage prior (kl_pi_weight 1e-2 -> 1e-3) then raised it to 0.76 (NMI 0.52 -> 0.55; ~11
        prototypes in effective use instead of ~25); seed 1 of the same recipe: consistency 0.63,
        NMI 0.48.
        """
        base = dict(
            image_height=48, image_width=48, num_object_slots=5, num_iterations=2,
            encoder_channels=(32, 32, 32), encoder_strides=(1, 2, 1), encoder_kernel_size=5,
            feature_dim=64, intrinsic_dim=64, mlp_hidden=128, position_hidden=32,
            codebook_size=32, decoder_hidden=32, decoder_layers=1,
            tau_start=0.3, tau_end=0.1, tau_anneal_steps=8000,
            # A smooth, low-information background (strong TV penalty, 2 latent dims with a 10x KL
            # price) leaves the high-contrast objects to the object slots; with default()'s values
            # the background slot absorbed whole images in short CPU runs.
            background_dim=2, kl_bck_weight=0.2, background_smoothness_weight=0.5,
            lr_encoder=1e-3, lr_decoder=1e-3, warmup_steps=200, grad_clip=1.0, revive_every=200,
            codebook_warmup_steps=2000, codebook_lr_scale=0.2, commitment_weight=0.02,
            # Whitened colour (ocl/colour.py) for loss and encoder: without it the small solid
            # yellow kinds were left to the background even before the codebook phase.
            whitened_colour_loss=True, whitened_encoder_input=True,
            # A weak codebook-usage prior: the default 1e-2 pushes usage towards all 32 prototypes
            # evenly, more than there are kinds, so each kind was spread over several entries.
            kl_pi_weight=1e-3,
        )
        base.update(overrides)
        return cls(**base)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "GoclConfig":
        """A preset by name: ``tiny``, ``cpu``, ``default`` or ``gold_reference``."""
        presets = {"tiny": cls.tiny, "cpu": cls.cpu, "default": cls.default, "gold_reference": cls.gold_reference}
        if name not in presets:
            raise ValueError(f"unknown GoclConfig preset {name!r}; choose from {sorted(presets)}")
        return presets[name](**overrides)

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

