"""gsplat-style densification and pruning under a hard Gaussian cap, on CPU and CUDA alike.

What runs is gsplat's own ``DefaultStrategy`` (gsplat 1.5.3): its gradient statistics
(``_update_state``: accumulated norm of the screen-space mean gradient, normalised to [-1, 1]
screen units) and its ``gsplat.strategy.ops`` (``duplicate``, ``split``, ``remove``), which are
plain torch and keep every ParameterDict entry — the identity feature included — and the Adam
moments aligned. Our CPU rasteriser returns gsplat's non-packed ``meta`` (``means2d [C,N,2]``,
``radii [C,N,2]``, ``width``, ``height``, ``n_cameras``, ``gaussian_ids=None``), so the same
strategy object runs on either backend.

What :class:`CappedDefaultStrategy` changes, and why:

* **Hard cap.** gsplat grows every Gaussian above the gradient threshold. Here a refinement step
  prunes *first*, then grows only as many candidates as fit under ``max_gaussians`` (a split adds
  one Gaussian, a duplicate one), preferring the largest accumulated gradients; the rest are
  refused and counted. The map can therefore never exceed the cap, whatever the strategy wants.
* **No opacity reset, size pruning from ``refine_start_iter``.** An online map has no "end of
  training" to recover from a global opacity reset, so it is off (``reset_every`` is ignored; in
  gsplat 1.5.3 the reset condition ``step % reset_every == 0 & step > 0`` is never true anyway, by
  operator precedence). gsplat only prunes too-large Gaussians after ``reset_every`` steps; here
  that starts with refinement.
* **External growth/removal.** The mapper also adds Gaussians from LiDAR and prunes between
  refinements; :meth:`DensifyController.added` / :meth:`removed` keep the running statistics
  aligned with the parameters.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from gsplat.strategy import DefaultStrategy
from gsplat.strategy.ops import duplicate, remove, split


@dataclass
class CappedDefaultStrategy(DefaultStrategy):
    """gsplat's ``DefaultStrategy`` that never grows the map beyond ``max_gaussians``."""

    max_gaussians: int = 300_000
    refused_by_cap: int = 0  # candidates not grown because the cap was reached (running total)

    def step_post_backward(self, params, optimizers, state: dict[str, Any], step: int, info: dict[str, Any],
                           packed: bool = False) -> dict[str, int]:
        """Accumulate gradient statistics; on refinement steps prune, then grow within the cap.
        Returns the counts of this call (all zero on non-refinement steps)."""
        counts = {"duplicated": 0, "split": 0, "pruned": 0, "refused": 0}
        if step >= self.refine_stop_iter:
            return counts
        self._update_state(params, state, info, packed=packed)
        if step > self.refine_start_iter and step % self.refine_every == 0:
            counts["pruned"] = self._prune_gs(params, optimizers, state, step)
            counts["duplicated"], counts["split"], counts["refused"] = self._grow_capped(params, optimizers, state)
            state["grad2d"].zero_()
            state["count"].zero_()
            if self.refine_scale2d_stop_iter > 0:
                state["radii"].zero_()
        return counts

    @torch.no_grad()
    def _prune_gs(self, params, optimizers, state, step) -> int:
        is_prune = torch.sigmoid(params["opacities"].flatten()) < self.prune_opa
        is_prune |= torch.exp(params["scales"]).max(dim=-1).values > self.prune_scale3d * state["scene_scale"]
        if step < self.refine_scale2d_stop_iter:
            is_prune |= state["radii"] > self.prune_scale2d
        n_prune = int(is_prune.sum())
        if n_prune:
            remove(params=params, optimizers=optimizers, state=state, mask=is_prune)
        return n_prune

    @torch.no_grad()
    def _grow_capped(self, params, optimizers, state) -> tuple[int, int, int]:
        grads = state["grad2d"] / state["count"].clamp_min(1)
        candidates = torch.nonzero(grads > self.grow_grad2d).squeeze(1)
        room = max(self.max_gaussians - len(params["means"]), 0)
        refused = max(int(candidates.numel()) - room, 0)
        if refused:
            # each grown Gaussian adds exactly one: keep the `room` largest gradients
            candidates = candidates[torch.argsort(grads[candidates], descending=True)[:room]]
            self.refused_by_cap += refused
        n = len(params["means"])
        chosen = torch.zeros(n, dtype=torch.bool, device=grads.device)
        chosen[candidates] = True
        small = torch.exp(params["scales"]).max(dim=-1).values <= self.grow_scale3d * state["scene_scale"]
        is_dupli, is_split = chosen & small, chosen & ~small
        n_dupli, n_split = int(is_dupli.sum()), int(is_split.sum())
        if n_dupli:
            duplicate(params=params, optimizers=optimizers, state=state, mask=is_dupli)
        if n_split:
            # the duplicates just appended are not split
            is_split = torch.cat([is_split, torch.zeros(n_dupli, dtype=torch.bool, device=grads.device)])
            split(params=params, optimizers=optimizers, state=state, mask=is_split, revised_opacity=self.revised_opacity)
        return n_dupli, n_split, refused


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
        if self.refine_every < 1 or self.refine_start_iter < 0 or self.grow_grad2d <= 0 or self.scene_scale <= 0:
            raise ValueError(f"invalid DensifyConfig {self}")


class DensifyController:
    """Drives :class:`CappedDefaultStrategy` for a :class:`~ocgs_ros.gaussians.map.GaussianMap`:
    call :meth:`before_backward` with the rasteriser's ``meta`` before ``loss.backward()``, and
    :meth:`after_backward` after the optimiser step, with a running iteration counter."""

    def __init__(self, gmap, config: DensifyConfig | None = None):
        self.config = config or DensifyConfig()
        c = self.config
        self.gmap = gmap
        self.strategy = CappedDefaultStrategy(
            prune_opa=c.prune_opacity, grow_grad2d=c.grow_grad2d, grow_scale3d=c.grow_scale3d,
            prune_scale3d=c.prune_scale3d, refine_start_iter=c.refine_start_iter, refine_every=c.refine_every,
            refine_stop_iter=2**62, reset_every=2**62, max_gaussians=gmap.config.max_gaussians)
        self.strategy.check_sanity(gmap.params, gmap.optimizers)
        self.state = self.strategy.initialize_state(scene_scale=c.scene_scale)
        self.totals = {"duplicated": 0, "split": 0, "pruned": 0, "refused": 0}

    def before_backward(self, meta: dict) -> None:
        if self.config.enabled:
            self.strategy.step_pre_backward(self.gmap.params, self.gmap.optimizers, self.state, 0, meta)

    def after_backward(self, step: int, meta: dict) -> dict[str, int]:
        if not self.config.enabled:
            return {}
        if meta["means2d"].grad is None:
            raise RuntimeError("densify: meta['means2d'] has no gradient; call before_backward before backward()")
        counts = self.strategy.step_post_backward(self.gmap.params, self.gmap.optimizers, self.state, step, meta)
        for key, value in counts.items():
            self.totals[key] += value
        return counts

    # -- keep the running statistics aligned with Gaussians the mapper adds or removes ----------
    def added(self, count: int) -> None:
        for key in ("grad2d", "count", "radii"):
            value = self.state.get(key)
            if isinstance(value, torch.Tensor) and count > 0:
                self.state[key] = torch.cat([value, value.new_zeros(count)])

    def removed(self, mask: torch.Tensor) -> None:
        for key in ("grad2d", "count", "radii"):
            value = self.state.get(key)
            if isinstance(value, torch.Tensor):
                self.state[key] = value[~mask]
