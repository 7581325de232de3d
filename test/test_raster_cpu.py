"""Torch rasteriser vs a plainly written dense reference and gsplat's own projection code; render
modes, SH, backgrounds, several cameras, empty/culled scenes, input errors, backend selection.

The reference (``dense_render``) follows gsplat's CUDA kernel literally: every Gaussian at every
pixel, one Gaussian at a time front to back, transmittance as a running product — no tiling, no
footprints, no log-space sums, no sparse matrices — so it shares nothing with the implementation
under test except gsplat's projection outputs, which it takes as input.
"""
from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch
from gsplat.cuda._torch_impl import _fully_fused_projection, _quat_scale_to_covar_preci, _spherical_harmonics

from ocgs_ros.gaussians.raster import fused_status, rasterize, rasterize_torch, resolve_backend
from ocgs_ros.gaussians.raster import select as raster_select

W, H = 40, 30


def require_compositor(fused: bool) -> None:
    """Skip a fused-compositor case where its C++ extension cannot be built (it says why)."""
    usable, reason = fused_status()
    if fused and not usable:
        pytest.skip(reason)


def make_scene(n=60, channels=4, num_cams=1, dtype=torch.float64, seed=0):
    """Gaussians 2-4 m in front of camera 0, sizes of a few pixels, some fully opaque."""
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(n, 3, generator=g, dtype=dtype) * torch.tensor([0.6, 0.45, 0.5], dtype=dtype)
    means = means + torch.tensor([0.0, 0.0, 3.0], dtype=dtype)
    quats = torch.randn(n, 4, generator=g, dtype=dtype)
    scales = torch.rand(n, 3, generator=g, dtype=dtype) * 0.12 + 0.02
    opacities = torch.rand(n, generator=g, dtype=dtype) * 0.95 + 0.05
    # an opaque cluster: alpha hits the 0.999 clamp and pixels reach the transmittance cut-off
    opacities[: n // 6] = 1.0
    means[: n // 6] = means[: n // 6] * 0.1 + torch.tensor([0.2, -0.1, 2.7], dtype=dtype)
    colors = torch.rand(n, channels, generator=g, dtype=dtype)
    viewmats = torch.eye(4, dtype=dtype).repeat(num_cams, 1, 1)
    for c in range(1, num_cams):  # further cameras: small rotation about y plus a shift
        angle = 0.15 * c
        viewmats[c, :3, :3] = torch.tensor([[math.cos(angle), 0, math.sin(angle)], [0, 1, 0],
                                            [-math.sin(angle), 0, math.cos(angle)]], dtype=dtype)
        viewmats[c, :3, 3] = torch.tensor([-0.3 * c, 0.1, 0.2], dtype=dtype)
    Ks = torch.tensor([[45.0, 0, W / 2], [0, 45.0, H / 2], [0, 0, 1]], dtype=dtype).repeat(num_cams, 1, 1)
    return means, quats, scales, opacities, colors, viewmats, Ks


def gsplat_projection(means, quats, scales, viewmats, Ks, width=W, height=H, eps2d=0.3):
    covars, _ = _quat_scale_to_covar_preci(quats, scales, True, False)
    radii, means2d, depths, conics, _ = _fully_fused_projection(means, covars, viewmats, Ks, width, height,
                                                                eps2d=eps2d)
    return radii, means2d, depths, conics


def dense_render(means2d, conics, opacities, features, radii, depths, width, height, backgrounds=None):
    """gsplat's kernel, literally: returns (features [C,H,W,X], alpha [C,H,W,1], terminated pixel count).

    means2d [C,N,2], conics [C,N,3], opacities [N], features [C,N,X], radii [C,N,2], depths [C,N]."""
    num_cams = means2d.shape[0]
    ys, xs = torch.meshgrid(torch.arange(height, dtype=means2d.dtype), torch.arange(width, dtype=means2d.dtype),
                            indexing="ij")
    px, py = xs + 0.5, ys + 0.5
    images, alphas, terminated = [], [], 0
    for c in range(num_cams):
        visible = torch.nonzero((radii[c] > 0).all(-1)).squeeze(1)
        order = visible[torch.argsort(depths[c][visible], stable=True)]
        trans = torch.ones(height, width, dtype=means2d.dtype)
        done = torch.zeros(height, width, dtype=torch.bool)
        image = torch.zeros(height, width, features.shape[-1], dtype=means2d.dtype)
        for i in order.tolist():
            dx, dy = means2d[c, i, 0] - px, means2d[c, i, 1] - py
            a, b, cc = conics[c, i]
            sigma = 0.5 * (a * dx * dx + cc * dy * dy) + b * dx * dy
            alpha = torch.clamp_max(opacities[i] * torch.exp(-sigma), 0.999)
            contributes = (sigma >= 0) & (alpha >= 1.0 / 255.0) & ~done
            next_trans = trans * (1.0 - alpha)
            finishing = contributes & (next_trans <= 1e-4)
            done = done | finishing
            use = contributes & ~finishing
            image = image + torch.where(use, alpha * trans, 0.0)[..., None] * features[c, i]
            trans = torch.where(use, next_trans, trans)
        if backgrounds is not None:
            image = image + trans[..., None] * backgrounds[c]
        images.append(image)
        alphas.append((1.0 - trans)[..., None])
        terminated += int(done.sum())
    return torch.stack(images), torch.stack(alphas), terminated


def reference_for(scene, render_mode="RGB", backgrounds=None, width=W, height=H):
    means, quats, scales, opacities, colors, viewmats, Ks = scene
    radii, means2d, depths, conics = gsplat_projection(means, quats, scales, viewmats, Ks, width, height)
    num_cams = viewmats.shape[0]
    feats = []
    if render_mode in ("RGB", "RGB+D", "RGB+ED"):
        feats.append(colors[None].expand(num_cams, *colors.shape))
    if render_mode != "RGB":
        feats.append(depths[..., None])
    feats = torch.cat(feats, dim=-1)
    bg = backgrounds
    if backgrounds is not None and render_mode != "RGB":
        zeros = torch.zeros(num_cams, 1, dtype=backgrounds.dtype)
        bg = zeros if render_mode in ("D", "ED") else torch.cat([backgrounds, zeros], dim=-1)
    image, alpha, terminated = dense_render(means2d, conics, opacities, feats, radii, depths, width, height, bg)
    if render_mode in ("ED", "RGB+ED"):
        image = torch.cat([image[..., :-1], image[..., -1:] / alpha.clamp(min=1e-10)], dim=-1)
    return image, alpha, terminated


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "vectorised"])
@pytest.mark.parametrize("dtype,atol", [(torch.float64, 1e-9), (torch.float32, 1e-5)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_dense_reference(dtype, atol, seed, fused):
    require_compositor(fused)
    scene = make_scene(dtype=dtype, seed=seed)
    image, alpha, meta = rasterize(*scene, W, H, backend="torch", fused=fused)
    ref_image, ref_alpha, terminated = reference_for(scene)
    assert image.shape == (1, H, W, 4) and alpha.shape == (1, H, W, 1)
    assert terminated > 0, "scene must exercise the transmittance cut-off"
    assert float(ref_alpha.max()) > 0.99 and float(ref_alpha.min()) == 0.0
    torch.testing.assert_close(image, ref_image, atol=atol, rtol=0)
    torch.testing.assert_close(alpha, ref_alpha, atol=atol, rtol=0)
    assert meta["backend"] == "torch" and meta["n_pairs"] > 0


def test_chunked_compositing_matches_single_chunk():
    scene = make_scene(seed=3)
    image, alpha, _ = rasterize_torch(*scene, W, H, render_mode="RGB+ED", fused=False)
    image_c, alpha_c, meta = rasterize_torch(*scene, W, H, render_mode="RGB+ED", max_pairs_per_chunk=37,
                                             fused=False)
    assert meta["n_pairs"] > 20 * 37  # many chunks
    torch.testing.assert_close(image_c, image, atol=1e-12, rtol=0)
    torch.testing.assert_close(alpha_c, alpha, atol=1e-12, rtol=0)


def test_projection_is_gsplats_and_matches_plain_pinhole_maths():
    scene = make_scene(seed=4, num_cams=2)
    means, quats, scales, _, _, viewmats, Ks = scene
    _, _, meta = rasterize(*scene, W, H, backend="torch")
    radii, means2d, depths, conics = gsplat_projection(means, quats, scales, viewmats, Ks)
    assert torch.equal(meta["radii"], radii)
    for key, ref in (("means2d", means2d), ("depths", depths), ("conics", conics)):
        torch.testing.assert_close(meta[key], ref, atol=0, rtol=0)
    # and that projection is the textbook pinhole + EWA one (independent numpy, float64)
    m, q, s = means.numpy(), quats.numpy(), scales.numpy()
    checked = 0
    for c in range(2):
        R, t, K = viewmats[c, :3, :3].numpy(), viewmats[c, :3, 3].numpy(), Ks[c].numpy()
        for i in range(len(m)):
            if not (radii[c, i] > 0).all():
                continue
            p = R @ m[i] + t
            u, v = K[0, 0] * p[0] / p[2] + K[0, 2], K[1, 1] * p[1] / p[2] + K[1, 2]
            if not (0 <= u < W and 0 <= v < H):
                continue  # gsplat clamps the Jacobian's x/z only far outside the image
            w, x, y, z = q[i] / np.linalg.norm(q[i])
            rot = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])
            cov_world = rot @ np.diag(s[i] ** 2) @ rot.T
            J = np.array([[K[0, 0] / p[2], 0, -K[0, 0] * p[0] / p[2] ** 2],
                          [0, K[1, 1] / p[2], -K[1, 1] * p[1] / p[2] ** 2]])
            cov2d = J @ R @ cov_world @ R.T @ J.T + 0.3 * np.eye(2)
            inv = np.linalg.inv(cov2d)
            np.testing.assert_allclose(meta["means2d"][c, i].numpy(), [u, v], atol=1e-9)
            np.testing.assert_allclose(meta["depths"][c, i].item(), p[2], atol=1e-12)
            np.testing.assert_allclose(meta["conics"][c, i].numpy(), [inv[0, 0], inv[0, 1], inv[1, 1]], rtol=1e-9)
            np.testing.assert_array_equal(meta["radii"][c, i].numpy(),
                                          np.ceil(3.33 * np.sqrt(np.diag(cov2d))).astype(np.int32))
            checked += 1
    assert checked > 40


@pytest.mark.parametrize("render_mode", ["RGB", "D", "ED", "RGB+D", "RGB+ED"])
def test_render_modes_match_reference(render_mode):
    scene = make_scene(seed=5, num_cams=2)
    backgrounds = torch.tensor([[0.2, 0.4, 0.6, 0.8], [1.0, 0.5, 0.0, 0.25]], dtype=torch.float64)
    image, alpha, _ = rasterize(*scene, W, H, render_mode=render_mode, backgrounds=backgrounds, backend="torch")
    ref_image, ref_alpha, _ = reference_for(scene, render_mode, backgrounds)
    expected_channels = {"RGB": 4, "D": 1, "ED": 1, "RGB+D": 5, "RGB+ED": 5}[render_mode]
    assert image.shape == (2, H, W, expected_channels)
    torch.testing.assert_close(image, ref_image, atol=1e-9, rtol=0)
    torch.testing.assert_close(alpha, ref_alpha, atol=1e-9, rtol=0)


def test_depth_modes_are_consistent_and_plausible():
    scene = make_scene(seed=6)
    rgbd, alpha, meta = rasterize(*scene, W, H, render_mode="RGB+D", backend="torch")
    rgb, _, _ = rasterize(*scene, W, H, render_mode="RGB", backend="torch")
    depth, _, _ = rasterize(*scene, W, H, render_mode="D", backend="torch")
    expected, _, _ = rasterize(*scene, W, H, render_mode="ED", backend="torch")
    torch.testing.assert_close(rgbd[..., :-1], rgb, atol=1e-12, rtol=0)
    torch.testing.assert_close(rgbd[..., -1:], depth, atol=1e-12, rtol=0)
    covered = alpha[..., 0] > 0.5
    torch.testing.assert_close(expected[covered], (depth / alpha)[covered], atol=1e-12, rtol=0)
    # expected depth is a weighted mean of the depths of the Gaussians seen
    visible_depths = meta["depths"][(meta["radii"] > 0).all(-1)]
    seen = expected[covered]
    assert float(seen.min()) >= float(visible_depths.min()) - 1e-9
    assert float(seen.max()) <= float(visible_depths.max()) + 1e-9


def test_backgrounds_blend_with_transmittance_and_skip_depth():
    scene = make_scene(seed=7, num_cams=2)
    backgrounds = torch.tensor([[0.3, 0.1, 0.9, 0.5], [0.7, 0.2, 0.4, 1.0]], dtype=torch.float64)
    plain, alpha, _ = rasterize(*scene, W, H, backend="torch")
    blended, alpha_bg, _ = rasterize(*scene, W, H, backgrounds=backgrounds, backend="torch")
    torch.testing.assert_close(alpha_bg, alpha)
    torch.testing.assert_close(blended, plain + (1 - alpha) * backgrounds[:, None, None, :], atol=1e-12, rtol=0)
    depth, _, _ = rasterize(*scene, W, H, render_mode="D", backgrounds=backgrounds, backend="torch")
    depth_plain, _, _ = rasterize(*scene, W, H, render_mode="D", backend="torch")
    torch.testing.assert_close(depth, depth_plain, atol=0, rtol=0)


def test_each_camera_renders_as_if_alone():
    scene = make_scene(seed=8, num_cams=3)
    image, alpha, meta = rasterize(*scene, W, H, render_mode="RGB+ED", backend="torch")
    assert meta["n_cameras"] == 3 and meta["radii"].shape == (3, 60, 2)
    for c in range(3):
        single = (*scene[:5], scene[5][c:c + 1], scene[6][c:c + 1])
        image_c, alpha_c, _ = rasterize(*single, W, H, render_mode="RGB+ED", backend="torch")
        torch.testing.assert_close(image[c:c + 1], image_c, atol=1e-12, rtol=0)
        torch.testing.assert_close(alpha[c:c + 1], alpha_c, atol=1e-12, rtol=0)
    assert not torch.allclose(image[0], image[1])  # the cameras do see different things


def test_per_camera_colors():
    scene = make_scene(seed=9, num_cams=2)
    per_cam = torch.stack([scene[4], 1.0 - scene[4]])
    image, _, _ = rasterize(*scene[:4], per_cam, *scene[5:], W, H, backend="torch")
    for c in range(2):
        single = (*scene[:4], per_cam[c], scene[5][c:c + 1], scene[6][c:c + 1])
        torch.testing.assert_close(image[c:c + 1], rasterize(*single, W, H, backend="torch")[0], atol=1e-12, rtol=0)


def _sh_degree1_rgb(coeffs, means, viewmat):
    """Independent degree-1 real SH colour (gsplat/Inria convention) + 0.5, clamped at 0."""
    centre = torch.linalg.inv(viewmat)[:3, 3]
    d = means - centre
    x, y, z = (d / d.norm(dim=-1, keepdim=True)).unbind(-1)
    c0, c1 = 0.28209479177387814, 0.4886025119029199
    basis = torch.stack([torch.full_like(x, c0), -c1 * y, c1 * z, -c1 * x], dim=-1)
    return torch.clamp_min((basis[..., None] * coeffs[:, :4]).sum(1) + 0.5, 0.0)


@pytest.mark.parametrize("sh_degree", [0, 1, 2, 3])
def test_spherical_harmonics_match_feature_rendering(sh_degree):
    scene = make_scene(seed=10, num_cams=2)
    means, quats, scales, opacities, _, viewmats, Ks = scene
    g = torch.Generator().manual_seed(sh_degree)
    coeffs = torch.randn(len(means), 16, 3, generator=g, dtype=torch.float64) * 0.4  # degree-3 storage
    image, _, _ = rasterize(means, quats, scales, opacities, coeffs, viewmats, Ks, W, H, sh_degree=sh_degree,
                            backend="torch")
    for c in range(2):
        if sh_degree == 0:
            rgb = torch.clamp_min(0.28209479177387814 * coeffs[:, 0] + 0.5, 0.0)
        elif sh_degree == 1:
            rgb = _sh_degree1_rgb(coeffs, means, viewmats[c])
        else:  # gsplat's own SH evaluation is the definition of the higher bands
            centre = torch.linalg.inv(viewmats[c])[:3, 3]
            rgb = torch.clamp_min(_spherical_harmonics(sh_degree, means - centre, coeffs) + 0.5, 0.0)
        expected, _, _ = rasterize(means, quats, scales, opacities, rgb, viewmats[c:c + 1], Ks[c:c + 1], W, H,
                                   backend="torch")
        torch.testing.assert_close(image[c:c + 1], expected, atol=1e-12, rtol=0)
    if sh_degree > 0:  # higher bands must change the picture (view dependence is live)
        lower, _, _ = rasterize(means, quats, scales, opacities, coeffs, viewmats, Ks, W, H,
                                sh_degree=sh_degree - 1, backend="torch")
        assert float((lower - image).abs().max()) > 1e-3


def _bg(num_cams=1, channels=4):
    return torch.linspace(0.1, 0.9, num_cams * channels, dtype=torch.float64).reshape(num_cams, channels)


@pytest.mark.parametrize("render_mode", ["RGB", "RGB+ED", "D"])
def test_empty_scene_returns_background(render_mode):
    scene = make_scene(n=0, num_cams=2)
    backgrounds = _bg(2).requires_grad_(True)
    image, alpha, meta = rasterize(*scene, W, H, render_mode=render_mode, backgrounds=backgrounds, backend="torch")
    assert torch.count_nonzero(alpha) == 0 and meta["n_pairs"] == 0
    if render_mode == "D":
        assert torch.count_nonzero(image) == 0
    else:
        torch.testing.assert_close(image[..., :4], backgrounds[:, None, None, :].expand(2, H, W, 4))
        image.sum().backward()
        torch.testing.assert_close(backgrounds.grad, torch.full((2, 4), float(H * W), dtype=torch.float64))


def test_all_culled_scene_returns_background_and_zero_gradients():
    means, quats, scales, opacities, colors, viewmats, Ks = make_scene(seed=11)
    behind = means * torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64)  # all behind the camera
    outside = means + torch.tensor([50.0, 0.0, 0.0], dtype=torch.float64)  # all far right of the image
    for placed in (behind, outside):
        placed = placed.clone().requires_grad_(True)
        image, alpha, meta = rasterize(placed, quats, scales, opacities, colors, viewmats, Ks, W, H,
                                       backgrounds=_bg(), render_mode="RGB+D", backend="torch")
        assert int((meta["radii"] > 0).sum()) == 0 and meta["n_pairs"] == 0
        torch.testing.assert_close(image[..., :4], _bg()[:, None, None, :].expand(1, H, W, 4))
        assert torch.count_nonzero(alpha) == 0 and torch.count_nonzero(image[..., 4]) == 0
        image.sum().backward()
        assert torch.count_nonzero(placed.grad) == 0


def test_near_and_far_planes_cull_by_depth():
    scene = make_scene(seed=12)
    _, alpha_all, meta = rasterize(*scene, W, H, backend="torch")
    depths = meta["depths"][0]
    cut = float(depths.median())
    _, alpha_far, meta_far = rasterize(*scene, W, H, far_plane=cut, backend="torch")
    _, alpha_near, meta_near = rasterize(*scene, W, H, near_plane=cut, backend="torch")
    assert ((meta_far["radii"][0] > 0).all(-1) <= (depths < cut)).all()
    assert ((meta_near["radii"][0] > 0).all(-1) <= (depths > cut)).all()
    assert float(alpha_far.sum()) < float(alpha_all.sum()) and float(alpha_near.sum()) < float(alpha_all.sum())


@pytest.mark.parametrize("change,fragment", [
    (lambda a: a.update(means=a["means"][:, :2]), "means must be [N, 3]"),
    (lambda a: a.update(quats=a["quats"][:-1]), "quats must be [N, 4]"),
    (lambda a: a.update(scales=a["scales"][:, None]), "scales must be [N, 3]"),
    (lambda a: a.update(opacities=a["opacities"][:, None]), "opacities must be [N]"),
    (lambda a: a.update(colors=a["colors"][:-2]), "colors must be [N, D] or [C, N, D]"),
    (lambda a: a.update(viewmats=a["viewmats"][0]), "viewmats must be [C, 4, 4]"),
    (lambda a: a.update(Ks=a["Ks"].repeat(2, 1, 1)), "Ks must be [C, 3, 3]"),
    (lambda a: a.update(backgrounds=torch.zeros(1, 3, dtype=torch.float64)), "backgrounds must be [C, D]"),
    (lambda a: a.update(render_mode="RGBD"), "render_mode must be one of"),
    (lambda a: a.update(width=0), "width must be a positive int"),
    (lambda a: a.update(height=12.5), "height must be a positive int"),
    (lambda a: a.update(near_plane=2.0, far_plane=1.0), "near_plane < far_plane"),
    (lambda a: a.update(sh_degree=1), "SH colors must be [N, K, 3]"),
    (lambda a: a.update(sh_degree=2, colors=torch.zeros(60, 4, 3, dtype=torch.float64)), "needs K >= 9"),
    (lambda a: a.update(sh_degree=7, colors=torch.zeros(60, 64, 3, dtype=torch.float64)), "sh_degree must be"),
    (lambda a: a.update(opacities=a["opacities"].float()), "share one floating dtype"),
    (lambda a: a.update(colors=a["colors"].numpy()), "colors must be torch.Tensor"),
    (lambda a: a.update(backend="cuda"), "backend must be one of"),
])
def test_bad_inputs_raise_clear_value_errors(change, fragment):
    names = ("means", "quats", "scales", "opacities", "colors", "viewmats", "Ks")
    args = dict(zip(names, make_scene()), width=W, height=H)
    change(args)
    with pytest.raises(ValueError) as info:
        rasterize(**args)
    assert fragment in str(info.value)


def test_backend_selection_on_this_machine(caplog):
    scene = make_scene(n=5)
    if not torch.cuda.is_available():
        assert resolve_backend("auto", *scene) == ("torch", "tensors are not on CUDA")
        with pytest.raises(RuntimeError, match="needs CUDA tensors"):
            rasterize(*scene, W, H, backend="gsplat")
    assert resolve_backend("torch", *scene)[0] == "torch"
    raster_select._announced.clear()
    with caplog.at_level(logging.INFO, logger="ocgs_ros.gaussians.raster.select"):
        for _ in range(3):
            _, _, meta = rasterize(*scene, W, H, backend="torch")
    assert meta["backend"] == "torch"
    announcements = [r for r in caplog.records if "rasteriser backend" in r.getMessage()]
    assert len(announcements) == 1 and "torch" in announcements[0].getMessage()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA for gsplat's rasteriser")
@pytest.mark.parametrize("render_mode", ["RGB", "RGB+ED"])
def test_gsplat_cuda_and_torch_backends_agree(render_mode):
    scene = [t.float().cuda() for t in make_scene(seed=13, num_cams=2)]
    backgrounds = _bg(2).float().cuda()
    assert resolve_backend("auto", *scene)[0] == "gsplat"
    image_g, alpha_g, meta_g = rasterize(*scene, W, H, render_mode=render_mode, backgrounds=backgrounds,
                                         backend="gsplat")
    image_t, alpha_t, meta_t = rasterize(*scene, W, H, render_mode=render_mode, backgrounds=backgrounds,
                                         backend="torch")
    torch.testing.assert_close(meta_t["means2d"], meta_g["means2d"], atol=1e-3, rtol=1e-4)
    torch.testing.assert_close(image_t, image_g, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(alpha_t, alpha_g, atol=1e-4, rtol=1e-4)


def test_gsplat_intrinsics_put_a_projected_point_on_the_projects_pixel():
    """A small opaque Gaussian that the project's K projects to pixel (u, v) = (17, 9) must render
    brightest exactly at pixel (17, 9) when drawn with gsplat_intrinsics(K)."""
    from ocgs_ros.gaussians.raster import gsplat_intrinsics

    K = torch.tensor([[[40.0, 0, 20.0], [0, 40.0, 15.0], [0, 0, 1]]], dtype=torch.float64)
    depth = 2.0
    u, v = 17.0, 9.0
    mean = torch.tensor([[(u - 20.0) * depth / 40.0, (v - 15.0) * depth / 40.0, depth]], dtype=torch.float64)
    args = (torch.tensor([[1.0, 0, 0, 0]], dtype=torch.float64), torch.full((1, 3), 0.01, dtype=torch.float64),
            torch.tensor([0.9], dtype=torch.float64), torch.ones(1, 1, dtype=torch.float64),
            torch.eye(4, dtype=torch.float64)[None])
    _, alpha, _ = rasterize(mean, *args, gsplat_intrinsics(K), W, H, backend="torch")
    assert divmod(int(alpha[0, ..., 0].argmax()), W) == (9, 17)
    assert torch.equal(K[0, :, :2], gsplat_intrinsics(K)[0, :, :2])
    assert abs(float(alpha[0, 9, 17, 0]) - 0.9) < 1e-9  # centred exactly on the pixel centre
    # with the unshifted K the point sits on the corner of pixels (8..9, 16..17): all well below 0.9
    _, alpha_raw, _ = rasterize(mean, *args, K, W, H, backend="torch")
    assert float(alpha_raw[0, 8:10, 16:18].max()) < 0.6


def test_a_process_never_compiles_or_waits_for_a_build_lock(tmp_path, monkeypatch):
    """Run time only loads a module built at set-up: without one, or with a (killed) build's lock
    beside it, the torch path is used at once, with the reason."""
    from ocgs_ros.gaussians.raster import fused

    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    module, reason = fused._load_built()
    assert module is None and "not built" in reason
    folder = tmp_path / fused._module_name()
    folder.mkdir()
    (folder / f"{fused._module_name()}.so").write_bytes(b"")
    (folder / "lock").touch()
    module, reason = fused._load_built()
    assert module is None and "lock" in reason
