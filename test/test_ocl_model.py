"""GOCL model, loss, codebook, schedules and the segmentation API (tiny config, CPU, seconds)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ocgs_ros.ocl import (BACKGROUND_CODE, GlobalCodebook, GoclConfig, GoclModel, GoclSegmenter,
                          build_optimizer, gocl_loss, gumbel_tau, train_step, warmup_factor)
from ocgs_ros.ocl.losses import (codebook_usage, commitment_loss, kl_categorical_to_uniform,
                                 kl_diagonal_gaussian_to_standard)

torch.set_num_threads(1)

PALETTE = np.array([[0.9, 0.1, 0.1], [0.1, 0.8, 0.2], [0.1, 0.3, 0.9], [0.9, 0.8, 0.1]], np.float32)


def synthetic_images(count: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    """2-3 coloured discs/squares on a flat brownish background, float32 [count, 3, size, size]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    images = np.empty((count, 3, size, size), np.float32)
    for i in range(count):
        images[i] = np.array([0.35, 0.3, 0.25], np.float32)[:, None, None]
        for _ in range(rng.integers(2, 4)):
            color = rng.integers(len(PALETTE))
            radius = rng.uniform(0.12, 0.2) * size
            cx, cy = rng.uniform(radius, size - radius, 2)
            if color % 2 == 0:
                inside = (xx - cx) ** 2 + (yy - cy) ** 2 <= radius ** 2
            else:
                inside = (np.abs(xx - cx) <= radius * 0.85) & (np.abs(yy - cy) <= radius * 0.85)
            images[i][:, inside] = PALETTE[color][:, None]
    return torch.from_numpy(images)


@pytest.fixture
def tiny_model() -> GoclModel:
    torch.manual_seed(0)
    return GoclModel(GoclConfig.tiny())


# ----- config ---------------------------------------------------------------------------------

def test_config_round_trip_and_presets():
    for config in (GoclConfig.tiny(), GoclConfig.default(), GoclConfig.gold_reference()):
        assert GoclConfig.from_dict(config.to_dict()) == config
        assert all(not isinstance(v, tuple) for v in config.to_dict().values())
    assert GoclConfig.default().codebook_size >= 24  # the simulator has 24 object kinds
    gold = GoclConfig.gold_reference()
    assert (gold.num_slots, gold.intrinsic_dim + gold.extrinsic_dim, gold.codebook_size) == (8, 128, 10)


@pytest.mark.parametrize("bad", [dict(extrinsic_dim=3), dict(tau_end=2.0), dict(image_height=33),
                                 dict(codebook_size=0), dict(encoder_strides=(1, 2))])
def test_config_rejects_invalid_values(bad):
    with pytest.raises(ValueError, match="invalid GoclConfig"):
        GoclConfig.tiny(**bad)


def test_config_from_dict_rejects_unknown_keys():
    data = GoclConfig.tiny().to_dict()
    data["num_slotz"] = 3
    with pytest.raises(ValueError, match="num_slotz"):
        GoclConfig.from_dict(data)


# ----- schedules ------------------------------------------------------------------------------

def test_gumbel_tau_schedule_endpoints_and_shape():
    assert gumbel_tau(0, 1.0, 0.1, 1000) == pytest.approx(1.0)
    assert gumbel_tau(1000, 1.0, 0.1, 1000) == pytest.approx(0.1)
    assert gumbel_tau(10**6, 1.0, 0.1, 1000) == pytest.approx(0.1)
    # Exponential decay: halfway is the geometric mean of the endpoints.
    assert gumbel_tau(500, 1.0, 0.1, 1000) == pytest.approx(math.sqrt(0.1))
    taus = [gumbel_tau(s, 1.0, 0.1, 1000) for s in range(0, 1200, 50)]
    assert all(a >= b for a, b in zip(taus, taus[1:]))
    with pytest.raises(ValueError):
        gumbel_tau(-1)
    assert GoclModel(GoclConfig.tiny(tau_anneal_steps=10)).tau_at(10) == pytest.approx(0.1)


def test_warmup_factor():
    assert warmup_factor(0, 10) == pytest.approx(0.1)
    assert warmup_factor(9, 10) == pytest.approx(1.0)
    assert warmup_factor(5, 0) == 1.0


# ----- loss terms -----------------------------------------------------------------------------

def test_kl_categorical_to_uniform_zero_for_uniform_positive_for_collapse():
    m = 8
    assert float(kl_categorical_to_uniform(torch.full((m,), 1.0 / m))) == pytest.approx(0.0, abs=1e-6)
    collapsed = torch.zeros(m)
    collapsed[3] = 1.0
    assert float(kl_categorical_to_uniform(collapsed)) == pytest.approx(math.log(m))
    skewed = torch.tensor([0.5, 0.3, 0.1, 0.1])
    reference = torch.distributions.kl_divergence(torch.distributions.Categorical(probs=skewed),
                                                  torch.distributions.Categorical(probs=torch.full((4,), 0.25)))
    assert float(kl_categorical_to_uniform(skewed)) == pytest.approx(float(reference), rel=1e-5)


def test_codebook_usage_ignores_empty_slots_when_mass_weighted():
    probs = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]])  # [B=1, Ko=3, M=2]
    assert torch.allclose(codebook_usage(probs), torch.tensor([1 / 3, 2 / 3]))
    mass = torch.tensor([[0.2, 0.2, 0.0]])  # third slot is empty
    assert torch.allclose(codebook_usage(probs, mass), torch.tensor([0.5, 0.5]))


def test_kl_gaussian_matches_torch_distributions():
    mean, logvar = torch.randn(5, 6), torch.randn(5, 6)
    q = torch.distributions.Normal(mean, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros(5, 6), torch.ones(5, 6))
    expected = torch.distributions.kl_divergence(q, p).sum(-1)
    assert torch.allclose(kl_diagonal_gaussian_to_standard(mean, logvar), expected, atol=1e-5)


def test_loss_has_named_finite_terms(tiny_model):
    images = synthetic_images(2)
    tiny_model.train()
    terms = gocl_loss(tiny_model(images, tau=1.0), images, tiny_model.config)
    assert set(terms) == {"reconstruction", "kl_ext", "kl_bck", "kl_codebook_usage",
                          "background_smoothness", "commitment", "total"}
    assert all(torch.isfinite(v) and v.dim() == 0 for v in terms.values())


def test_commitment_loss_pulls_features_and_prototypes_together():
    features = torch.tensor([[[1.0, 0.0], [0.0, 3.0]]], requires_grad=True)  # [B=1, Ko=2, D=2]
    prototypes = torch.tensor([[[0.0, 0.0], [0.0, 1.0]]], requires_grad=True)
    mass = torch.tensor([[1.0, 0.0]])  # the second slot is empty: it must not count
    loss = commitment_loss(features, prototypes, mass, beta=0.25)
    assert float(loss.detach()) == pytest.approx((1.0 + 0.25 * 1.0) / 2)  # mean over D of 1^2, both parts
    loss.backward()
    # Features move towards their prototype with weight beta, prototypes towards features with 1.
    assert features.grad[0, 0, 0] > 0 and prototypes.grad[0, 0, 0] < 0
    assert float(prototypes.grad[0, 0, 0]) == pytest.approx(-4.0 * float(features.grad[0, 0, 0]))
    assert torch.all(features.grad[0, 1] == 0) and torch.all(prototypes.grad[0, 1] == 0)
    assert float(commitment_loss(features, None, mass, 0.25)) == 0.0


def test_commitment_weight_tightens_codebook_basins():
    """With the term on, slot features end closer to their selected prototypes than without."""
    images = synthetic_images(6, seed=5)

    def distance_after_training(weight: float) -> float:
        torch.manual_seed(0)
        model = GoclModel(GoclConfig.tiny(commitment_weight=weight))
        optimizer = build_optimizer(model)
        for step in range(30):
            train_step(model, optimizer, images, step)
        model.eval()
        with torch.no_grad():
            out = model(images)
        return float((out.intrinsic_features - out.selected_prototypes).pow(2).mean())

    assert distance_after_training(1.0) < 0.7 * distance_after_training(0.0)


def test_training_forward_requires_tau(tiny_model):
    tiny_model.train()
    with pytest.raises(ValueError, match="tau"):
        tiny_model(synthetic_images(1))


def test_loss_decreases_on_fixed_batch(tiny_model):
    images = synthetic_images(6, seed=3)
    config = tiny_model.config

    def eval_loss() -> float:
        tiny_model.eval()
        with torch.no_grad():
            return float(gocl_loss(tiny_model(images), images, config)["reconstruction"])

    before = eval_loss()
    optimizer = build_optimizer(tiny_model)
    for step in range(50):
        train_step(tiny_model, optimizer, images, step)
    after = eval_loss()
    # Measured ~0.36-0.44 of the initial error over 4 seeds; 0.6 leaves room for platform noise.
    assert after < 0.6 * before, (before, after)


# ----- codebook & collapse guard ---------------------------------------------------------------

def test_codebook_eval_is_deterministic_training_is_stochastic():
    torch.manual_seed(1)
    codebook = GlobalCodebook(6, 4)
    features = torch.randn(10, 4)
    codebook.eval()
    a, b = codebook.quantise(features, tau=0.5), codebook.quantise(features, tau=0.5)
    assert torch.equal(a.weights, b.weights)
    assert torch.equal(a.weights.argmax(-1), a.logits.argmax(-1))
    assert torch.allclose(a.quantised, codebook.prototypes[a.logits.argmax(-1)])
    codebook.train()
    c, d = codebook.quantise(features, tau=1.0), codebook.quantise(features, tau=1.0)
    assert not torch.equal(c.weights, d.weights)
    assert torch.allclose(c.weights.sum(-1), torch.ones(10))
    hard = codebook.quantise(features, tau=1.0, hard=True).weights
    assert torch.equal(hard.sum(-1), torch.ones(10)) and set(hard.unique().tolist()) <= {0.0, 1.0}


def test_collapse_guard_revives_dead_prototypes():
    torch.manual_seed(2)
    m, dim = 4, 3
    codebook = GlobalCodebook(m, dim, usage_ema_decay=0.5)
    with torch.no_grad():
        codebook.prototypes.copy_(torch.tensor([[3.0, 0, 0], [-3.0, 0, 0], [0, -3.0, 0], [0, 0, -3.0]]))
    # Every slot feature lies near prototype 0: prototypes 1-3 are never chosen (collapse).
    features = torch.tensor([[2.0, 0.2, 0.0], [2.0, 0.0, 0.3], [0.5, 3.0, 0.0], [0.4, 0.0, 3.0]])
    codebook.train()
    for _ in range(20):
        codebook.record_usage(features, codebook.logits(features).softmax(-1))
    assert codebook.logits(features).argmax(-1).tolist() == [0, 0, 0, 0]
    assert codebook.dead_prototypes(0.05).tolist() == [1, 2, 3]

    revived = codebook.revive_dead_prototypes(0.05)
    assert sorted(revived.tolist()) == [1, 2, 3]
    assert codebook.dead_prototypes(0.05).numel() == 0
    # The two features far from prototype 0 (the worst explained) were used, each exactly once.
    used = [int(torch.cdist(codebook.prototypes[i:i + 1], features).argmin()) for i in revived.tolist()]
    assert {2, 3} <= set(used)
    # ...and those features now select a revived prototype, so the entries get gradient again.
    codebook.eval()
    choice = codebook.quantise(features, tau=0.1).weights.argmax(-1)
    assert choice[2].item() in revived.tolist() and choice[3].item() in revived.tolist()
    assert choice[2] != choice[3]


def test_train_step_runs_collapse_guard():
    torch.manual_seed(3)
    model = GoclModel(GoclConfig.tiny(revive_every=1))
    optimizer = build_optimizer(model)
    images = synthetic_images(2)
    train_step(model, optimizer, images, 0)  # records features
    with torch.no_grad():
        model.codebook.usage_ema.zero_()
        model.codebook.usage_ema[0] = 1.0
    result = train_step(model, optimizer, images, 1)
    assert result["revived"] == model.config.codebook_size - 1
    assert model.codebook.dead_prototypes(model.config.dead_usage_fraction).numel() == 0


# ----- segmentation API -------------------------------------------------------------------------

def test_segment_outputs_shapes_dtypes_and_layout(tiny_model):
    cfg = tiny_model.config
    images = synthetic_images(3)
    # one pass: the composition rule below (flip averaging is tested on its own)
    result = GoclSegmenter(tiny_model, flip_average=False).segment(images)
    b, k, m = 3, cfg.num_slots, cfg.codebook_size
    assert result.masks.shape == (b, k, 32, 32) and result.masks.dtype == torch.float32
    assert torch.allclose(result.masks.sum(1), torch.ones(b, 32, 32), atol=1e-5)
    assert result.slot_codebook_ids.shape == (b, k) and result.slot_codebook_ids.dtype == torch.int64
    assert (result.slot_codebook_ids[:, 0] == BACKGROUND_CODE).all()
    assert ((result.slot_codebook_ids[:, 1:] >= 0) & (result.slot_codebook_ids[:, 1:] < m)).all()
    assert result.slot_confidence.shape == (b, k) and result.slot_confidence.dtype == torch.float32
    assert ((result.slot_confidence >= 0) & (result.slot_confidence <= 1)).all()
    assert result.slot_codebook_probs.shape == (b, k, m)
    assert torch.equal(result.slot_codebook_probs[:, 1:].argmax(-1), result.slot_codebook_ids[:, 1:])
    logits = result.pixel_codebook_logits
    assert logits.shape == (b, m + 1, 32, 32) and logits.dtype == torch.float32
    assert torch.allclose(logits.logsumexp(1), torch.zeros(b, 32, 32), atol=1e-4)
    # Channel 0 is the background mask; channel 1 + c is sum over object slots of mask * pi[c].
    probs = logits.exp()
    assert torch.allclose(probs[:, 0], result.masks[:, 0], atol=1e-5)
    expected = torch.einsum("bkhw,bkm->bmhw", result.masks[:, 1:], result.slot_codebook_probs[:, 1:])
    assert torch.allclose(probs[:, 1:], expected, atol=1e-5)
    assert result.channel_of_code(BACKGROUND_CODE) == 0 and result.channel_of_code(m - 1) == m


def test_segment_is_deterministic_and_restores_mode(tiny_model):
    images = synthetic_images(2)
    segmenter = GoclSegmenter(tiny_model)
    tiny_model.train()
    first, second = segmenter.segment(images), segmenter.segment(images)
    assert tiny_model.training
    assert torch.equal(first.slot_codebook_ids, second.slot_codebook_ids)
    assert torch.equal(first.masks, second.masks)
    assert torch.equal(first.pixel_codebook_logits, second.pixel_codebook_logits)


def test_segment_accepts_other_sizes(tiny_model):
    images = torch.nn.functional.interpolate(synthetic_images(2), size=(48, 40), mode="bilinear")
    result = GoclSegmenter(tiny_model).segment(images.clamp(0, 1))
    assert result.masks.shape[-2:] == (48, 40)
    assert result.pixel_codebook_logits.shape[-2:] == (48, 40)
    assert torch.allclose(result.masks.sum(1), torch.ones(2, 48, 40), atol=1e-5)
    assert torch.allclose(result.pixel_codebook_logits.logsumexp(1), torch.zeros(2, 48, 40), atol=1e-4)


@pytest.mark.parametrize("images, error, message", [
    (torch.zeros(1, 3, 32, 32, dtype=torch.uint8), TypeError, "255"),
    (torch.full((1, 3, 32, 32), 2.0), ValueError, r"\[0, 1\]"),
    (torch.zeros(1, 4, 32, 32), ValueError, "shape"),
    (torch.full((1, 3, 32, 32), float("nan")), ValueError, "NaN"),
])
def test_segment_rejects_bad_images(tiny_model, images, error, message):
    with pytest.raises(error, match=message):
        GoclSegmenter(tiny_model).segment(images)


def test_mask_temperature_sharpens_soft_masks_but_keeps_the_segmentation(tiny_model):
    images = synthetic_images(3, seed=11)
    tiny_model.eval()
    with torch.no_grad():
        model_masks = tiny_model(images).masks
    raw = GoclSegmenter(tiny_model, mask_temperature=1.0).segment(images)
    sharp = GoclSegmenter(tiny_model, mask_temperature=0.25).segment(images)
    assert torch.allclose(raw.masks, model_masks, atol=1e-6)
    assert torch.equal(raw.masks.argmax(1), sharp.masks.argmax(1))
    assert torch.equal(raw.slot_codebook_ids, sharp.slot_codebook_ids)
    assert float(sharp.masks.amax(1).mean()) > float(raw.masks.amax(1).mean())
    assert torch.allclose(sharp.masks.sum(1), torch.ones(3, 32, 32), atol=1e-5)
    with pytest.raises(ValueError, match="mask_temperature"):
        GoclSegmenter(tiny_model, mask_temperature=0.0)


def test_flip_average_makes_pixel_distributions_mirror_with_the_image(tiny_model):
    images = synthetic_images(2, seed=12)
    mirrored = images.flip(-1)
    single = GoclSegmenter(tiny_model, flip_average=False)
    averaged = GoclSegmenter(tiny_model)  # the default
    assert averaged.flip_average
    # One pass of a model with learned positions is not mirror-symmetric...
    a, b = single.segment(images), single.segment(mirrored)
    assert not torch.allclose(a.pixel_codebook_logits.flip(-1), b.pixel_codebook_logits, atol=1e-3)
    # ...the average of the image and its mirror image is, by construction.
    c, d = averaged.segment(images), averaged.segment(mirrored)
    torch.testing.assert_close(c.pixel_codebook_logits.flip(-1), d.pixel_codebook_logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(c.pixel_codebook_logits.exp().sum(1), torch.ones(2, 32, 32), atol=1e-5, rtol=0)
    # masks and slot entries are the image's own pass, unchanged by the option
    assert torch.equal(c.masks, a.masks) and torch.equal(c.slot_codebook_ids, a.slot_codebook_ids)
    assert not torch.allclose(c.pixel_codebook_logits, a.pixel_codebook_logits, atol=1e-3)
