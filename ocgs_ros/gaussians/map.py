"""The object-aware Gaussian map: 3DGS parameters plus an identity feature per Gaussian.

Parameters live in a ``torch.nn.ParameterDict`` with one optimiser per parameter, the layout gsplat's
strategies and ``gsplat.strategy.ops`` work on (they run on CPU tensors too), so densification,
pruning and growth keep optimiser moments aligned with their Gaussians.

Identity: each Gaussian carries a low-dimensional feature ``f`` (default 16-d); a shared linear head
``W f + b`` gives logits over background + M codebook entries. Rendering ``f`` and decoding per pixel
is *exactly* rendering per-Gaussian logits, because compositing is linear:
``Σ w_i (W f_i + b) = W (Σ w_i f_i) + b·alpha`` — but the rasteriser composites 16 channels instead of
M+1 (33 by default), and its cost grows with channels.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
from scipy.spatial import cKDTree
from torch import nn

from ocgs_ros.gaussians.param_rows import replace_rows
from ocgs_ros.settings import positive, setting

SH_C0 = 0.28209479177387814
PARAMETER_NAMES = ("means", "quats", "scales", "opacities", "sh0", "shN", "identity")


@dataclass(frozen=True)
class GaussianMapConfig:
    sh_degree: int = 0
    identity_dim: int = 16
    num_codebook_entries: int = 32  # M; logits have M + 1 channels, channel 0 = background
    max_gaussians: int = setting(60_000, "Hard cap on the map size.", positive)
    init_opacity: float = 0.1
    min_init_scale: float = 0.002
    max_init_scale: float = 0.2
    lr_means: float = 1.6e-4
    lr_quats: float = 1e-3
    lr_scales: float = 5e-3
    lr_opacities: float = 5e-2
    lr_sh0: float = 2.5e-3
    lr_shN: float = 2.5e-3 / 20
    lr_identity: float = 5e-3
    lr_identity_head: float = 1e-3

    def __post_init__(self):
        if not 0 <= self.sh_degree <= 3 or self.identity_dim < 1 or self.num_codebook_entries < 1:
            raise ValueError(f"invalid GaussianMapConfig {self}")
        if self.max_gaussians < 1 or not 0 < self.init_opacity < 1:
            raise ValueError(f"invalid GaussianMapConfig {self}")

    @classmethod
    def from_dict(cls, values: dict) -> "GaussianMapConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"GaussianMapConfig: unknown option(s) {unknown}")
        return cls(**values)

    @property
    def num_sh_rest(self) -> int:
        return (self.sh_degree + 1) ** 2 - 1


def entries_from_logits(logits: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Identity logits over {background, entry 0..M-1} → codebook entry (int64, -1 = background).

    Two-level decision: background when P(background) >= 0.5, else the most probable entry. Taking the
    plain argmax over all M+1 channels would compare the background against *one* entry, while GOCL
    spreads an object's probability over several entries when its codebook assignment is soft — so an
    object that is 70 % "some object" would still come out as background."""
    probs = logits.float().softmax(dim=dim)
    background = probs.select(dim, 0)
    entry = probs.narrow(dim, 1, probs.shape[dim] - 1).argmax(dim=dim)
    return torch.where(background >= 0.5, torch.full_like(entry, -1), entry)


def rgb_to_sh0(rgb: torch.Tensor) -> torch.Tensor:
    return (rgb - 0.5) / SH_C0


class GaussianMap(nn.Module):
    def __init__(self, config: GaussianMapConfig | None = None):
        super().__init__()
        self.config = config or GaussianMapConfig()
        c = self.config
        empty = {
            "means": torch.zeros(0, 3), "quats": torch.zeros(0, 4), "scales": torch.zeros(0, 3),
            "opacities": torch.zeros(0), "sh0": torch.zeros(0, 1, 3), "shN": torch.zeros(0, c.num_sh_rest, 3),
            "identity": torch.zeros(0, c.identity_dim),
        }
        self.params = nn.ParameterDict({k: nn.Parameter(v) for k, v in empty.items()})
        self.identity_head = nn.Linear(c.identity_dim, c.num_codebook_entries + 1)
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.refused_by_cap = 0

    # -- sizes and activated values ---------------------------------------------------------
    @property
    def num_gaussians(self) -> int:
        return self.params["means"].shape[0]

    def quats_normalized(self) -> torch.Tensor:
        return nn.functional.normalize(self.params["quats"], dim=-1)

    def scales_act(self) -> torch.Tensor:
        return torch.exp(self.params["scales"])

    def opacities_act(self) -> torch.Tensor:
        return torch.sigmoid(self.params["opacities"])

    def colors(self) -> torch.Tensor:
        """View-independent colour (SH DC band) in [0, 1]."""
        return (self.params["sh0"][:, 0] * SH_C0 + 0.5).clamp(0.0, 1.0)

    def sh_coefficients(self) -> torch.Tensor:
        return torch.cat([self.params["sh0"], self.params["shN"]], dim=1)

    def identity_logits(self) -> torch.Tensor:
        """Per-Gaussian logits ``[N, M+1]`` (channel 0 = background)."""
        return self.identity_head(self.params["identity"])

    @torch.no_grad()
    def covers(self, points: np.ndarray, sigmas: float, neighbours: int = 4) -> np.ndarray:
        """``[K]`` bool: whether each of ``points [K, 3]`` lies within ``sigmas`` standard deviations
        of one of its ``neighbours`` nearest Gaussian centres, measured along that Gaussian's largest
        axis (an isotropic bound on its ellipsoid: a point inside it is always covered)."""
        points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        if self.num_gaussians == 0 or len(points) == 0:
            return np.zeros(len(points), dtype=bool)
        means = self.params["means"].detach().numpy()
        reach = sigmas * self.scales_act().amax(dim=1).numpy()
        distance, nearest = cKDTree(means).query(points, k=min(neighbours, self.num_gaussians))
        distance, nearest = distance.reshape(len(points), -1), nearest.reshape(len(points), -1)
        return (distance <= reach[nearest]).any(axis=1)

    @torch.no_grad()
    def identity_features_for(self, classes: torch.Tensor, margin: float) -> torch.Tensor:
        """Identity features ``[K, F]`` whose logits under the current head put each of ``classes``
        ``[K]`` (0 = background, 1 + entry) at least ``margin`` above every other class: the head's
        row of the class, scaled (``margin`` 0: the unit row). The unit row gives the class a lead
        of a few tenths at the head's initial weights, less than the spread of its biases, and far
        less than background needs under the two-level rule (P >= 1/2 against all entries); the
        mapper uses it for live frames' background Gaussians (``grow_background_margin``)."""
        weight, bias = self.identity_head.weight, self.identity_head.bias  # [C, F], [C]
        norm = weight.norm(dim=1).clamp_min(1e-6)
        unit = weight / norm[:, None]
        if margin <= 0:
            return unit[classes]
        # logit_j(alpha * unit_c) = alpha * (w_j . unit_c) + b_j; class c's lead over j grows at the rate
        # |w_c| - w_j . unit_c and starts at b_c - b_j: the scale that gives every j the margin
        rate = norm[:, None] - unit @ weight.T  # [C, C]: rate[c, j]
        start = bias[:, None] - bias[None, :]
        needed = torch.where(rate > 1e-6, (margin - start) / rate.clamp_min(1e-6), torch.zeros_like(rate))
        needed.fill_diagonal_(0.0)
        scale = needed.amax(dim=1).clamp_min(1.0)  # never below the unit row
        return unit[classes] * scale[classes, None]

    def decode_identity(self, rendered_features: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        """Rendered identity features ``[..., F]`` + alpha ``[..., 1]`` → pixel logits ``[..., M+1]``,
        equal to compositing per-Gaussian logits (see module docstring)."""
        return rendered_features @ self.identity_head.weight.T + alpha * self.identity_head.bias

    # -- optimisation -----------------------------------------------------------------------
    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """One Adam per parameter (gsplat's convention), plus one for the identity head."""
        c = self.config
        lrs = {"means": c.lr_means, "quats": c.lr_quats, "scales": c.lr_scales, "opacities": c.lr_opacities,
               "sh0": c.lr_sh0, "shN": c.lr_shN, "identity": c.lr_identity}
        self.optimizers = {name: torch.optim.Adam([{"params": [self.params[name]], "lr": lr, "name": name}],
                                                  eps=1e-15)
                           for name, lr in lrs.items()}
        self.head_optimizer = torch.optim.Adam(self.identity_head.parameters(), lr=c.lr_identity_head)
        return self.optimizers

    # -- growth and removal -----------------------------------------------------------------
    def add_gaussians(self, points, colors, scales=None, identity=None, opacity: float | None = None) -> torch.Tensor:
        """Append Gaussians at ``points [K,3]`` with ``colors [K,3]`` in [0,1]; returns their indices.

        Scales default to the mean distance to the 3 nearest new points (3DGS's initialisation),
        clamped to the configured range. At the ``max_gaussians`` cap the excess *new* points are
        refused (counted in ``refused_by_cap``): existing Gaussians are already optimised, and the
        densify/prune strategy is what frees room.
        """
        points = torch.as_tensor(np.asarray(points), dtype=torch.float32).reshape(-1, 3)
        colors = torch.as_tensor(np.asarray(colors), dtype=torch.float32).reshape(-1, 3)
        if len(points) != len(colors):
            raise ValueError(f"add_gaussians: {len(points)} points but {len(colors)} colours")
        if not torch.isfinite(points).all() or not torch.isfinite(colors).all():
            raise ValueError("add_gaussians: points/colours contain NaN or inf")
        room = self.config.max_gaussians - self.num_gaussians
        if len(points) > room:
            self.refused_by_cap += len(points) - max(room, 0)
            keep = max(room, 0)
            points, colors = points[:keep], colors[:keep]
            scales = None if scales is None else torch.as_tensor(scales, dtype=torch.float32)[:keep]
            identity = None if identity is None else torch.as_tensor(identity, dtype=torch.float32)[:keep]
        k = len(points)
        start = self.num_gaussians
        if k == 0:
            return torch.arange(start, start)
        c = self.config
        if scales is None:
            scales = torch.full((k,), c.max_init_scale)
            if k >= 2:
                neighbours = min(4, k)
                dist, _ = cKDTree(points.numpy()).query(points.numpy(), k=neighbours)
                scales = torch.as_tensor(dist[:, 1:].mean(axis=1), dtype=torch.float32)
            scales = scales.clamp(c.min_init_scale, c.max_init_scale)[:, None].expand(k, 3)
        opacity = c.init_opacity if opacity is None else opacity
        new = {
            "means": points,
            "quats": torch.tensor([[1.0, 0.0, 0.0, 0.0]]).expand(k, 4),
            "scales": torch.log(torch.as_tensor(scales, dtype=torch.float32).reshape(k, 3)),
            "opacities": torch.full((k,), math.log(opacity / (1 - opacity))),
            "sh0": rgb_to_sh0(colors)[:, None, :],
            "shN": torch.zeros(k, c.num_sh_rest, 3),
            "identity": torch.zeros(k, c.identity_dim) if identity is None
            else torch.as_tensor(identity, dtype=torch.float32).reshape(k, c.identity_dim),
        }
        self._append(new)
        return torch.arange(start, start + k)

    def _append(self, new: dict[str, torch.Tensor]) -> None:
        def param_fn(name, p):
            return nn.Parameter(torch.cat([p.detach(), new[name].to(p)]), requires_grad=p.requires_grad)

        def optimizer_fn(key, v):  # fresh Adam moments for the new rows
            return torch.cat([v, torch.zeros((len(new["means"]), *v.shape[1:]), dtype=v.dtype)])

        self._update(param_fn, optimizer_fn)

    def remove(self, mask: torch.Tensor) -> int:
        """Remove the Gaussians where ``mask`` is True (optimiser state follows); returns how many."""
        mask = torch.as_tensor(mask, dtype=torch.bool)
        if mask.shape != (self.num_gaussians,):
            raise ValueError(f"remove: mask must be [{self.num_gaussians}], got {tuple(mask.shape)}")
        keep = ~mask
        self._update(lambda name, p: nn.Parameter(p[keep], requires_grad=p.requires_grad), lambda key, v: v[keep])
        return int(mask.sum())

    def _update(self, param_fn, optimizer_fn) -> None:
        if self.optimizers:
            replace_rows(self.params, self.optimizers, param_fn, optimizer_fn)
        else:
            for name in list(self.params.keys()):
                self.params[name] = param_fn(name, self.params[name])

    # -- plain-tensor state (checkpoints, PLY sidecar) ---------------------------------------
    def to_dict(self) -> dict:
        return {"config": asdict(self.config),
                "params": {k: v.detach().clone() for k, v in self.params.items()},
                "identity_head": {k: v.detach().clone() for k, v in self.identity_head.state_dict().items()}}

    @classmethod
    def from_dict(cls, state: dict) -> "GaussianMap":
        gmap = cls(GaussianMapConfig.from_dict(state["config"]))
        for name in PARAMETER_NAMES:
            gmap.params[name] = nn.Parameter(torch.as_tensor(state["params"][name], dtype=torch.float32).clone())
        gmap.identity_head.load_state_dict(state["identity_head"])
        return gmap
