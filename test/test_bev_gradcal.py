"""Gradient calibration: combination math on hand-built gradients and behaviour inside models."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from ocgs_ros.bev.config import BevConfig
from ocgs_ros.bev.gradcal import (
    TASK_METHODS,
    GradientCalibrator,
    combine_task_gradients,
    equalise_modality_gradients,
    imtlg_weights,
)
from ocgs_ros.bev.losses import task_losses
from ocgs_ros.bev.model import BevFusionModel
from ocgs_ros.bev.synthetic import random_inputs
from ocgs_ros.bev.targets import collate_targets, encode_targets

torch.set_num_threads(1)


def _combine(grads, method, **kw):
    combined, _ = combine_task_gradients([torch.as_tensor(g, dtype=torch.float64)[None] for g in grads], method, **kw)
    return combined[0].numpy()


# ------------------------------------------------------------------------------------------
# Hand-built gradients
# ------------------------------------------------------------------------------------------

def test_pcgrad_matches_analytic_projection_and_removes_conflict():
    g1, g2 = np.array([1.0, 0.0]), np.array([-1.0, 1.0])  # g1 . g2 = -1 < 0: conflict
    # Analytic: g1' = g1 - (g1.g2/|g2|^2) g2 = (0.5, 0.5); g2' = g2 - (g2.g1/|g1|^2) g1 = (0, 1).
    g1_proj, g2_proj = np.array([0.5, 0.5]), np.array([0.0, 1.0])
    assert g1_proj @ g2 == pytest.approx(0.0) and g2_proj @ g1 == pytest.approx(0.0)
    result = _combine([g1, g2], "pcgrad")
    np.testing.assert_allclose(result, g1_proj + g2_proj, atol=1e-12)
    assert result @ g1 >= 0 and result @ g2 >= 0
    # The naive sum (0, 1) is orthogonal to g1: PCGrad must do strictly better on task 1.
    assert result @ g1 > (g1 + g2) @ g1


def test_pcgrad_leaves_agreeing_gradients_alone():
    g1, g2 = np.array([1.0, 0.2, 0.0]), np.array([0.5, 1.0, -0.3])
    assert g1 @ g2 > 0
    np.testing.assert_allclose(_combine([g1, g2], "pcgrad"), g1 + g2, atol=1e-12)


def test_pcgrad_three_tasks_each_projection_non_conflicting():
    rng = np.random.default_rng(3)
    grads = [rng.normal(size=6) for _ in range(3)]
    grads[1] = -grads[0] + 0.3 * rng.normal(size=6)  # force a conflict
    gen = torch.Generator().manual_seed(11)
    result = _combine(grads, "pcgrad", generator=gen)
    # Independent reference with the same random orders (same seed, same draw sequence).
    ref_gen = torch.Generator().manual_seed(11)
    total = np.zeros(6)
    for i in range(3):
        gi = grads[i].copy()
        others = [j for j in range(3) if j != i]
        for k in torch.randperm(2, generator=ref_gen).tolist():
            gj = grads[others[k]]
            if gi @ gj < 0:
                gi = gi - (gi @ gj) / (gj @ gj) * gj
        total += gi
    np.testing.assert_allclose(result, total, atol=1e-10)


def test_imtlg_equal_projections_on_every_task_direction():
    rng = np.random.default_rng(0)
    grads = [rng.normal(size=20) * s for s in (1.0, 5.0, 0.2)]
    for method in ("imtlg", "mgc"):
        combined = _combine(grads, method)
        proj = [combined @ (g / np.linalg.norm(g)) for g in grads]
        np.testing.assert_allclose(proj, proj[0], rtol=1e-9)
        assert proj[0] > 0


def test_imtlg_two_task_closed_form():
    g1, g2 = np.array([3.0, 0.0]), np.array([-1.0, 1.0])
    n1, n2 = np.linalg.norm(g1), np.linalg.norm(g2)
    weights = imtlg_weights(np.array([[g1 @ g1, g1 @ g2], [g2 @ g1, g2 @ g2]]))
    np.testing.assert_allclose(weights, [n2 / (n1 + n2), n1 / (n1 + n2)], rtol=1e-12)


def test_imtlg_parallel_tasks_fall_back_to_the_average():
    g = np.array([1.0, 2.0, -1.0])
    weights = imtlg_weights(np.array([[g @ g, 2 * g @ g], [2 * g @ g, 4 * g @ g]]))  # g and 2g
    np.testing.assert_allclose(weights, [0.5, 0.5])
    zero_task = imtlg_weights(np.array([[g @ g, 0.0], [0.0, 0.0]]))
    np.testing.assert_allclose(zero_task, [1.0, 0.0])


def test_calibrator_is_transparent_under_no_grad():
    model = ToyFusion()
    with torch.no_grad():
        plain, _, _ = model(torch.ones(2, 3))
        routed, _, _ = model(torch.ones(2, 3), GradientCalibrator("mgc"))
    assert plain["a"] == routed["a"] and plain["b"] == routed["b"]


def test_mgc_keeps_the_naive_step_size():
    g1, g2 = np.array([300.0, 10.0, 0.0]), np.array([-0.5, 1.0, 0.2])
    combined = _combine([g1, g2], "mgc")
    assert np.linalg.norm(combined) == pytest.approx(np.linalg.norm(g1 + g2), rel=1e-10)
    u1, u2 = g1 / np.linalg.norm(g1), g2 / np.linalg.norm(g2)
    assert combined @ u1 == pytest.approx(combined @ u2, rel=1e-9)


def test_partial_beta0_is_the_sum_and_beta1_equalises_up_to_the_stronger_task():
    g_det, g_map = np.array([120.0, 1.0, 0.0]), np.array([0.0, 0.3, 0.8])  # ~orthogonal, 140x apart
    assert np.allclose(_combine([g_det, g_map], "partial", beta=0.0), g_det + g_map)
    equal = _combine([g_det, g_map], "partial", beta=1.0)
    # beta = 1: the map component is raised to the detection norm, detection's is left as it is ...
    assert np.allclose(equal, g_det + np.linalg.norm(g_det) / np.linalg.norm(g_map) * g_map)
    # ... which for two tasks is the IMTL-G / mgc direction at the stronger task's scale
    mgc = _combine([g_det, g_map], "mgc")
    assert equal @ mgc / (np.linalg.norm(equal) * np.linalg.norm(mgc)) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("beta", [0.05, 0.25, 0.6])
def test_partial_raises_the_weaker_task_to_beta_of_the_stronger_and_never_lowers_a_task(beta):
    g_det, g_map, g_aux = np.array([50.0, 0.0, 0.0, 0.0]), np.array([0.0, 0.1, 0.0, 0.0]), np.array([0.0, 0.0, 40.0, 0.0])
    combined = _combine([g_det, g_map, g_aux], "partial", beta=beta)
    # orthogonal inputs: each coordinate is one task's component of the combination
    assert combined[0] == pytest.approx(50.0)  # the strongest task is untouched
    assert combined[1] == pytest.approx(beta * 50.0)  # the weak one raised to beta x the strongest norm
    assert combined[2] == pytest.approx(max(40.0, beta * 50.0))  # one already above beta x max keeps its size
    zero = _combine([g_det, np.zeros(4)], "partial", beta=beta)
    assert np.allclose(zero, g_det)  # a task without gradient stays without


def test_torchjd_methods_on_orthogonal_gradients_of_very_different_norms():
    g_det, g_map = np.array([120.0, 0.0, 0.0]), np.array([0.0, 0.6, 0.8])  # orthogonal, 120x apart
    # UPGrad: nothing conflicts, so it is the plain sum (at sum scale with match_sum_scale)
    assert np.allclose(_combine([g_det, g_map], "upgrad"), g_det + g_map, rtol=1e-6)
    # MGDA: the min-norm point of the hull, weights proportional to 1/|g|^2 -> the weaker task rules
    mgda = _combine([g_det, g_map], "mgda", match_sum_scale=False)
    lam = 1.0 / (1.0 + 120.0 ** 2)  # weight of g_det at the analytic min-norm point
    assert np.allclose(mgda, lam * g_det + (1 - lam) * g_map, rtol=1e-3, atol=1e-6)
    # Aligned-MTL: equal-norm components (like IMTL-G)
    aligned = _combine([g_det, g_map], "aligned_mtl")
    assert abs(aligned[0]) == pytest.approx(np.linalg.norm(aligned[1:]), rel=1e-4)


def test_cagrad_c0_is_the_average_and_c_positive_solves_the_primal():
    rng = np.random.default_rng(1)
    grads = [rng.normal(size=5), rng.normal(size=5)]
    grads[1] = -0.8 * grads[0] + 0.5 * rng.normal(size=5)
    mean = (grads[0] + grads[1]) / 2
    np.testing.assert_allclose(_combine(grads, "cagrad", cagrad_c=0.0, match_sum_scale=False), mean, atol=1e-12)
    np.testing.assert_allclose(_combine(grads, "cagrad", cagrad_c=0.0), 2 * mean, atol=1e-12)

    c = 0.5
    d = _combine(grads, "cagrad", cagrad_c=c, match_sum_scale=False)
    radius = c * np.linalg.norm(mean)
    assert np.linalg.norm(d - mean) == pytest.approx(radius, rel=1e-6)
    worst = min(g @ d for g in grads)
    assert worst > min(g @ mean for g in grads)
    # CAGrad maximises the worst task improvement inside the ball: no sampled point does better.
    dirs = rng.normal(size=(20000, 5))
    candidates = mean + radius * dirs / np.linalg.norm(dirs, axis=1, keepdims=True)
    sampled_best = np.max(np.min(np.stack([candidates @ g for g in grads]), axis=0))
    assert worst >= sampled_best - 1e-3 * abs(sampled_best)


def test_sample_granularity_calibrates_each_sample_separately():
    rng = np.random.default_rng(4)
    grads = [torch.as_tensor(rng.normal(size=(3, 4, 5))) for _ in range(2)]
    per_sample, weights = combine_task_gradients(grads, "imtlg", granularity="sample")
    assert weights.shape == (3, 2)
    for b in range(3):
        single, _ = combine_task_gradients([g[b:b + 1] for g in grads], "imtlg")
        torch.testing.assert_close(per_sample[b], single[0])


def test_modality_norms_equal_after_calibration():
    a, b = torch.randn(2, 3, 4, 4) * 10, torch.randn(2, 3, 4, 4) * 0.1
    target = (a.norm() + b.norm()) / 2
    out = equalise_modality_gradients([a, b])
    torch.testing.assert_close(out[0].norm(), target)
    torch.testing.assert_close(out[1].norm(), target)
    torch.testing.assert_close(out[0] / out[0].norm(), a / a.norm())  # direction untouched
    zero = torch.zeros(2, 3)
    kept = equalise_modality_gradients([zero, torch.ones(2, 3)])
    assert kept[0].abs().sum() == 0 and kept[1].norm() == pytest.approx(math.sqrt(6))
    per_sample = equalise_modality_gradients([a, b], granularity="sample")
    for s in range(2):
        assert per_sample[0][s].norm() == pytest.approx(float(per_sample[1][s].norm()), rel=1e-5)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="task_method"):
        GradientCalibrator("gradnorm")
    with pytest.raises(ValueError, match="granularity"):
        GradientCalibrator("sum", granularity="pixel")
    with pytest.raises(ValueError, match="cagrad_c"):
        GradientCalibrator("cagrad", cagrad_c=-1)
    with pytest.raises(ValueError, match="beta must be in"):
        GradientCalibrator("partial", beta=1.5)


# ------------------------------------------------------------------------------------------
# Junctions inside a small model
# ------------------------------------------------------------------------------------------

class ToyFusion(nn.Module):
    """Two modality encoders -> fuser -> shared feature -> two heads (scalar losses)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.cam, self.lid = nn.Linear(3, 4), nn.Linear(3, 4)
        self.fuse = nn.Linear(8, 6)
        self.head_a, self.head_b = nn.Linear(6, 2), nn.Linear(6, 2)

    def forward(self, x, cal=None):
        feats = {"camera": torch.tanh(self.cam(x)), "lidar": 5 * torch.tanh(self.lid(x))}
        routed = cal.route_modalities(feats) if cal else feats
        shared = torch.tanh(self.fuse(torch.cat([routed["camera"], routed["lidar"]], 1)))
        heads = cal.route_tasks(shared, ("a", "b")) if cal else {"a": shared, "b": shared}
        losses = {"a": (self.head_a(heads["a"]) ** 2).mean(), "b": (self.head_b(heads["b"]) - 3).abs().mean() * 0.1}
        return losses, shared, feats


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_junction_sees_exact_task_gradients_and_backbone_gets_the_combination():
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(2))
    model = ToyFusion()
    losses, shared, feats = model(x)
    g_a = torch.autograd.grad(losses["a"], shared, retain_graph=True)[0]
    g_b = torch.autograd.grad(losses["b"], shared, retain_graph=True)[0]
    combined, _ = combine_task_gradients([g_a, g_b], "pcgrad", generator=torch.Generator().manual_seed(7))
    want_fuse = torch.autograd.grad(shared, model.fuse.weight, combined, retain_graph=True)[0]
    want_head_a = torch.autograd.grad(losses["a"], model.head_a.weight)[0]

    model.zero_grad()
    cal = GradientCalibrator("pcgrad", modality_calibration=False, seed=7)
    losses, shared, feats = model(x, cal)
    stats = cal.step_backward(losses, shared, feats)
    torch.testing.assert_close(model.fuse.weight.grad, want_fuse)
    torch.testing.assert_close(model.head_a.weight.grad, want_head_a)  # heads: ordinary per-task grads
    cos = float((g_a * g_b).sum() / (g_a.norm() * g_b.norm()))
    assert stats.task_cosine["a|b"] == pytest.approx(cos, rel=1e-5)
    assert stats.task_grad_norm["a"] == pytest.approx(float(g_a.norm()), rel=1e-5)


def test_sum_method_equals_plain_joint_backward_on_toy_model():
    x = torch.randn(4, 3)
    model = ToyFusion()
    losses, _, _ = model(x)
    (losses["a"] + losses["b"]).backward()
    plain = _grads(model)
    model.zero_grad()
    cal = GradientCalibrator("sum", modality_calibration=False)
    losses, shared, feats = model(x, cal)
    cal.step_backward(losses, shared, feats)
    calibrated = _grads(model)
    assert plain.keys() == calibrated.keys()
    for name in plain:
        torch.testing.assert_close(calibrated[name], plain[name], msg=name)


def test_modality_calibration_rescales_what_enters_each_branch():
    x = torch.randn(6, 3)
    model = ToyFusion()
    cal = GradientCalibrator("sum", modality_calibration=False)
    losses, shared, feats = model(x, cal)
    off = cal.step_backward(losses, shared, feats)
    grads_off = _grads(model)
    model.zero_grad()
    cal = GradientCalibrator("sum", modality_calibration=True)
    losses, shared, feats = model(x, cal)
    on = cal.step_backward(losses, shared, feats)
    grads_on = _grads(model)
    before = off.modality_grad_norm_before
    assert on.modality_grad_norm_before == pytest.approx(before)
    target = (before["camera"] + before["lidar"]) / 2
    assert on.modality_grad_norm_after["camera"] == pytest.approx(target, rel=1e-5)
    assert on.modality_grad_norm_after["lidar"] == pytest.approx(target, rel=1e-5)
    # Branch gradients are linear in the incoming gradient, so they scale by the same factor.
    torch.testing.assert_close(grads_on["cam.weight"], grads_off["cam.weight"] * (target / before["camera"]))
    torch.testing.assert_close(grads_on["lid.weight"], grads_off["lid.weight"] * (target / before["lidar"]))
    torch.testing.assert_close(grads_on["fuse.weight"], grads_off["fuse.weight"])  # above the junction


def test_step_backward_rejects_miswired_calls():
    model = ToyFusion()
    x = torch.randn(2, 3)
    cal = GradientCalibrator("sum")
    losses, _, _ = model(x)  # forward without routing
    with pytest.raises(RuntimeError, match="route_tasks"):
        cal.step_backward(losses)
    losses, shared, feats = model(x, cal)
    with pytest.raises(ValueError, match="do not match"):
        cal.step_backward({"a": losses["a"]})
    with pytest.raises(ValueError, match="shared_feature"):
        cal.step_backward(losses, shared.detach())


# ------------------------------------------------------------------------------------------
# The BEV model
# ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_batch():
    cfg = BevConfig.tiny()
    inputs = random_inputs(cfg, batch=2, points_per_sample=[800, 300], seed=5)
    boxes = torch.tensor([[4.0, 1.0, 0.5, 4.2, 1.9, 1.6, 0.4, 2.0, 0.0], [7.5, -3.0, 0.6, 0.7, 0.7, 1.8, -1.0, 0.5, 0.5]])
    targets = collate_targets([encode_targets(boxes, torch.tensor([0, 2]), cfg)] * 2)
    targets["map"] = (torch.rand(2, cfg.num_map_classes, *cfg.map_grid.shape, generator=torch.Generator().manual_seed(1)) > 0.6).float()
    return cfg, inputs, targets


def test_sum_equals_plain_joint_backward_on_bev_model(tiny_batch):
    cfg, inputs, targets = tiny_batch
    torch.manual_seed(0)
    model = BevFusionModel(cfg)
    out = model(inputs)
    losses, _ = task_losses(out, targets, cfg)
    (losses["detection"] + losses["map"]).backward()
    plain = _grads(model)
    model.zero_grad()
    cal = GradientCalibrator("sum", modality_calibration=False)
    out = model(inputs, cal)
    losses, _ = task_losses(out, targets, cfg)
    cal.step_backward(losses, out.shared, out.modality_features())
    calibrated = _grads(model)
    assert plain.keys() == calibrated.keys()
    for name in plain:
        # Same maths, different float summation order: allow rounding relative to the tensor scale.
        scale = float(plain[name].abs().max()) + 1e-12
        torch.testing.assert_close(calibrated[name], plain[name], rtol=1e-4, atol=1e-5 * scale, msg=name)


@pytest.mark.parametrize("method", TASK_METHODS)
def test_every_method_reaches_both_branches(tiny_batch, method):
    cfg, inputs, targets = tiny_batch
    torch.manual_seed(0)
    model = BevFusionModel(cfg)
    cal = GradientCalibrator(method, modality_calibration=True)
    out = model(inputs, cal)
    losses, _ = task_losses(out, targets, cfg)
    stats = cal.step_backward(losses, out.shared, out.modality_features())
    groups = model.branch_parameters()
    for branch in ("camera", "lidar", "shared", "detection", "map"):
        total = sum(float(p.grad.abs().sum()) for p in groups[branch] if p.grad is not None)
        assert total > 0, f"{method}: no gradient reached the {branch} parameters"
    after = stats.modality_grad_norm_after
    assert after["camera"] == pytest.approx(after["lidar"], rel=1e-4)
    assert set(stats.task_grad_norm) == {"detection", "map"}
    assert -1.0 <= stats.task_cosine["detection|map"] <= 1.0
