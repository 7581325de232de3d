"""GaussianMap growth/removal with optimiser state, the cap, identity decoding, and PLY round trips."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ocgs_ros.gaussians.map import GaussianMap, GaussianMapConfig
from ocgs_ros.gaussians.ply import load_ply, read_ply, save_ply


def _map(n=50, **cfg):
    g = np.random.default_rng(0)
    gmap = GaussianMap(GaussianMapConfig(**cfg))
    gmap.add_gaussians(g.normal(size=(n, 3)), g.uniform(size=(n, 3)))
    with torch.no_grad():
        for name in ("quats", "scales", "opacities", "shN", "identity"):
            gmap.params[name].add_(torch.randn_like(gmap.params[name]) * 0.1)
    return gmap


def test_add_remove_keep_optimizer_rows_aligned():
    gmap = _map(10)
    opts = gmap.make_optimizers()
    loss = sum(p.sum() for p in gmap.params.values())
    loss.backward()
    for o in opts.values():
        o.step()
    moment = opts["identity"].state[gmap.params["identity"]]["exp_avg"].clone()
    gmap.add_gaussians(np.zeros((5, 3)), np.full((5, 3), 0.5))
    state = opts["identity"].state[gmap.params["identity"]]["exp_avg"]
    assert gmap.num_gaussians == 15 and state.shape[0] == 15
    assert torch.equal(state[:10], moment) and (state[10:] == 0).all()
    keep = torch.ones(15, dtype=torch.bool)
    keep[[0, 12]] = False
    assert gmap.remove(~keep) == 2
    state = opts["identity"].state[gmap.params["identity"]]["exp_avg"]
    assert state.shape[0] == 13 and torch.equal(state[:9], moment[1:10])
    assert opts["means"].param_groups[0]["params"][0] is gmap.params["means"]


def test_cap_refuses_excess_new_points_and_init_values():
    gmap = GaussianMap(GaussianMapConfig(max_gaussians=8, init_opacity=0.2))
    idx = gmap.add_gaussians(np.arange(18, dtype=float).reshape(6, 3) * 0.01, np.full((6, 3), 0.25))
    assert idx.tolist() == list(range(6))
    gmap.add_gaussians(np.ones((5, 3)), np.ones((5, 3)))
    assert gmap.num_gaussians == 8 and gmap.refused_by_cap == 3
    torch.testing.assert_close(gmap.colors()[:6], torch.full((6, 3), 0.25))
    torch.testing.assert_close(gmap.opacities_act(), torch.full((8,), 0.2))
    # points on a line, spacing d = 0.03*sqrt(3): mean distance to the 3 nearest is 4d/3 inside, 2d at the ends
    d = 0.03 * np.sqrt(3)
    expected = torch.tensor([2 * d, 4 * d / 3, 4 * d / 3, 4 * d / 3, 4 * d / 3, 2 * d], dtype=torch.float32)
    torch.testing.assert_close(gmap.scales_act()[:6, 0], expected)
    with pytest.raises(ValueError, match="NaN"):
        gmap.add_gaussians(np.full((1, 3), np.nan), np.zeros((1, 3)))


def test_rendered_identity_decoding_equals_compositing_logits():
    gmap = _map(6, identity_dim=4, num_codebook_entries=5)
    w = torch.rand(6)
    w = w / w.sum() * 0.8  # compositing weights of one pixel, alpha = 0.8
    pixel_feature = (w[:, None] * gmap.params["identity"]).sum(0)
    expected = (w[:, None] * gmap.identity_logits()).sum(0)
    torch.testing.assert_close(gmap.decode_identity(pixel_feature, torch.tensor([0.8])), expected)


@pytest.mark.parametrize("sh_degree", [0, 2])
def test_ply_round_trip_is_exact(tmp_path, sh_degree):
    gmap = _map(40, sh_degree=sh_degree)
    path = save_ply(tmp_path / "map.ply", gmap)
    again = load_ply(path)
    for name, value in gmap.params.items():
        assert torch.equal(again.params[name], value.detach()), name
    torch.testing.assert_close(again.identity_logits(), gmap.identity_logits())
    names = read_ply(path).dtype.names
    k = 3 * ((sh_degree + 1) ** 2 - 1)
    assert names[:9] == ("x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2")
    assert names[9:9 + k + 8] == tuple(f"f_rest_{i}" for i in range(k)) + (
        "opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3")
    assert names[-1] == "codebook_entry"


def test_f_rest_is_channel_major_like_3dgs(tmp_path):
    gmap = _map(2, sh_degree=1)
    with torch.no_grad():
        gmap.params["shN"].zero_()
        gmap.params["shN"][0, :, 0] = torch.tensor([1.0, 2.0, 3.0])  # the red channel's 3 coefficients
    v = read_ply(save_ply(tmp_path / "m.ply", gmap))
    assert [v[f"f_rest_{i}"][0] for i in range(9)] == [1.0, 2.0, 3.0, 0, 0, 0, 0, 0, 0]


def test_bad_files_are_named_and_writes_are_atomic(tmp_path):
    gmap = _map(20)
    path = save_ply(tmp_path / "map.ply", gmap)
    good = path.read_bytes()
    path.write_bytes(good[:-50])
    with pytest.raises(ValueError, match="truncated"):
        load_ply(path)
    path.write_bytes(b"not a ply")
    with pytest.raises(ValueError, match="not a PLY"):
        load_ply(path)
    path.write_bytes(good)
    (tmp_path / "map.identity.json").unlink()
    with pytest.raises(ValueError, match="sidecar"):
        load_ply(path)
    # a failing write leaves the previous file untouched
    import ocgs_ros.gaussians.ply as ply

    original = ply.map_to_vertices
    ply.map_to_vertices = lambda g: (_ for _ in ()).throw(RuntimeError("disk full"))
    try:
        with pytest.raises(RuntimeError):
            save_ply(path, gmap)
    finally:
        ply.map_to_vertices = original
    assert path.read_bytes() == good
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
