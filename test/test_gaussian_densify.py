"""Densify/prune through gsplat's public Strategy interface on CPU, via our rasteriser's meta, under the
hard cap."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from gsplat.strategy import DefaultStrategy, Strategy

import ocgs_ros
from ocgs_ros.gaussians.densify import CappedStrategy, DensifyConfig, DensifyController
from ocgs_ros.gaussians.map import GaussianMap, GaussianMapConfig
from ocgs_ros.gaussians.mapper import OnlineMapper

W = H = 24
K = torch.tensor([[30.0, 0, 11.5], [0, 30.0, 11.5], [0, 0, 1]])


def _fit(max_gaussians: int, steps: int, config: DensifyConfig, n: int = 60, lineage_window: int = 0):
    g = np.random.default_rng(0)
    mapper = OnlineMapper(GaussianMapConfig(num_codebook_entries=3, max_gaussians=max_gaussians))
    points = np.c_[g.uniform(-0.3, 0.3, (n, 2)), g.uniform(1.8, 2.2, n)]
    mapper.map.add_gaussians(points, g.uniform(size=(n, 3)), identity=torch.randn(n, 16))
    mapper.densifier = DensifyController(mapper.map, config)
    target = torch.from_numpy(g.uniform(size=(H, W, 3))).float()  # noise: every Gaussian wants to grow
    view = torch.eye(4)
    sizes = []
    for step in range(1, steps + 1):
        rgb, _, _, _, meta = mapper.render_with_meta(view, K, W, H)
        loss = (rgb - target).abs().mean()
        for opt in mapper.map.optimizers.values():
            opt.zero_grad(set_to_none=True)
        mapper.densifier.before_backward(meta)
        loss.backward()
        for opt in mapper.map.optimizers.values():
            opt.step()
        mapper.densifier.after_backward(step, meta, lineage_window)
        sizes.append(mapper.map.num_gaussians)
    return mapper, sizes


def test_densify_grows_but_never_beyond_the_cap():
    config = DensifyConfig(refine_every=2, refine_start_iter=1, grow_grad2d=1e-6)
    mapper, sizes = _fit(max_gaussians=100, steps=12, config=config)
    totals = mapper.densifier.totals
    assert max(sizes) <= 100 and sizes[-1] > 60  # it grew, and stopped at the cap
    assert totals["duplicated"] + totals["split"] > 0 and totals["refused"] > 0
    n = mapper.map.num_gaussians
    for name, opt in mapper.map.optimizers.items():  # every parameter (identity too) and its Adam moments
        param = mapper.map.params[name]
        assert param.shape[0] == n and opt.param_groups[0]["params"][0] is param
        if name in ("means", "sh0", "opacities"):  # the ones the photometric loss stepped
            assert opt.state[param]["exp_avg"].shape[0] == n
    assert mapper.densifier.state["grad2d"].shape == (n,)


def test_a_lineage_densifies_only_within_its_window_after_seeding():
    # every Gaussian wants to grow (noise target, tiny threshold); refinements at even steps
    config = DensifyConfig(refine_every=2, refine_start_iter=1, grow_grad2d=1e-6)
    mapper, sizes = _fit(max_gaussians=100_000, steps=12, config=config, lineage_window=5)
    assert sizes[3] > sizes[1]  # step 4: seeded at 0, inside the window (step 2 pruned first)
    assert len(set(sizes[3:])) == 1  # from step 6 the lineage (children included) is settled
    _, unbounded = _fit(max_gaussians=100_000, steps=12, config=config, lineage_window=0)
    assert unbounded[:4] == sizes[:4] and unbounded[-1] > 4 * sizes[-1]  # without it, doubling every refinement
    assert (mapper.densifier.state["seeded"] == 0).all()  # duplicates and splits inherit the seeding
    # Gaussians seeded now (as the mapper's growth from a new view) densify; the settled ones do not
    settled = mapper.map.num_gaussians
    g = np.random.default_rng(1)
    added = len(mapper.map.add_gaussians(np.c_[g.uniform(-0.3, 0.3, (10, 2)), np.full(10, 2.0)],
                                         g.uniform(size=(10, 3)), identity=torch.randn(10, 16)))
    mapper.densifier.added(added)
    assert (mapper.densifier.state["seeded"][-added:] == 12).all()

    def refine(step: int, window: int) -> dict:
        rgb, _, _, _, meta = mapper.render_with_meta(torch.eye(4), K, W, H)
        mapper.densifier.before_backward(meta)
        rgb.sum().backward()
        return mapper.densifier.after_backward(step, meta, window)

    counts = refine(14, 5)
    assert 0 < counts["duplicated"] + counts["split"] <= added
    # without a window (offline) the settled lineage grows too
    counts = refine(16, 0)
    assert counts["duplicated"] + counts["split"] > added


def test_without_cap_pressure_all_candidates_grow_and_prune_removes_transparent():
    config = DensifyConfig(refine_every=2, refine_start_iter=1, grow_grad2d=1e-6, prune_opacity=0.05)
    mapper, sizes = _fit(max_gaussians=10_000, steps=2, config=config, n=40)
    with torch.no_grad():
        mapper.map.params["opacities"][:5] = -10.0  # transparent: pruned at the next refinement
    rgb, _, _, _, meta = mapper.render_with_meta(torch.eye(4), K, W, H)
    before = mapper.map.num_gaussians
    mapper.densifier.before_backward(meta)
    rgb.sum().backward()
    counts = mapper.densifier.after_backward(4, meta)
    assert counts["pruned"] >= 5 and counts["refused"] == 0
    assert mapper.map.num_gaussians == before - counts["pruned"] + counts["duplicated"] + counts["split"]


def test_external_growth_keeps_statistics_aligned_and_missing_grad_is_an_error():
    gmap = GaussianMap(GaussianMapConfig(num_codebook_entries=2))
    gmap.add_gaussians(np.c_[np.zeros((4, 2)), np.full(4, 2.0)], np.full((4, 3), 0.5))
    gmap.make_optimizers()
    controller = DensifyController(gmap, DensifyConfig())
    controller.state["grad2d"] = torch.ones(4)
    controller.state["count"] = torch.ones(4)
    controller.added(3)
    assert controller.state["grad2d"].tolist() == [1, 1, 1, 1, 0, 0, 0]
    controller.removed(torch.tensor([True, False, False, False, False, True, False]))
    assert controller.state["count"].tolist() == [1, 1, 1, 0, 0]
    meta = {"means2d": torch.zeros(1, 4, 2, requires_grad=True)}
    with pytest.raises(RuntimeError, match="no gradient"):
        controller.after_backward(1, meta)
    with pytest.raises(ValueError):
        DensifyConfig(refine_every=0)


def _tagged_map(opacity_logits, scales, max_gaussians):
    """A map whose Gaussian i carries tag i + 1 in identity[:, 0] and in every Adam moment row, so
    each row can be traced back to the Gaussian it came from after the strategy rebuilds the tensors."""
    n = len(scales)
    gmap = GaussianMap(GaussianMapConfig(num_codebook_entries=2, max_gaussians=max_gaussians))
    colors = np.random.default_rng(0).uniform(size=(n, 3))
    gmap.add_gaussians(np.c_[np.arange(n) * 0.1, np.zeros(n), np.full(n, 2.0)], colors)
    gmap.make_optimizers()
    for name, opt in gmap.optimizers.items():  # one step creates the Adam state
        gmap.params[name].grad = torch.ones_like(gmap.params[name])
        opt.step()
    tags = torch.arange(1.0, n + 1)
    with torch.no_grad():
        gmap.params["opacities"][:] = torch.tensor(opacity_logits)
        gmap.params["scales"][:] = torch.log(torch.tensor(scales))[:, None]
        gmap.params["identity"][:, 0] = tags
    for name, opt in gmap.optimizers.items():
        param = gmap.params[name]
        for key in ("exp_avg", "exp_avg_sq"):
            opt.state[param][key] = tags.view(-1, *[1] * (param.dim() - 1)).expand_as(param).clone()
    return gmap


def test_strategy_keeps_cap_and_carries_identity_and_adam_rows_through_prune_duplicate_split():
    torch.manual_seed(0)
    # 0 transparent, 1 small (duplicate), 2 large (split), 3 small but weaker gradient (refused by the
    # cap), 4 small with a gradient under the threshold (kept as is), 5 oversized (pruned)
    gmap = _tagged_map(opacity_logits=[-10.0, 0, 0, 0, 0, 0], scales=[0.005, 0.005, 0.05, 0.005, 0.005, 0.5],
                       max_gaussians=6)
    before = {name: p.detach().clone() for name, p in gmap.params.items()}
    controller = DensifyController(gmap, DensifyConfig(refine_every=1, refine_start_iter=0, grow_grad2d=0.1))
    assert controller.strategy.max_gaussians == 6  # the map's cap, not a default of its own
    means2d = torch.zeros(1, 6, 2, requires_grad=True)
    meta = {"means2d": means2d, "radii": torch.ones(1, 6, 2), "width": 2, "height": 2, "n_cameras": 1,
            "gaussian_ids": None}
    controller.before_backward(meta)
    means2d.grad = torch.tensor([[[1.0, 0], [0.9, 0], [0.8, 0], [0.5, 0], [0.01, 0], [1.0, 0]]])
    counts = controller.after_backward(1, meta)

    assert counts == {"pruned": 2, "duplicated": 1, "split": 1, "refused": 1, "deferred": 0}
    assert gmap.num_gaussians == 6  # 6 - 2 pruned + 1 duplicate + 1 split child: exactly the cap
    origin = gmap.params["identity"][:, 0].round().long().tolist()
    assert origin == [2, 4, 5, 2, 3, 3]  # survivors, the duplicate of 1, the two halves of 2
    source = torch.tensor(origin) - 1
    for name, opt in gmap.optimizers.items():
        param = gmap.params[name]
        assert param.shape[0] == 6 and opt.param_groups[0]["params"][0] is param
        expected_moment = torch.tensor([2.0, 4, 5, 0, 0, 0])  # grown rows start with fresh moments
        for key in ("exp_avg", "exp_avg_sq") if param[0].numel() else ():  # shN is empty at SH degree 0
            assert torch.equal(opt.state[param][key].reshape(6, -1)[:, 0], expected_moment), (name, key)
        if name not in ("means", "scales"):  # split moves and shrinks its halves; the rest is copied
            assert torch.equal(param.detach(), before[name][source]), name
    assert torch.equal(gmap.params["means"][:4].detach(), before["means"][source[:4]])
    assert not torch.equal(gmap.params["means"][4], gmap.params["means"][5])
    assert torch.allclose(gmap.scales_act()[4:], torch.full((2, 3), 0.05 / 1.6))
    assert controller.state["grad2d"].tolist() == [0.0] * 6 and controller.state["count"].shape == (6,)


def test_strategy_rejects_meta_out_of_step_with_the_map():
    gmap = _tagged_map([0.0] * 3, [0.005] * 3, max_gaussians=10)
    controller = DensifyController(gmap, DensifyConfig(refine_every=1, refine_start_iter=0))
    means2d = torch.zeros(1, 2, 2, requires_grad=True)
    means2d.grad = torch.ones(1, 2, 2)
    meta = {"means2d": means2d, "radii": torch.ones(1, 2, 2), "width": 2, "height": 2, "n_cameras": 1}
    with pytest.raises(ValueError, match="meta has 2 Gaussians, the map 3"):
        controller.after_backward(1, meta)
    with pytest.raises(ValueError, match="packed"):
        controller.after_backward(1, {**meta, "gaussian_ids": torch.zeros(2, dtype=torch.long)})


def test_only_gsplats_public_strategy_interface_is_used():
    assert issubclass(CappedStrategy, Strategy) and not issubclass(CappedStrategy, DefaultStrategy)
    private = re.compile(r"\b_(prune_gs|update_state|grow_gs|update_param_with_optimizer)\b"
                         r"|from gsplat\.strategy[\w.]* import [^\n]*\b_\w")
    package = Path(ocgs_ros.__file__).parent
    offenders = [str(path.relative_to(package)) for path in sorted(package.rglob("*.py"))
                 if private.search(path.read_text())]
    assert offenders == []


def test_growth_room_limits_new_gaussians_to_the_largest_gradients_and_counts_the_rest_deferred():
    config = DensifyConfig(refine_every=2, refine_start_iter=1, grow_grad2d=1e-6)
    mapper, _ = _fit(max_gaussians=100_000, steps=3, config=config, n=40)
    rgb, _, _, _, meta = mapper.render_with_meta(torch.eye(4), K, W, H)
    mapper.densifier.before_backward(meta)
    rgb.sum().backward()
    before = mapper.map.num_gaussians
    grads = mapper.densifier.state["grad2d"].clone()
    counts = mapper.densifier.after_backward(4, meta, growth_room=7)
    assert counts["duplicated"] + counts["split"] == 7 and counts["refused"] == 0
    assert counts["deferred"] > 0  # every Gaussian wanted to grow
    assert mapper.map.num_gaussians == before - counts["pruned"] + 7
    assert mapper.densifier.totals["deferred"] == counts["deferred"]
    assert grads.numel() == before  # (statistics were for the map as it stood)
