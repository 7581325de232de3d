"""Map losses and keyframe logic."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ocgs_ros.gaussians.keyframes import KeyframeSelector, KeyframeWindow, pose_change
from ocgs_ros.gaussians.losses import depth_loss, identity_loss, identity_targets, photometric_loss, ssim


def test_ssim_identity_symmetry_and_monotone_in_noise():
    g = torch.Generator().manual_seed(0)
    img = torch.rand(32, 40, 3, generator=g)
    noise = torch.randn(32, 40, 3, generator=g)
    assert ssim(img, img).item() == pytest.approx(1.0, abs=1e-6)
    values = [ssim(img, (img + level * noise).clamp(0, 1)).item() for level in (0.02, 0.1, 0.3)]
    assert values[0] > values[1] > values[2] and values[0] < 1.0
    other = (img + 0.1 * noise).clamp(0, 1)
    assert ssim(img, other).item() == pytest.approx(ssim(other, img).item(), abs=1e-6)
    losses = [photometric_loss((img + level * noise).clamp(0, 1), img).item() for level in (0.0, 0.02, 0.1)]
    assert losses[0] == pytest.approx(0.0, abs=1e-6) and losses[0] < losses[1] < losses[2]
    with pytest.raises(ValueError, match="shapes differ"):
        ssim(img, img[:-1])


def test_ssim_of_images_smaller_than_its_window_pad():
    # a live pixel lattice of a small view: 3 rows, fewer than the window's pad of 5
    rng = torch.Generator().manual_seed(0)
    image = torch.rand(3, 7, 3, generator=rng)
    assert float(ssim(image, image)) == pytest.approx(1.0, abs=1e-5)
    assert float(ssim(image, torch.rand(3, 7, 3, generator=rng))) < 0.9


def test_depth_loss_uses_measured_pixels_only():
    rendered = torch.full((4, 5), 2.0)
    measured = torch.zeros(4, 5)
    assert depth_loss(rendered, measured).item() == 0.0
    measured[1, 2], measured[3, 4] = 2.5, 1.0
    assert depth_loss(rendered, measured).item() == pytest.approx((0.5 + 1.0) / 2)


def test_identity_loss_is_confidence_weighted_cross_entropy():
    logits_gocl = torch.zeros(3, 2, 2)  # M = 2 entries + background
    logits_gocl[2, 0, 0] = 10.0  # confident: entry 1 (channel 2)
    logits_gocl[0, 1, 1] = 10.0  # confident: background
    target, confidence = identity_targets(logits_gocl)
    assert target[0, 0] == 2 and target[1, 1] == 0
    assert confidence[0, 1] == pytest.approx(1 / 3)  # uniform pixel: low confidence
    perfect = torch.full((2, 2, 3), -20.0)
    perfect[0, 0, 2] = 20.0
    perfect[1, 1, 0] = 20.0
    perfect[0, 1, target[0, 1]] = 20.0
    perfect[1, 0, target[1, 0]] = 20.0
    assert identity_loss(perfect, target, confidence).item() < 1e-6
    wrong = perfect.clone()
    wrong[0, 0] = torch.tensor([20.0, -20.0, -20.0])
    assert identity_loss(wrong, target, confidence).item() > 1.0
    # unsure pixels (1/3 < 0.5) give no gradient at all
    logits = torch.zeros(2, 2, 3, requires_grad=True)
    identity_loss(logits, target, confidence, min_confidence=0.5).backward()
    assert logits.grad[0, 1].abs().sum() == 0 and logits.grad[0, 0].abs().sum() > 0


def test_keyframes_by_motion_and_window_sampling():
    sel = KeyframeSelector(min_translation_m=0.1, min_rotation_deg=10.0)
    T = np.eye(4)
    assert sel.consider(T)
    T2 = T.copy()
    T2[0, 3] = 0.05
    assert not sel.consider(T2)  # 5 cm: not yet
    T2[0, 3] = 0.15
    assert sel.consider(T2)
    c, s = np.cos(np.radians(15)), np.sin(np.radians(15))
    T3 = T2.copy()
    T3[:3, :3] = [[c, -s, 0], [s, c, 0], [0, 0, 1]]
    assert pose_change(T2, T3) == pytest.approx((0.0, 15.0))
    assert sel.consider(T3)

    window = KeyframeWindow(window=3, old_samples=2, seed=1)
    for _ in range(2):
        window.added()
    assert window.batch() == [0, 1]
    for _ in range(8):
        window.added()
    batch = window.batch()
    assert batch[-3:] == [7, 8, 9] and len(batch) == 5 and all(i < 7 for i in batch[:2])
    seen_old = set()
    for _ in range(50):
        seen_old.update(window.batch()[:2])
    assert seen_old == set(range(7))  # older keyframes all get revisited


def test_soft_identity_loss_matches_hard_on_one_hot_targets_and_checks_shapes():
    from ocgs_ros.gaussians.losses import identity_loss_soft

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 6, 4, generator=g)
    target = torch.randint(0, 4, (5, 6), generator=g)
    one_hot = torch.nn.functional.one_hot(target, 4).float()
    hard = torch.nn.functional.cross_entropy(logits.reshape(-1, 4), target.reshape(-1))
    assert torch.allclose(identity_loss_soft(logits, one_hot), hard)
    uniform = torch.full_like(one_hot, 0.25)  # a uniform target is best matched by uniform logits
    assert identity_loss_soft(torch.zeros_like(logits), uniform) < identity_loss_soft(logits, uniform)
    with pytest.raises(ValueError, match="identity_loss_soft"):
        identity_loss_soft(logits, one_hot[..., :3])
