r"""Multi-level gradient calibration for multi-modal multi-task training (model-agnostic).

Two junctions are placed in the forward graph of any model:

* **task junction** at the shared feature ``F`` (the last layer of the shared backbone, here the
  BEV decoder output): each task head reads its own identity view of ``F``. In the backward
  pass the junction receives every task's gradient :math:`g_t = \partial L_t / \partial F` at
  once, replaces their sum by a calibrated combination :math:`g^*`, and lets one gradient
  continue into the backbone;
* **modality junction** at the fuser inputs (camera BEV and LiDAR BEV features): it receives the
  (already task-calibrated) gradient of every modality at once and equalises their magnitudes
  before they enter the modality branches.

Because the autograd engine runs a node's backward only after all of its output gradients have
arrived, a single ``sum(losses).backward()`` performs exactly the scheme "one backward per task
through the heads, combine at ``F``, one backward through the backbone": the heads are traversed
once per task (each head only depends on its own loss, so head parameters receive their ordinary
per-task gradients) and the backbone exactly once with ``g^*``. No extra backward pass is
needed, which is why the calibration overhead is only the small ``T x T`` Gram-matrix algebra.

Task-level methods (``g_t`` flattened to vectors, :math:`G = [g_1; \dots; g_T]`,
:math:`\Gamma = G G^\top` the Gram matrix, :math:`n_t = \|g_t\|`, :math:`u_t = g_t / n_t`).
Every method returns :math:`g^* = \sum_t w_t g_t` with weights computed from :math:`\Gamma` only:

* ``sum``    -- :math:`w_t = 1` (naive joint training, identical to ``sum(losses).backward()``).
* ``pcgrad`` -- Yu et al. 2020: for each task ``i`` (in turn), start from :math:`\tilde g_i = g_i`
  and, for every other task ``j`` in a random order (seeded ``torch.Generator``), if
  :math:`\tilde g_i \cdot g_j < 0` set :math:`\tilde g_i \leftarrow \tilde g_i -
  \frac{\tilde g_i \cdot g_j}{\|g_j\|^2} g_j`; then :math:`g^* = \sum_i \tilde g_i`.
* ``cagrad`` -- Liu et al. 2021: :math:`g_0 = \frac1T \sum_t g_t`,
  :math:`\phi = c^2 \|g_0\|^2`; solve the dual
  :math:`\min_{w \in \Delta} g_w^\top g_0 + \sqrt{\phi}\, \|g_w\|` with
  :math:`g_w = \sum_t w_t g_t` (scipy: bounded scalar search for two tasks, SLSQP otherwise);
  :math:`g^* = g_0 + \frac{\sqrt\phi}{\|g_w\|} g_w`. For ``c = 0`` this is the average.
* ``imtlg`` -- Liu et al. 2021 (IMTL-G): the combination whose projections on every unit task
  direction are equal, :math:`g^* \cdot u_1 = g^* \cdot u_t\ \forall t`, with
  :math:`\sum_t \alpha_t = 1`. With :math:`D = [g_1 - g_t]_{t \ge 2}` and
  :math:`U = [u_1 - u_t]_{t \ge 2}`: :math:`\alpha_{2:T} = g_1 U^\top (D U^\top)^{-1}`,
  :math:`\alpha_1 = 1 - \sum_{t\ge2} \alpha_t`. For two tasks
  :math:`\alpha_1 = n_2/(n_1+n_2)`, :math:`\alpha_2 = n_1/(n_1+n_2)`.
* ``mgc``    -- our reading of the seed paper's inter-gradient (task-level) calibration, whose
  exact formula we could not retrieve (see docs/gradient_calibration.md): the IMTL-G impartial
  direction computed at the shared feature (the backbone's last layer, where IMTL-G itself
  recommends computing it), rescaled to the norm of the naive sum,
  :math:`g^* = \frac{\|\sum_t g_t\|}{\|\sum_t \alpha_t g_t\|} \sum_t \alpha_t g_t`.
  The rescaling keeps the naive step size: plain IMTL-G's norm collapses towards the smaller
  task's gradient norm when task scales differ (we measured a 600x detection/map ratio at
  initialisation), which would silently shrink the backbone's learning rate; magnitude
  balancing is the job of the modality level. ``GradientCalibrator(task_method="mgc")`` also
  enables the modality-level calibration by default.

* ``partial`` -- partial equalisation (ours, issue 18): every task's component is raised to at
  least a fraction :math:`\beta \in [0, 1]` of the largest task-gradient norm and never lowered,
  :math:`w_t = \max(1, \beta\, n_{\max} / n_t)` (a zero gradient keeps :math:`w_t = 1`).
  :math:`\beta = 0` is ``sum``; :math:`\beta = 1` equalises *up* to the strongest task (for two
  tasks the IMTL-G / ``mgc`` direction, at the stronger task's scale instead of the sum's). Why:
  our task gradients at ``F`` are orthogonal and differ ~120x in norm; under AdamW (per-parameter
  normalisation) the shared decoder then serves the tasks in proportion to their gradient norms,
  so ``sum`` starves the map task and full equalisation (``mgc``) halves detection's share.
  :math:`\beta` sets the share in between and is chosen on validation data
  (:data:`DEFAULT_PARTIAL_BETA`, docs/bev.md). The stronger task's gradient is left untouched.

* ``upgrad`` / ``mgda`` / ``aligned_mtl`` -- the aggregators of the maintained ``torchjd`` library
  (UPGrad, Quinton & Rey 2024; MGDA, Sener & Koltun 2018; Aligned-MTL, Senushkin et al. 2023),
  applied through their Gramian weightings (``torchjd.aggregation.*Weighting`` called on
  :math:`\Gamma`, which is exactly what the aggregators compute from the ``[T, D]`` matrix). For our
  orthogonal task gradients UPGrad gives back the average (``sum`` up to scale), MGDA's min-norm
  point is dominated by the *weaker* task, and Aligned-MTL equalises (like IMTL-G).

``cagrad``, ``imtlg`` and the ``torchjd`` methods produce average-scale gradients (weights summing
to one for aligned tasks); with ``match_sum_scale=True`` (default) their weights are multiplied by ``T`` so that
they equal ``sum`` when the task gradients are identical, i.e. changing the method changes the
balance/direction, not the effective learning rate.

Granularity: ``"batch"`` flattens the whole ``[B, C, H, W]`` gradient into one vector per task;
``"sample"`` computes separate weights for every sample (vectors ``[C, H, W]``).

Modality level: with the combined gradients :math:`h_m` arriving at the modality features,
:math:`\bar n = \operatorname{mean}_m \|h_m\|` over modalities with non-zero gradient and
:math:`h_m \leftarrow h_m \cdot \bar n / \|h_m\|` (a zero gradient stays zero). The rule acts on
the combined, task-calibrated gradient (not per task), as in the paper's description: "before
the calibrated gradients are further propagated to the modality branches, their magnitudes will
be calibrated again to the same level". Granularity follows the task level. Under AdamW this level
is close to a no-op: Adam's step is invariant to a constant factor on a parameter's gradient, so
only the factor's step-to-step variation reaches the update (measured in docs/bev.md).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import torch
from scipy.optimize import minimize, minimize_scalar
from torch import Tensor
from torchjd.aggregation import AlignedMTLWeighting, MGDAWeighting, UPGradWeighting

# torchjd Gramian weightings by method name (stateless, so one instance each serves every call)
TORCHJD_WEIGHTINGS = {"upgrad": UPGradWeighting(), "mgda": MGDAWeighting(), "aligned_mtl": AlignedMTLWeighting()}
TASK_METHODS: tuple[str, ...] = ("sum", "pcgrad", "cagrad", "imtlg", "mgc", "partial", *TORCHJD_WEIGHTINGS)
# Chosen on the validation split (docs/bev.md, issue 18): 1.0 (equalising up to the stronger task) for
# the shipped 2000-step recipe. Shorter runs chose less: 0.25 at 1120 steps, 0.1 at 560 (until the
# shared decoder has learned detection's features, a larger share for the map costs detection).
DEFAULT_PARTIAL_BETA = 1.0
GRANULARITIES: tuple[str, ...] = ("batch", "sample")
_EPS = 1e-12


# --------------------------------------------------------------------------------------------
# Task-level combination weights from the Gram matrix
# --------------------------------------------------------------------------------------------

def gram_matrix(grads: Tensor) -> np.ndarray:
    """``[T, T]`` float64 Gram matrix of ``T`` flattened gradients (``grads`` is ``[T, ...]``)."""
    flat = grads.reshape(grads.shape[0], -1).double()
    return (flat @ flat.T).cpu().numpy()


def pcgrad_weights(gram: np.ndarray, generator: torch.Generator) -> np.ndarray:
    """PCGrad as weights on the original gradients: :math:`g^* = \\sum_t w_t g_t`.

    Every projected gradient stays a linear combination of the originals, so the projections
    can be done on coefficient vectors using only the Gram matrix.
    """
    num = gram.shape[0]
    total = np.zeros(num)
    for i in range(num):
        coeff = np.zeros(num)
        coeff[i] = 1.0
        others = [j for j in range(num) if j != i]
        for k in torch.randperm(len(others), generator=generator).tolist():
            j = others[k]
            dot = coeff @ gram[:, j]
            if dot < 0 and gram[j, j] > _EPS:
                coeff[j] -= dot / gram[j, j]
        total += coeff
    return total


def cagrad_weights(gram: np.ndarray, c: float) -> np.ndarray:
    """CAGrad weights: :math:`g^* = g_0 + (\\sqrt\\phi / \\|g_w\\|) g_w` expressed on the :math:`g_t`."""
    if c < 0:
        raise ValueError(f"CAGrad c must be >= 0, got {c}")
    num = gram.shape[0]
    mean_w = np.full(num, 1.0 / num)
    g0_norm_sq = float(mean_w @ gram @ mean_w)
    if c == 0 or g0_norm_sq <= _EPS:
        return mean_w
    sqrt_phi = c * math.sqrt(g0_norm_sq)
    gram_g0 = gram @ mean_w  # g_t . g0

    def objective(w: np.ndarray) -> float:
        return float(w @ gram_g0 + sqrt_phi * math.sqrt(max(float(w @ gram @ w), 0.0) + _EPS))

    if num == 2:
        res = minimize_scalar(lambda a: objective(np.array([a, 1 - a])), bounds=(0.0, 1.0),
                              method="bounded", options={"xatol": 1e-10})
        w = np.array([res.x, 1 - res.x])
    else:
        res = minimize(objective, mean_w, method="SLSQP", bounds=[(0.0, 1.0)] * num,
                       constraints=({"type": "eq", "fun": lambda w: w.sum() - 1.0},))
        w = np.clip(res.x, 0.0, None)
        w /= w.sum()
    gw_norm = math.sqrt(max(float(w @ gram @ w), 0.0))
    if gw_norm <= _EPS:
        return mean_w
    return mean_w + (sqrt_phi / gw_norm) * w


def imtlg_weights(gram: np.ndarray) -> np.ndarray:
    """IMTL-G weights (sum to one) giving equal projections of :math:`g^*` on every :math:`u_t`.

    Tasks with a zero gradient get weight 0 (they have no direction to be impartial to). When
    the remaining task directions are (numerically) linearly dependent the system is singular
    and any weighting is impartial along the shared directions; we then return the average.
    """
    num = gram.shape[0]
    norms = np.sqrt(np.clip(np.diag(gram), 0.0, None))
    active = np.flatnonzero(norms > math.sqrt(_EPS))
    weights = np.zeros(num)
    if active.size == 0:
        return np.full(num, 1.0 / num)
    if active.size == 1:
        weights[active[0]] = 1.0
        return weights
    sub = gram[np.ix_(active, active)]
    n = norms[active]
    cosine = sub / np.outer(n, n)
    if (cosine[~np.eye(active.size, dtype=bool)] > 1 - 1e-9).any():
        # Two tasks point the same way: (D U^T) is singular up to rounding noise.
        weights[active] = 1.0 / active.size
        return weights
    proj = sub / n[None, :]  # proj[a, b] = g_a . u_b
    ref, rest = 0, np.arange(1, active.size)
    # D U^T [i, j] = (g_ref - g_i) . (u_ref - u_j);  g_ref U^T [j] = g_ref . (u_ref - u_j)
    g_minus = proj[ref][None, :] - proj[rest]  # [(T-1), T]: (g_ref - g_i) . u_b
    d_ut = g_minus[:, [ref]] - g_minus[:, rest]
    g_ut = proj[ref, ref] - proj[ref, rest]
    scale = max(float(np.abs(d_ut).max()), _EPS)
    if np.linalg.cond(d_ut / scale) > 1e10:
        weights[active] = 1.0 / active.size
        return weights
    alpha_rest = np.linalg.solve(d_ut.T, g_ut)
    weights[active[rest]] = alpha_rest
    weights[active[ref]] = 1.0 - alpha_rest.sum()
    return weights


def partial_weights(gram: np.ndarray, beta: float) -> np.ndarray:
    """Partial equalisation: :math:`w_t = \\max(1, \\beta\\, n_{\\max} / n_t)` (zero gradients keep 1)."""
    _check_beta(beta)
    norms = np.sqrt(np.clip(np.diag(gram), 0.0, None))
    active = norms > math.sqrt(_EPS)
    weights = np.ones(gram.shape[0])
    if active.any():
        weights[active] = np.maximum(1.0, beta * norms.max() / norms[active])
    return weights


def task_weights(gram: np.ndarray, method: str, *, cagrad_c: float = 0.5,
                 generator: torch.Generator | None = None, match_sum_scale: bool = True,
                 beta: float = DEFAULT_PARTIAL_BETA) -> np.ndarray:
    """Weights :math:`w` with :math:`g^* = \\sum_t w_t g_t` for ``method`` (see module docstring)."""
    num = gram.shape[0]
    if method == "sum":
        return np.ones(num)
    if method == "partial":
        return partial_weights(gram, beta)
    if method == "pcgrad":
        return pcgrad_weights(gram, generator if generator is not None else torch.Generator().manual_seed(0))
    if method == "mgc":
        weights = imtlg_weights(gram)
        sum_norm = math.sqrt(max(float(gram.sum()), 0.0))
        combined_norm = math.sqrt(max(float(weights @ gram @ weights), 0.0))
        if combined_norm <= math.sqrt(_EPS):
            return np.ones(num)
        return weights * (sum_norm / combined_norm)
    if method == "cagrad":
        weights = cagrad_weights(gram, cagrad_c)
    elif method == "imtlg":
        weights = imtlg_weights(gram)
    elif method in TORCHJD_WEIGHTINGS:
        weights = TORCHJD_WEIGHTINGS[method](torch.from_numpy(gram)).numpy()
    else:
        raise ValueError(f"unknown task calibration method {method!r}; choose from {TASK_METHODS}")
    return weights * num if match_sum_scale else weights


def combine_task_gradients(grads: Sequence[Tensor], method: str, *, granularity: str = "batch",
                           cagrad_c: float = 0.5, generator: torch.Generator | None = None,
                           match_sum_scale: bool = True, beta: float = DEFAULT_PARTIAL_BETA
                           ) -> tuple[Tensor, np.ndarray]:
    """Combine per-task gradients of the same shape ``[B, ...]`` into one.

    Returns the combined gradient and the weights (``[T]`` for ``"batch"``, ``[B, T]`` for
    ``"sample"``).
    """
    _check_choice(granularity, GRANULARITIES, "granularity")
    stacked = torch.stack(list(grads))  # [T, B, ...]
    kwargs = dict(cagrad_c=cagrad_c, generator=generator, match_sum_scale=match_sum_scale, beta=beta)
    if granularity == "batch":
        weights = task_weights(gram_matrix(stacked), method, **kwargs)
        w = torch.as_tensor(weights, dtype=stacked.dtype, device=stacked.device)
        return torch.tensordot(w, stacked, dims=1), weights
    per_sample = np.stack([task_weights(gram_matrix(stacked[:, b]), method, **kwargs)
                           for b in range(stacked.shape[1])])
    w = torch.as_tensor(per_sample, dtype=stacked.dtype, device=stacked.device)  # [B, T]
    w = w.T.reshape(stacked.shape[:2] + (1,) * (stacked.ndim - 2))
    return (w * stacked).sum(0), per_sample


def equalise_modality_gradients(grads: Sequence[Tensor], granularity: str = "batch") -> list[Tensor]:
    """Rescale every gradient to the mean norm of the non-zero ones (per sample if requested)."""
    _check_choice(granularity, GRANULARITIES, "granularity")
    if granularity == "batch":
        norms = torch.stack([g.norm() for g in grads])  # [M]
    else:
        norms = torch.stack([g.reshape(g.shape[0], -1).norm(dim=1) for g in grads])  # [M, B]
    nonzero = norms > math.sqrt(_EPS)
    count = nonzero.sum(0).clamp(min=1)
    target = (norms * nonzero).sum(0) / count
    scale = torch.where(nonzero, target / norms.clamp(min=_EPS), torch.ones_like(norms))
    out = []
    for g, s in zip(grads, scale):
        out.append(g * (s if granularity == "batch" else s.reshape((-1,) + (1,) * (g.ndim - 1))))
    return out


# --------------------------------------------------------------------------------------------
# Graph junctions
# --------------------------------------------------------------------------------------------

class _TaskJunction(torch.autograd.Function):
    """Identity views of the shared feature, one per task; backward combines the task gradients."""

    @staticmethod
    def forward(ctx, calibrator: "GradientCalibrator", num_tasks: int, shared: Tensor):  # type: ignore[override]
        ctx.calibrator = calibrator
        return tuple(shared.view_as(shared) for _ in range(num_tasks))

    @staticmethod
    def backward(ctx, *task_grads: Tensor):  # type: ignore[override]
        return None, None, ctx.calibrator._combine_tasks(task_grads)


class _ModalityJunction(torch.autograd.Function):
    """Identity views of the modality features; backward equalises their gradient magnitudes."""

    @staticmethod
    def forward(ctx, calibrator: "GradientCalibrator", *features: Tensor):  # type: ignore[override]
        ctx.calibrator = calibrator
        return tuple(f.view_as(f) for f in features)

    @staticmethod
    def backward(ctx, *grads: Tensor):  # type: ignore[override]
        return (None, *ctx.calibrator._calibrate_modalities(grads))


# --------------------------------------------------------------------------------------------
# The calibrator
# --------------------------------------------------------------------------------------------

@dataclass
class CalibrationStats:
    """Diagnostics of one calibrated backward step (plain floats, JSON-friendly)."""

    task_grad_norm: dict[str, float] = field(default_factory=dict)
    task_cosine: dict[str, float] = field(default_factory=dict)  # key "taskA|taskB"
    task_weights: dict[str, float] = field(default_factory=dict)  # mean over samples if per-sample
    combined_grad_norm: float = float("nan")
    modality_grad_norm_before: dict[str, float] = field(default_factory=dict)
    modality_grad_norm_after: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {
            "task_grad_norm": dict(self.task_grad_norm),
            "task_cosine": dict(self.task_cosine),
            "task_weights": dict(self.task_weights),
            "combined_grad_norm": self.combined_grad_norm,
            "modality_grad_norm_before": dict(self.modality_grad_norm_before),
            "modality_grad_norm_after": dict(self.modality_grad_norm_after),
        }


class GradientCalibrator:
    """Task-level and modality-level gradient calibration for one model.

    Usage per training step::

        modal = cal.route_modalities({"camera": cam_bev, "lidar": lidar_bev})  # in forward
        shared = decoder(fuser(modal["camera"], modal["lidar"]))
        per_task = cal.route_tasks(shared, ["detection", "map"])               # in forward
        losses = {"detection": det_loss(head_det(per_task["detection"])), "map": ...}
        stats = cal.step_backward(losses, shared, {"camera": cam_bev, "lidar": lidar_bev})
        optimizer.step()

    ``route_*`` are identities in the forward pass; ``step_backward`` runs one backward pass of
    the summed losses during which the junctions apply the calibration (see module docstring).
    """

    def __init__(self, task_method: str = "mgc", modality_calibration: bool | None = None,
                 granularity: str = "batch", cagrad_c: float = 0.5, seed: int = 0,
                 match_sum_scale: bool = True, beta: float = DEFAULT_PARTIAL_BETA) -> None:
        _check_choice(task_method, TASK_METHODS, "task_method")
        _check_choice(granularity, GRANULARITIES, "granularity")
        if cagrad_c < 0:
            raise ValueError(f"cagrad_c must be >= 0, got {cagrad_c}")
        _check_beta(beta)
        self.beta = float(beta)
        self.task_method = task_method
        self.modality_calibration = (task_method == "mgc") if modality_calibration is None else bool(modality_calibration)
        self.granularity = granularity
        self.cagrad_c = cagrad_c
        self.match_sum_scale = match_sum_scale
        self.generator = torch.Generator().manual_seed(seed)
        self._task_names: tuple[str, ...] = ()
        self._shared: Tensor | None = None
        self._modality_names: tuple[str, ...] = ()
        self._modality_inputs: tuple[Tensor, ...] = ()
        self._stats = CalibrationStats()
        self._task_junction_ran = False

    def __repr__(self) -> str:
        return (f"GradientCalibrator(task_method={self.task_method!r}, modality_calibration="
                f"{self.modality_calibration}, granularity={self.granularity!r}, cagrad_c={self.cagrad_c}, beta={self.beta})")

    # -- forward-pass junctions ---------------------------------------------------------------
    def route_tasks(self, shared: Tensor, task_names: Sequence[str]) -> dict[str, Tensor]:
        """One identity view of ``shared`` per task; each head must read only its own view."""
        names = tuple(task_names)
        if len(names) < 1 or len(set(names)) != len(names):
            raise ValueError(f"task_names must be non-empty and unique, got {names}")
        if not torch.is_grad_enabled():
            return {name: shared for name in names}  # evaluation under no_grad: nothing to calibrate
        if not shared.requires_grad:
            raise ValueError("route_tasks: the shared feature does not require grad (no backbone to train?)")
        self._task_names, self._shared = names, shared
        self._stats = CalibrationStats()
        self._task_junction_ran = False
        return dict(zip(names, _TaskJunction.apply(self, len(names), shared)))

    def route_modalities(self, features: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Identity views of the modality features (the fuser inputs)."""
        if len(features) < 1:
            raise ValueError("route_modalities needs at least one modality feature")
        if not torch.is_grad_enabled():
            return dict(features)
        names = tuple(features)
        tensors = tuple(features[n] for n in names)
        self._modality_names, self._modality_inputs = names, tensors
        if not any(t.requires_grad for t in tensors):
            return dict(features)
        return dict(zip(names, _ModalityJunction.apply(self, *tensors)))

    # -- backward -----------------------------------------------------------------------------
    def step_backward(self, losses: Mapping[str, Tensor], shared_feature: Tensor | None = None,
                      modality_features: Mapping[str, Tensor] | None = None) -> CalibrationStats:
        """Backward of ``sum(losses)`` with calibration at the routed junctions; returns stats.

        ``shared_feature`` / ``modality_features`` are the tensors given to ``route_tasks`` /
        ``route_modalities`` in this step's forward pass (checked, so a mis-wired model fails
        loudly instead of silently training without calibration).
        """
        if self._shared is None:
            raise RuntimeError("step_backward called before route_tasks(): the model forward must "
                               "route its shared feature through the calibrator")
        if set(losses) != set(self._task_names):
            raise ValueError(f"losses {sorted(losses)} do not match the routed tasks {sorted(self._task_names)}")
        if shared_feature is not None and shared_feature is not self._shared:
            raise ValueError("shared_feature is not the tensor routed through route_tasks() in this step")
        if modality_features is not None:
            routed = dict(zip(self._modality_names, self._modality_inputs))
            for name, tensor in modality_features.items():
                if routed.get(name) is not tensor:
                    raise ValueError(f"modality feature {name!r} was not routed through route_modalities() in this step")
        for name, loss in losses.items():
            if loss.ndim != 0:
                raise ValueError(f"loss {name!r} must be a scalar, got shape {tuple(loss.shape)}")
        total = torch.stack([losses[n] for n in self._task_names]).sum()
        total.backward()
        if not self._task_junction_ran:
            raise RuntimeError("the task junction received no gradient: the losses do not depend on route_tasks() outputs")
        stats = self._stats
        self._shared, self._modality_inputs = None, ()
        return stats

    # -- called from the junctions --------------------------------------------------------------
    def _combine_tasks(self, task_grads: Sequence[Tensor]) -> Tensor:
        self._task_junction_ran = True
        names = self._task_names
        gram = gram_matrix(torch.stack(list(task_grads)))
        norms = np.sqrt(np.clip(np.diag(gram), 0.0, None))
        stats = self._stats
        stats.task_grad_norm = {n: float(v) for n, v in zip(names, norms)}
        stats.task_cosine = {
            f"{names[i]}|{names[j]}": float(gram[i, j] / max(norms[i] * norms[j], _EPS))
            for i in range(len(names)) for j in range(i + 1, len(names))
        }
        combined, weights = combine_task_gradients(
            task_grads, self.task_method, granularity=self.granularity, cagrad_c=self.cagrad_c,
            generator=self.generator, match_sum_scale=self.match_sum_scale, beta=self.beta)
        mean_weights = weights if weights.ndim == 1 else weights.mean(0)
        stats.task_weights = {n: float(w) for n, w in zip(names, mean_weights)}
        stats.combined_grad_norm = float(combined.norm())
        return combined

    def _calibrate_modalities(self, grads: Sequence[Tensor]) -> list[Tensor]:
        names = self._modality_names
        self._stats.modality_grad_norm_before = {n: float(g.norm()) for n, g in zip(names, grads)}
        out = equalise_modality_gradients(grads, self.granularity) if self.modality_calibration else list(grads)
        self._stats.modality_grad_norm_after = {n: float(g.norm()) for n, g in zip(names, out)}
        return out


def _check_choice(value: str, choices: Sequence[str], what: str) -> None:
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}; choose from {tuple(choices)}")


def _check_beta(beta: float) -> None:
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"partial-equalisation beta must be in [0, 1], got {beta}")
