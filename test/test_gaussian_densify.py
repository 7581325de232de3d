"""gsplat's DefaultStrategy densify/prune on CPU through our rasteriser's meta, under the hard cap."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ocgs_ros.gaussians.densify import DensifyConfig, DensifyController
from ocgs_ros.gaussians.map import GaussianMap, GaussianMapConfig
from ocgs_ros.gaussians.mapper import OnlineMapper

W = H = 24
K = torch.tensor([[30.0, 0, 11.5], [0, 30.0, 11.5], [0, 0, 1]])


def _fit(max_gaussians: int, steps: int, config: DensifyConfig, n: int = 60):
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
        mapper.densifier.after_backward(step, meta)
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
