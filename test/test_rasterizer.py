"""CPU rasteriser vs a plainly written dense reference, gsplat's conventions, gradients, edge cases."""
from __future__ import annotations

import pytest
import torch
from gsplat.cuda._torch_impl import _fully_fused_projection, _quat_scale_to_covar_preci

from ocgs_ros.gaussians.raster import rasterize, rasterize_torch

W, H = 40, 30


def scene(n, dtype=torch.float64, channels=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(n, 3, generator=g, dtype=dtype) * 0.4 + torch.tensor([0.0, 0.0, 3.0], dtype=dtype)
    quats = torch.randn(n, 4, generator=g, dtype=dtype)
    scales = torch.rand(n, 3, generator=g, dtype=dtype) * 0.1 + 0.03
    opacities = torch.rand(n, generator=g, dtype=dtype) * 0.9 + 0.05
    colors = torch.rand(n, channels, generator=g, dtype=dtype)
    viewmats = torch.eye(4, dtype=dtype)[None]
    Ks = torch.tensor([[[35.0, 0, 19.5], [0, 35.0, 14.5], [0, 0, 1]]], dtype=dtype)
    return means, quats, scales, opacities, colors, viewmats, Ks


def dense_reference(means, quats, scales, opacities, colors, viewmat, K, width, height):
    """Every Gaussian at every pixel, front to back, with gsplat's kernel rules; no tiling."""
    covars, _ = _quat_scale_to_covar_preci(quats, scales, True, False)
    radii, means2d, depths, conics, _ = _fully_fused_projection(means, covars, viewmat[None], K[None], width, height)
    order = torch.nonzero((radii[0] > 0).all(-1)).squeeze(1)
    order = order[torch.argsort(depths[0][order])]
    ys, xs = torch.meshgrid(torch.arange(height, dtype=means.dtype), torch.arange(width, dtype=means.dtype),
                            indexing="ij")
    out = torch.zeros(height, width, colors.shape[1], dtype=means.dtype)
    T = torch.ones(height, width, dtype=means.dtype)
    stopped = torch.zeros(height, width, dtype=torch.bool)
    for i in order:
        dx, dy = xs - means2d[0, i, 0], ys - means2d[0, i, 1]
        a, b, c = conics[0, i]
        sigma = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy
        alpha = torch.clamp(opacities[i] * torch.exp(-sigma), max=0.99)
        use = (sigma >= 0) & (alpha >= 1 / 255) & ~stopped
        next_T = T * (1 - alpha)
        stop = use & (next_T <= 1e-4)
        stopped |= stop
        use &= ~stop
        out = out + torch.where(use[..., None], (alpha * T)[..., None] * colors[i], 0.0)
        T = torch.where(use, next_T, T)
    return out, 1 - T, depths[0]


@pytest.mark.parametrize("n", [1, 25, 400])
def test_matches_dense_reference(n):
    s = scene(n)
    color, alpha, meta = rasterize_torch(*s, W, H)
    ref_color, ref_alpha, _ = dense_reference(*[x[0] if i >= 5 else x for i, x in enumerate(s)], W, H)
    assert color.shape == (1, H, W, 4) and alpha.shape == (1, H, W, 1)
    torch.testing.assert_close(color[0], ref_color, atol=1e-10, rtol=0)
    torch.testing.assert_close(alpha[0, ..., 0], ref_alpha, atol=1e-10, rtol=0)
    if n == 400:
        assert alpha.max() > 0.99  # opaque pixels: early termination was exercised


def test_batching_budget_does_not_change_the_image():
    s = scene(300)
    a, _, _ = rasterize_torch(*s, W, H, max_elements=10_000_000)
    b, _, _ = rasterize_torch(*s, W, H, max_elements=3000)
    torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


def test_projection_is_the_pinhole_model():
    s = scene(10)
    _, _, meta = rasterize_torch(*s, W, H)
    means, K = s[0], s[6][0]
    expected = torch.stack([K[0, 0] * means[:, 0] / means[:, 2] + K[0, 2],
                            K[1, 1] * means[:, 1] / means[:, 2] + K[1, 2]], -1)
    torch.testing.assert_close(meta["means2d"][0], expected)
    torch.testing.assert_close(meta["depths"][0], means[:, 2])


def test_depth_modes_backgrounds_and_multiple_cameras():
    means, quats, scales, opacities, colors, viewmats, Ks = scene(60)
    shifted = viewmats.clone()
    shifted[0, 0, 3] = 0.2
    views, Ks2 = torch.cat([viewmats, shifted]), torch.cat([Ks, Ks])
    bg = torch.tensor([[0.1, 0.2, 0.3, 0.4, 0.0], [1.0, 1.0, 1.0, 1.0, 0.0]], dtype=torch.float64)
    rgbd, alpha, _ = rasterize_torch(means, quats, scales, opacities, colors, views, Ks2, W, H, render_mode="RGB+D")
    rgbed, _, _ = rasterize_torch(means, quats, scales, opacities, colors, views, Ks2, W, H, render_mode="RGB+ED",
                                  backgrounds=bg)
    d, _, _ = rasterize_torch(means, quats, scales, opacities, colors, views, Ks2, W, H, render_mode="D")
    assert rgbd.shape == (2, H, W, 5) and d.shape == (2, H, W, 1)
    torch.testing.assert_close(rgbd[..., 4:], d)
    covered = alpha[..., 0] > 0.5
    expected_depth = (d[..., 0] / alpha[..., 0].clamp_min(1e-10))[covered]
    torch.testing.assert_close(rgbed[..., 4][covered], expected_depth)
    assert (expected_depth > 2.0).all() and (expected_depth < 4.5).all()  # Gaussians sit around z = 3
    # background fills the uncovered part of each camera
    torch.testing.assert_close(rgbed[1, ..., :4], rgbd[1, ..., :4] + bg[1, :4] * (1 - alpha[1]))
    second_ref, _, _ = dense_reference(means, quats, scales, opacities, colors, shifted[0], Ks[0], W, H)
    torch.testing.assert_close(rgbd[1, ..., :4], second_ref, atol=1e-10, rtol=0)


def test_spherical_harmonics_degree_zero_is_the_dc_colour():
    means, quats, scales, opacities, colors, viewmats, Ks = scene(30, channels=3)
    C0 = 0.28209479177387814
    sh = torch.zeros(30, 16, 3, dtype=torch.float64)
    sh[:, 0] = (colors - 0.5) / C0
    for degree in (0, 3):  # higher bands are zero, so every degree gives the DC colour
        out, _, _ = rasterize_torch(means, quats, scales, opacities, sh, viewmats, Ks, W, H, sh_degree=degree)
        raw, _, _ = rasterize_torch(means, quats, scales, opacities, colors, viewmats, Ks, W, H)
        torch.testing.assert_close(out, raw, atol=1e-10, rtol=0)


def test_empty_and_culled_scenes_render_background():
    means, quats, scales, opacities, colors, viewmats, Ks = scene(5)
    bg = torch.full((1, 4), 0.25, dtype=torch.float64)
    empty = [x[:0] for x in (means, quats, scales, opacities, colors)]
    out, alpha, _ = rasterize_torch(*empty, viewmats, Ks, W, H, backgrounds=bg)
    assert (out == 0.25).all() and (alpha == 0).all()
    behind = means.clone()
    behind[:, 2] = -3.0
    out, alpha, _ = rasterize_torch(behind, quats, scales, opacities, colors, viewmats, Ks, W, H, backgrounds=bg)
    assert (out == 0.25).all() and (alpha == 0).all()


def test_bad_inputs_are_named():
    s = list(scene(5))
    with pytest.raises(ValueError, match="quats must be"):
        rasterize_torch(s[0], s[1][:, :3], *s[2:], W, H)
    with pytest.raises(ValueError, match="render_mode"):
        rasterize_torch(*s, W, H, render_mode="RGBD")
    with pytest.raises(ValueError, match="SH colors"):
        rasterize_torch(*s, W, H, sh_degree=1)
    with pytest.raises(ValueError, match="backend"):
        rasterize(*s, W, H, backend="vulkan")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            rasterize(*s, W, H, backend="gsplat")


def test_gradients_match_finite_differences():
    means, quats, scales, opacities, colors, viewmats, Ks = scene(4, channels=2, seed=3)
    Ks = torch.tensor([[[10.0, 0, 5.5], [0, 10.0, 4.5], [0, 0, 1]]], dtype=torch.float64)
    scales = scales * 2  # a few pixels wide on a 12x10 image

    def render(m, q, s, o, c):
        out, alpha, _ = rasterize_torch(m, q, s, o, c, viewmats, Ks, 12, 10)
        return out.sum() + 0.5 * alpha.sum()

    inputs = [t.clone().requires_grad_(True) for t in (means, quats, scales, opacities, colors)]
    assert torch.autograd.gradcheck(render, inputs, eps=1e-6, atol=1e-5, rtol=1e-4)


def test_auto_backend_on_cpu_is_torch():
    s = scene(20)
    a, _, meta = rasterize(*s, W, H)
    b, _, _ = rasterize_torch(*s, W, H)
    assert meta["backend"] == "torch"
    torch.testing.assert_close(a, b)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA for gsplat's rasteriser")
def test_torch_backend_matches_gsplat_cuda():  # pragma: no cover - CUDA only
    s = [x.float().cuda() for x in scene(500)]
    ours, our_alpha, _ = rasterize(*s, W, H, backend="torch")
    theirs, their_alpha, _ = rasterize(*s, W, H, backend="gsplat")
    torch.testing.assert_close(ours, theirs, atol=2e-3, rtol=0)
    torch.testing.assert_close(our_alpha, their_alpha, atol=2e-3, rtol=0)
