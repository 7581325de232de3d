"""Densification and pruning of the online Gaussian map, under a hard Gaussian cap, on CPU and CUDA.

:class:`CappedStrategy` subclasses gsplat's public base class ``gsplat.strategy.Strategy`` and
implements the policy and its bookkeeping itself; the row operations are gsplat's public
``gsplat.strategy.ops`` (``duplicate``, ``split``, ``remove``). Those rebuild *every* entry of the
ParameterDict — the per-Gaussian ``identity`` feature included — together with its Adam moments
and every tensor of the strategy state, so nothing here has to know which parameters exist. No
private gsplat name is used: a gsplat release that reorganises ``DefaultStrategy``'s internals does
not change what the map does.

The rules are those of gsplat's ``DefaultStrategy`` (1.5.3): accumulate, per Gaussian, the norm of
the screen-space mean gradient in normalised device units (so ``grow_grad2d`` means what it means in
gsplat) over the views where it is visible; every ``refine_every`` iterations after
``refine_start_iter``, grow the Gaussians whose mean gradient exceeds ``grow_grad2d`` — duplicate
the small ones (max scale <= ``grow_scale3d`` x scene scale), split the large ones — and prune the
transparent (``prune_opa``) and oversized (``prune_scale3d``) ones. Three changes for an online map:

* **Hard cap.** A refinement prunes *first*, then grows only as many candidates as fit under
  ``max_gaussians`` (a duplicate or a split adds exactly one), the largest gradients first; the rest
  are refused and counted. The map can never exceed the cap.
* **No opacity reset, size pruning from the first refinement.** An online map has no "end of
  training" to recover from a global opacity reset; gsplat only prunes oversized Gaussians after
  its first reset, so here that starts with refinement.
* **External growth and removal.** The mapper also adds Gaussians from LiDAR and prunes between
  refinements; :meth:`DensifyController.added` / :meth:`DensifyController.removed` keep the running
  statistics aligned with the parameters.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from gsplat.strategy import Strategy
from gsplat.strategy.ops import duplicate, remove, split

REQUIRED_PARAMETERS = ("means", "quats", "scales", "opacities")
COUNT_KEYS = ("duplicated", "split", "pruned", "refused", "deferred")


@dataclass
class CappedStrategy(Strategy):
    """gsplat's default densify/prune rules that never grow the map beyond ``max_gaussians``.

    State (from :meth:`initialize_state`): ``grad2d`` (summed gradient norms) and ``count`` (views
    seen) per Gaussian, created at the first accumulation, and ``scene_scale`` in metres."""

    max_gaussians: int
    prune_opa: float = 0.005
    grow_grad2d: float = 2e-4
    grow_scale3d: float = 0.01
    prune_scale3d: float = 0.1
    refine_start_iter: int = 100
    refine_every: int = 100

    def check_sanity(self, params, optimizers) -> None:
        super().check_sanity(params, optimizers)
        missing = [name for name in REQUIRED_PARAMETERS if name not in params]
        if missing:
            raise ValueError(f"CappedStrategy: parameters {missing} are required")

    def initialize_state(self, scene_scale: float = 1.0) -> dict[str, Any]:
        # seeded: the iteration each Gaussian's lineage was seeded at (duplicates and splits inherit
        # it through gsplat's ops, which carry every state tensor along)
        return {"grad2d": None, "count": None, "seeded": None, "scene_scale": scene_scale}

    def step_pre_backward(self, params, optimizers, state: dict[str, Any], step: int, info: dict[str, Any]) -> None:
        if "means2d" not in info:
            raise ValueError("CappedStrategy: the rasteriser's meta has no 'means2d'")
        info["means2d"].retain_grad()  # a non-leaf: its gradient is the densification signal

    def step_post_backward(self, params, optimizers, state: dict[str, Any], step: int,
                           info: dict[str, Any], lineage_window: int = 0,
                           growth_room: int | None = None) -> dict[str, int]:
        """Accumulate gradient statistics; on refinement steps prune, then grow within the cap.
        ``lineage_window`` > 0: only Gaussians whose lineage was seeded fewer than this many
        iterations ago may grow. ``growth_room``: at most this many new Gaussians besides the cap
        (the candidates beyond it are counted as ``deferred``); None: the cap alone. Returns the
        counts of this call (all zero on non-refinement steps)."""
        counts = dict.fromkeys(COUNT_KEYS, 0)
        self.accumulate(params, state, info)
        if step > self.refine_start_iter and step % self.refine_every == 0:
            counts["pruned"] = self.prune(params, optimizers, state)
            young = (step - state["seeded"]) < lineage_window if lineage_window > 0 else None
            (counts["duplicated"], counts["split"], counts["refused"],
             counts["deferred"]) = self.grow(params, optimizers, state, young, growth_room)
            state["grad2d"].zero_()
            state["count"].zero_()
        return counts

    @torch.no_grad()
    def accumulate(self, params, state: dict[str, Any], info: dict[str, Any]) -> None:
        """Add this render's screen-space gradient norms to ``grad2d`` and its visibility to ``count``.
        ``info`` is the non-packed meta of either rasteriser: ``means2d [C,N,2]`` (after backward),
        ``radii [C,N,2]``, ``width``, ``height``, ``n_cameras``."""
        grad = info["means2d"].grad
        if grad is None:
            raise RuntimeError("densify: meta['means2d'] has no gradient; call step_pre_backward before backward()")
        if info.get("gaussian_ids") is not None:
            raise ValueError("densify: packed rasteriser meta is not supported (render with packed=False)")
        n = len(params["means"])
        if grad.shape[1] != n:
            raise ValueError(f"densify: meta has {grad.shape[1]} Gaussians, the map {n}")
        if state["grad2d"] is None:
            state["grad2d"] = torch.zeros(n, device=grad.device)
            state["count"] = torch.zeros(n, device=grad.device)
            state["seeded"] = torch.zeros(n, device=grad.device)
        if len(state["grad2d"]) != n:
            raise RuntimeError(f"densify: statistics for {len(state['grad2d'])} Gaussians but the map has {n} "
                               "(report external growth/removal through DensifyController.added/removed)")
        # gradients of the pixel coordinates → normalised device units; x n_cameras undoes the mean
        # over cameras a batched loss takes (gsplat's normalisation, so thresholds carry over)
        grads = grad.clone()
        grads[..., 0] *= info["width"] / 2.0 * info["n_cameras"]
        grads[..., 1] *= info["height"] / 2.0 * info["n_cameras"]
        visible = (info["radii"] > 0).all(dim=-1)  # [C, N]
        ids = torch.where(visible)[1]
        state["grad2d"].index_add_(0, ids, grads[visible].norm(dim=-1))
        state["count"].index_add_(0, ids, torch.ones_like(ids, dtype=torch.float32))

    @torch.no_grad()
    def prune(self, params, optimizers, state: dict[str, Any]) -> int:
        """Remove transparent and oversized Gaussians; returns how many."""
        transparent = torch.sigmoid(params["opacities"].flatten()) < self.prune_opa
        oversized = torch.exp(params["scales"]).max(dim=-1).values > self.prune_scale3d * state["scene_scale"]
        doomed = transparent | oversized
        n_pruned = int(doomed.sum())
        if n_pruned:
            remove(params=params, optimizers=optimizers, state=state, mask=doomed)
        return n_pruned

    @torch.no_grad()
    def grow(self, params, optimizers, state: dict[str, Any], eligible: torch.Tensor | None = None,
             growth_room: int | None = None) -> tuple[int, int, int, int]:
        """Duplicate or split the high-gradient Gaussians (among ``eligible``, if given) that fit
        under the cap and within ``growth_room`` (if given), the largest gradients first; returns
        ``(duplicated, split, refused, deferred)``: refused by the cap, deferred by the room."""
        grads = state["grad2d"] / state["count"].clamp_min(1)
        wanted = grads > self.grow_grad2d
        if eligible is not None:
            wanted &= eligible
        candidates = torch.nonzero(wanted).squeeze(1)
        cap_room = max(self.max_gaussians - len(params["means"]), 0)
        refused = max(int(candidates.numel()) - cap_room, 0)
        room = cap_room if growth_room is None else min(cap_room, max(int(growth_room), 0))
        deferred = max(int(candidates.numel()) - refused - room, 0)
        if refused or deferred:
            candidates = candidates[torch.argsort(grads[candidates], descending=True)[:room]]
        chosen = torch.zeros(len(grads), dtype=torch.bool, device=grads.device)
        chosen[candidates] = True
        small = torch.exp(params["scales"]).max(dim=-1).values <= self.grow_scale3d * state["scene_scale"]
        is_dupli, is_split = chosen & small, chosen & ~small
        n_dupli, n_split = int(is_dupli.sum()), int(is_split.sum())
        if n_dupli:
            duplicate(params=params, optimizers=optimizers, state=state, mask=is_dupli)
        if n_split:
            # duplicates are appended at the end and are not split themselves
            is_split = torch.cat([is_split, torch.zeros(n_dupli, dtype=torch.bool, device=grads.device)])
            split(params=params, optimizers=optimizers, state=state, mask=is_split)
        return n_dupli, n_split, refused, deferred


@dataclass(frozen=True)
class DensifyConfig:
    """Densification settings in optimisation iterations of the online mapper (not gsplat's offline
    30k-step schedule: an online map refines every few keyframes for as long as it runs)."""

    enabled: bool = True
    refine_every: int = 100
    refine_start_iter: int = 100
    grow_grad2d: float = 2e-4  # gsplat's default
    grow_scale3d: float = 0.01  # x scene_scale: smaller Gaussians are duplicated, larger split
    prune_scale3d: float = 0.1  # x scene_scale: larger Gaussians are pruned
    prune_opacity: float = 0.005
    scene_scale: float = 1.0  # metres; the tabletop scenes span ~1 m

    def __post_init__(self):
        if self.refine_every < 1 or self.refine_start_iter < 0 or self.grow_grad2d <= 0 or self.scene_scale <= 0 \
                or self.grow_scale3d <= 0 or self.prune_scale3d <= 0 or not 0 <= self.prune_opacity < 1:
            raise ValueError(f"invalid DensifyConfig {self}")


class DensifyController:
    """Drives :class:`CappedStrategy` for a :class:`~ocgs_ros.gaussians.map.GaussianMap` (the cap
    is the map's ``max_gaussians``): call :meth:`before_backward` with the rasteriser's ``meta``
    before ``loss.backward()``, and :meth:`after_backward` after the optimiser step, with a running
    iteration counter. ``totals`` holds the running counts."""

    def __init__(self, gmap, config: DensifyConfig | None = None):
        self.config = config or DensifyConfig()
        c = self.config
        self.gmap = gmap
        self.strategy = CappedStrategy(
            max_gaussians=gmap.config.max_gaussians, prune_opa=c.prune_opacity, grow_grad2d=c.grow_grad2d,
            grow_scale3d=c.grow_scale3d, prune_scale3d=c.prune_scale3d, refine_start_iter=c.refine_start_iter,
            refine_every=c.refine_every)
        self.strategy.check_sanity(gmap.params, gmap.optimizers)
        self.state = self.strategy.initialize_state(scene_scale=c.scene_scale)
        self.totals = dict.fromkeys(COUNT_KEYS, 0)
        self.step = 0  # the last iteration seen (after_backward): new Gaussians' lineage starts there

    def before_backward(self, meta: dict) -> None:
        if self.config.enabled:
            self.strategy.step_pre_backward(self.gmap.params, self.gmap.optimizers, self.state, 0, meta)

    def after_backward(self, step: int, meta: dict, lineage_window: int = 0,
                       growth_room: int | None = None) -> dict[str, int]:
        """``lineage_window``, ``growth_room``: see :meth:`CappedStrategy.step_post_backward` (0 / None:
        every Gaussian may grow, up to the cap)."""
        self.step = step
        if not self.config.enabled:
            return {}
        counts = self.strategy.step_post_backward(self.gmap.params, self.gmap.optimizers, self.state, step, meta,
                                                  lineage_window, growth_room)
        for key, value in counts.items():
            self.totals[key] += value
        return counts

    # -- keep the running statistics aligned with Gaussians the mapper adds or removes ----------
    def added(self, count: int) -> None:
        """``count`` Gaussians were appended to the map: they start with empty statistics, their
        lineage seeded now."""
        if count > 0:
            for key, value in self.state.items():
                if isinstance(value, torch.Tensor):
                    self.state[key] = torch.cat([value, value.new_zeros(count, *value.shape[1:])])
            if self.state["seeded"] is not None:
                self.state["seeded"][-count:] = self.step

    def removed(self, mask: torch.Tensor) -> None:
        """The Gaussians where ``mask`` is True were removed from the map."""
        for key, value in self.state.items():
            if isinstance(value, torch.Tensor):
                if value.shape[0] != mask.shape[0]:
                    raise ValueError(f"densify: removal mask for {mask.shape[0]} Gaussians, statistics for "
                                     f"{value.shape[0]}")
                self.state[key] = value[~mask]
