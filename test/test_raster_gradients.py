"""Gradients of the torch rasteriser: finite differences (float64 gradcheck), autograd through the
plain dense reference (including the alpha clamp and the transmittance cut-off), the custom sparse
backward, and the checkpointed chunked path."""
from __future__ import annotations

import pytest
import torch
from test_raster_cpu import dense_render, gsplat_projection, make_scene, require_compositor

from ocgs_ros.gaussians.raster import rasterize_torch
from ocgs_ros.gaussians.raster.compositing import ALPHA_MIN
from ocgs_ros.gaussians.raster.footprints import footprint_pairs
from ocgs_ros.gaussians.raster.sparse_weighted_sum import sparse_weighted_sum

W, H = 12, 10


def tiny_scene(seed=0, n=4, channels=3):
    """A few Gaussians that overlap in a 12x10 image; opacities <= 0.8 keep alpha below the 0.999
    clamp and the transmittance above 1e-4 (0.2^4 = 1.6e-3), away from the non-smooth points."""
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(n, 3, generator=g, dtype=torch.float64) * torch.tensor([0.25, 0.2, 0.3], dtype=torch.float64)
    means = means + torch.tensor([0.0, 0.0, 2.5], dtype=torch.float64)
    quats = torch.randn(n, 4, generator=g, dtype=torch.float64)
    scales = torch.rand(n, 3, generator=g, dtype=torch.float64) * 0.15 + 0.08
    opacities = torch.rand(n, generator=g, dtype=torch.float64) * 0.5 + 0.3
    colors = torch.rand(n, channels, generator=g, dtype=torch.float64)
    viewmats = torch.eye(4, dtype=torch.float64)[None]
    Ks = torch.tensor([[[14.0, 0, 6.0], [0, 14.0, 5.0], [0, 0, 1]]], dtype=torch.float64)
    return means, quats, scales, opacities, colors, viewmats, Ks


def nearest_alpha_to_threshold(scene, width=W, height=H):
    """Smallest |alpha - 1/255| over every (Gaussian, pixel) pair: finite differences must not cross it."""
    means, quats, scales, opacities, _, viewmats, Ks = scene
    _, means2d, _, conics = gsplat_projection(means, quats, scales, viewmats, Ks, width, height)
    ys, xs = torch.meshgrid(torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64),
                            indexing="ij")
    dx = means2d[0, :, 0, None, None] - (xs + 0.5)
    dy = means2d[0, :, 1, None, None] - (ys + 0.5)
    a, b, c = conics[0].unbind(-1)
    sigma = 0.5 * (a[:, None, None] * dx ** 2 + c[:, None, None] * dy ** 2) + b[:, None, None] * dx * dy
    alpha = opacities[:, None, None] * torch.exp(-sigma)
    return float((alpha - ALPHA_MIN).abs().min())


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "vectorised"])
@pytest.mark.parametrize("seed,render_mode", [(0, "RGB"), (1, "RGB+ED")])
def test_gradcheck_against_finite_differences(seed, render_mode, fused):
    require_compositor(fused)
    scene = tiny_scene(seed)
    assert nearest_alpha_to_threshold(scene) > 1e-6
    means, quats, scales, opacities, colors, viewmats, Ks = scene
    backgrounds = torch.tensor([[0.3, 0.6, 0.9]], dtype=torch.float64)

    def render(m, q, s, o, c):
        image, alpha, _ = rasterize_torch(m, q, s, o, c, viewmats, Ks, W, H, render_mode=render_mode,
                                          backgrounds=backgrounds, fused=fused)
        return image, alpha

    inputs = tuple(t.clone().requires_grad_(True) for t in (means, quats, scales, opacities, colors))
    _, alpha = render(*inputs)
    assert float(alpha.detach().max()) > 0.5 and float(alpha.detach().min()) < 0.05  # overlapping, with uncovered pixels
    assert torch.autograd.gradcheck(render, inputs, eps=1e-6, atol=1e-6, rtol=1e-4)


def test_gradcheck_spherical_harmonics_and_view_dependence():
    means, quats, scales, opacities, _, viewmats, Ks = tiny_scene(2)
    viewmats = viewmats.clone()
    viewmats[0, :3, 3] = torch.tensor([0.05, -0.05, 0.1], dtype=torch.float64)
    g = torch.Generator().manual_seed(5)
    coeffs = torch.randn(len(means), 9, 3, generator=g, dtype=torch.float64) * 0.2

    def render(m, c, o):
        return rasterize_torch(m, quats, scales, o, c, viewmats, Ks, W, H, sh_degree=2)[0]

    inputs = tuple(t.clone().requires_grad_(True) for t in (means, coeffs, opacities))
    assert torch.autograd.gradcheck(render, inputs, eps=1e-6, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "vectorised"])
@pytest.mark.parametrize("render_mode", ["RGB", "RGB+D"])
def test_gradients_equal_autograd_through_dense_reference_with_clamp_and_cutoff(render_mode, fused):
    """Opaque, overlapping Gaussians (alpha clamp active, pixels cut off at T <= 1e-4): the dense
    reference is the same piecewise-smooth function, so both autograd gradients must agree."""
    means, quats, scales, opacities, colors, viewmats, Ks = make_scene(n=40, seed=21)
    width, height = 40, 30
    params = [t.clone().requires_grad_(True) for t in (means, quats, scales, opacities, colors)]
    weights = torch.rand(1, height, width, colors.shape[1] + (render_mode == "RGB+D"),
                         generator=torch.Generator().manual_seed(3), dtype=torch.float64)

    require_compositor(fused)
    image, alpha, _ = rasterize_torch(*params, viewmats, Ks, width, height, render_mode=render_mode, fused=fused)
    ours = torch.autograd.grad((image * weights).sum() + alpha.sum(), params)

    m, q, s, o, c = params
    radii, means2d, depths, conics = gsplat_projection(m, q, s, viewmats, Ks, width, height)
    feats = c[None] if render_mode == "RGB" else torch.cat([c[None], depths[..., None]], dim=-1)
    ref_image, ref_alpha, terminated = dense_render(means2d, conics, o, feats, radii, depths, width, height)
    assert terminated > 0
    assert float(o.detach().max()) == 1.0  # clamp at 0.999 exercised at the opaque centres
    reference = torch.autograd.grad((ref_image * weights).sum() + ref_alpha.sum(), params)
    for name, got, want in zip(("means", "quats", "scales", "opacities", "colors"), ours, reference):
        assert float(want.abs().max()) > 0, name
        torch.testing.assert_close(got, want, atol=1e-9, rtol=1e-7, msg=name)


def test_chunked_checkpointed_gradients_equal_single_chunk():
    scene = make_scene(n=50, seed=22)
    params = [t.clone().requires_grad_(True) for t in scene[:5]]

    def grads(max_pairs):
        image, alpha, meta = rasterize_torch(*params, *scene[5:], 40, 30, render_mode="RGB+ED",
                                             max_pairs_per_chunk=max_pairs, fused=False)
        loss = (image * torch.linspace(0, 1, image.shape[-1], dtype=torch.float64)).sum() + alpha.sum()
        return torch.autograd.grad(loss, params), meta["n_pairs"]

    whole, n_pairs = grads(1 << 20)
    chunked, _ = grads(29)
    assert n_pairs > 50 * 29
    for got, want in zip(chunked, whole):
        torch.testing.assert_close(got, want, atol=1e-12, rtol=1e-10)


def test_means2d_gradient_is_available_for_densification():
    scene = make_scene(n=30, seed=23, dtype=torch.float32)
    means = scene[0].clone().requires_grad_(True)
    image, _, meta = rasterize_torch(means, *scene[1:], 40, 30)
    meta["means2d"].retain_grad()  # what gsplat's DefaultStrategy does
    image.sum().backward()
    grad = meta["means2d"].grad
    assert grad.shape == (1, 30, 2)
    visible = (meta["radii"][0] > 0).all(-1)
    assert torch.count_nonzero(grad[0][~visible]) == 0
    assert torch.count_nonzero(grad[0][visible].abs().sum(-1)) > 0.8 * int(visible.sum())


def test_sparse_weighted_sum_backward_matches_dense_autograd():
    g = torch.Generator().manual_seed(7)
    rows, feature_rows, channels, pairs = 9, 6, 5, 30
    row_of = torch.sort(torch.randint(0, rows - 1, (pairs,), generator=g)).values  # last row left empty
    col = torch.randint(0, feature_rows, (pairs,), generator=g)
    crow = torch.zeros(rows + 1, dtype=torch.int64)
    crow[1:] = torch.cumsum(torch.bincount(row_of, minlength=rows), 0)
    weights = torch.rand(pairs, generator=g, dtype=torch.float64, requires_grad=True)
    features = torch.rand(feature_rows, channels, generator=g, dtype=torch.float64, requires_grad=True)

    out = sparse_weighted_sum(crow, col, weights, features)
    dense = torch.zeros(rows, feature_rows, dtype=torch.float64).index_put((row_of, col), weights, accumulate=True)
    expected = dense @ features
    torch.testing.assert_close(out, expected)
    upstream = torch.rand(rows, channels, generator=g, dtype=torch.float64)
    got = torch.autograd.grad((out * upstream).sum(), (weights, features))
    want = torch.autograd.grad((expected * upstream).sum(), (weights, features))
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)
    assert torch.autograd.gradcheck(lambda w, f: sparse_weighted_sum(crow, col, w, f), (weights, features))


def test_sparse_weighted_sum_with_no_pairs_gives_zero_gradients():
    crow = torch.zeros(4, dtype=torch.int64)
    col = torch.zeros(0, dtype=torch.int64)
    weights = torch.zeros(0, dtype=torch.float64, requires_grad=True)
    features = torch.rand(5, 2, dtype=torch.float64, requires_grad=True)
    out = sparse_weighted_sum(crow, col, weights, features)
    assert out.shape == (3, 2) and torch.count_nonzero(out) == 0
    out.sum().backward()
    assert torch.count_nonzero(features.grad) == 0


def test_segmented_exclusive_cumsum_backward_matches_autograd():
    from ocgs_ros.gaussians.raster.compositing import _SegmentedExclusiveCumsum

    g = torch.Generator().manual_seed(9)
    lengths = [3, 1, 4, 2, 5]
    values = torch.randn(sum(lengths), generator=g, dtype=torch.float64, requires_grad=True)
    starts = torch.tensor([s for s, n in zip([0, 3, 4, 8, 10], lengths) for _ in range(n)])
    ends = torch.tensor([s + n - 1 for s, n in zip([0, 3, 4, 8, 10], lengths) for _ in range(n)])
    out = _SegmentedExclusiveCumsum.apply(values, starts, ends)
    # plain definition: sum of the earlier values of the same segment
    expected = torch.stack([values[starts[k]:k].sum() for k in range(values.numel())])
    torch.testing.assert_close(out, expected)
    upstream = torch.randn(values.numel(), generator=g, dtype=torch.float64)
    got = torch.autograd.grad((out * upstream).sum(), values)[0]
    want = torch.autograd.grad((expected * upstream).sum(), values)[0]
    torch.testing.assert_close(got, want)


def test_fused_and_vectorised_compositing_agree_on_a_crowded_scene():
    """Many overlapping Gaussians in several cameras (clamp and cut-off active): the fused C++
    compositor gives the vectorised one's images and gradients, means2d's (densification) included."""
    require_compositor(True)
    scene = make_scene(n=300, seed=31, num_cams=2)
    results = {}
    for fused in (True, False):
        params = [t.clone().requires_grad_(True) for t in scene[:5]]
        image, alpha, meta = rasterize_torch(*params, *scene[5:], 48, 36, render_mode="RGB+ED", fused=fused)
        meta["means2d"].retain_grad()
        loss = (image * torch.linspace(-1, 1, image.shape[-1], dtype=torch.float64)).sum() + alpha.sum()
        loss.backward()
        results[fused] = (image.detach(), alpha.detach(), [p.grad for p in params], meta["means2d"].grad)
    assert meta["n_pairs"] > 300 * 20 and float(results[False][1].max()) > 0.999
    for got, want in zip(results[True][:2], results[False][:2]):
        torch.testing.assert_close(got, want, atol=1e-10, rtol=1e-10)
    for got, want in zip([*results[True][2], results[True][3]], [*results[False][2], results[False][3]]):
        assert float(want.abs().max()) > 0
        torch.testing.assert_close(got, want, atol=1e-10, rtol=1e-8)


def test_pairs_expanded_in_cpp_are_the_torch_paths():
    """The extension's expansion of footprint segments (counting sort by pixel) yields exactly the
    pairs, in exactly the order, of the torch expansion and stable sort."""
    require_compositor(True)
    means, quats, scales, opacities, _, viewmats, Ks = make_scene(n=200, seed=32, num_cams=2)
    radii, means2d, depths, conics = gsplat_projection(means, quats, scales, viewmats, Ks, 48, 36)
    flat = (means2d.reshape(-1, 2), conics.reshape(-1, 3), opacities[None].expand(2, -1).reshape(-1),
            depths.reshape(-1), radii.reshape(-1, 2), 200, 48, 36)
    got = footprint_pairs(*flat, counting_sort=True)
    want = footprint_pairs(*flat, counting_sort=False)
    assert want[0].numel() > 200 * 10
    assert got[0].dtype == want[0].dtype and torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
