"""Recipe options of issue 17 (GOLD's choices): each defaults to the original behaviour.

* ``tau_schedule`` / ``tau_anneal_start``: cosine anneal between two steps;
* ``codebook_refine_logits``: GRU-refined codebook choice (starts as the plain choice);
* ``grad_clip_norm``: clip the largest absolute gradient instead of the global 2-norm;
* ``--init-from`` a warm-up may change the codebook size (its prototypes are redrawn anyway).
"""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from ocgs_ros.ocl import GoclConfig, GoclModel, build_optimizer, gumbel_tau, load_checkpoint, train_step
from ocgs_ros.ocl.codebook import GlobalCodebook
from ocgs_ros.ocl.config import GRAD_CLIP_NORMS, TAU_SCHEDULES
from ocgs_ros.ocl.data import ensure_gocl_dataset
from ocgs_ros.ocl.train import main as train_main
from ocgs_ros.ocl.train import transferable_weights

torch.set_num_threads(1)


def test_defaults_are_the_original_recipe():
    config = GoclConfig.cpu()
    assert (config.tau_schedule, config.tau_anneal_start, config.codebook_refine_logits,
            config.grad_clip_norm) == ("exponential", 0, False, "l2")
    # Older checkpoints store no such keys: from_dict fills in the defaults.
    stored = {k: v for k, v in config.to_dict().items()
              if k not in ("tau_schedule", "tau_anneal_start", "codebook_refine_logits", "grad_clip_norm")}
    assert GoclConfig.from_dict(stored) == config


def test_default_tau_schedule_is_unchanged_exponential():
    for step in (0, 1, 500, 2000, 7999, 8000, 9000):
        expected = 0.1 if step >= 8000 else math.exp(math.log(0.3) + step / 8000 * (math.log(0.1) - math.log(0.3)))
        assert gumbel_tau(step, 0.3, 0.1, 8000) == expected
    assert GoclModel(GoclConfig.tiny(tau_start=0.3, tau_anneal_steps=8000)).tau_at(2000) == gumbel_tau(2000, 0.3, 0.1,
                                                                                                          8000)


def test_cosine_schedule_holds_then_anneals_between_its_steps():
    taus = [gumbel_tau(s, 1.0, 0.1, 4000, anneal_start=2000, shape="cosine") for s in range(0, 5000, 100)]
    assert taus[:21] == [1.0] * 21  # steps 0..2000
    assert gumbel_tau(3000, 1.0, 0.1, 4000, anneal_start=2000, shape="cosine") == pytest.approx(0.55)
    assert gumbel_tau(4000, 1.0, 0.1, 4000, anneal_start=2000, shape="cosine") == 0.1
    assert all(a >= b for a, b in zip(taus, taus[1:]))
    model = GoclModel(GoclConfig.tiny(tau_schedule="cosine", tau_anneal_start=100, tau_anneal_steps=300))
    assert model.tau_at(50) == 1.0 and model.tau_at(200) == pytest.approx(0.55)


def test_bad_schedule_and_clip_settings_are_named():
    with pytest.raises(ValueError, match="tau_schedule"):
        GoclConfig.tiny(tau_schedule="linear")
    with pytest.raises(ValueError, match="tau_anneal_start"):
        GoclConfig.tiny(tau_anneal_start=300, tau_anneal_steps=200)
    with pytest.raises(ValueError, match="grad_clip_norm"):
        GoclConfig.tiny(grad_clip_norm="l1")
    with pytest.raises(ValueError, match="anneal_start"):
        gumbel_tau(10, 1.0, 0.1, 100, anneal_start=100)
    with pytest.raises(ValueError, match="shape"):
        gumbel_tau(10, 1.0, 0.1, 100, shape="step")
    assert set(TAU_SCHEDULES) == {"exponential", "cosine"} and set(GRAD_CLIP_NORMS) == {"l2", "inf"}


def test_refined_choice_adds_parameters_only_and_starts_as_the_plain_choice():
    torch.manual_seed(0)
    plain = GoclModel(GoclConfig.tiny()).eval()
    torch.manual_seed(0)
    refined = GoclModel(GoclConfig.tiny(codebook_refine_logits=True)).eval()
    plain_state, refined_state = plain.state_dict(), refined.state_dict()
    extra = set(refined_state) - set(plain_state)
    assert extra and all(k.startswith("codebook.refiner.") for k in extra)
    # The refiner is built on a forked RNG: every shared weight is drawn exactly as without it.
    assert all(torch.equal(plain_state[k], refined_state[k]) for k in plain_state)
    images = torch.rand(2, 3, 32, 32)
    a, b = plain(images), refined(images)
    torch.testing.assert_close(b.codebook_logits, a.codebook_logits, rtol=0, atol=1e-5)
    assert torch.equal(a.codebook_weights, b.codebook_weights)


def test_refined_choice_learns_and_carries_its_state_across_iterations():
    torch.manual_seed(0)
    model = GoclModel(GoclConfig.tiny(codebook_refine_logits=True, num_iterations=3))
    optimizer = build_optimizer(model)
    images = torch.rand(4, 3, 32, 32)
    before = model.codebook.refiner.readout.weight.detach().clone()
    train_step(model, optimizer, images, step=0)
    assert not torch.equal(model.codebook.refiner.readout.weight, before)  # the zero read-out moves
    codebook = model.codebook.eval()
    features = torch.randn(2, 3, codebook.dim)
    first = codebook.quantise(features, tau=0.5)
    second = codebook.quantise(features, tau=0.5, refinement_state=first.refinement_state)
    assert first.refinement_state.shape == (2, 3, codebook.codebook_size)
    assert not torch.equal(first.refinement_state, second.refinement_state)
    assert GlobalCodebook(4, 8).quantise(torch.randn(3, 8), tau=0.5).refinement_state is None


def test_inf_norm_clipping_bounds_the_largest_gradient():
    torch.manual_seed(0)
    model = GoclModel(GoclConfig.tiny(grad_clip=1e-4, grad_clip_norm="inf", use_codebook=False))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # keep the gradients readable
    result = train_step(model, optimizer, torch.rand(2, 3, 32, 32), step=0)
    largest = max(float(p.grad.abs().max()) for p in model.parameters() if p.grad is not None)
    assert result["grad_norm"] > 1e-4  # the reported norm is the unclipped inf-norm
    assert largest == pytest.approx(1e-4, rel=1e-3)



@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("gocl") / "train"
    return ensure_gocl_dataset(root, num_scenes=2, seed=0, width=32, height=32, views_per_scene=2, progress=False)


def _tiny_run(data: Path, out: Path, steps: int, *extra: str) -> int:
    return train_main(["--data", str(data), "--out", str(out), "--preset", "tiny", "--steps", str(steps),
                       "--batch", "2", "--seed", "3", "--log-every", "2", "--threads", "1", "--no-progress", *extra])


def test_init_from_a_warmup_may_change_the_codebook_size(tiny_dataset, tmp_path):
    """A warm-up checkpoint's prototypes are untrained (k-means redraws them at the switch), so an
    arm that only changes the codebook size can start from a shared warm-up."""
    warmup, arm = tmp_path / "warmup", tmp_path / "arm"
    assert _tiny_run(tiny_dataset, warmup, 2, "--no-codebook") == 0
    assert _tiny_run(tiny_dataset, arm, 3, "--init-from", str(warmup / "checkpoint.pt"),
                     "--set", "codebook_size=6") == 0
    model, config, meta = load_checkpoint(arm / "checkpoint.pt")
    source, _, _ = load_checkpoint(warmup / "checkpoint.pt")
    assert meta["step"] == 3 and config.use_codebook and model.codebook.prototypes.shape[0] == 6
    # A codebook in use is never replaced: its size must match.
    with pytest.raises(RuntimeError, match="size mismatch"):
        source.load_state_dict(transferable_weights(model, source))


def test_refined_choice_from_a_plain_warmup_equals_the_single_run(tiny_dataset, tmp_path):
    """The refiner is unused before the switch and built on a forked RNG, so starting a refined arm
    from a plain warm-up (--init-from) computes exactly what one refined run with the warm-up does."""
    single, warmup, forked = tmp_path / "single", tmp_path / "warmup", tmp_path / "forked"
    assert _tiny_run(tiny_dataset, single, 5, "--set", "codebook_warmup_steps=3",
                     "--set", "codebook_refine_logits=true") == 0
    assert _tiny_run(tiny_dataset, warmup, 3, "--no-codebook") == 0
    assert _tiny_run(tiny_dataset, forked, 5, "--init-from", str(warmup / "checkpoint.pt"),
                     "--set", "codebook_refine_logits=true") == 0
    a = torch.load(single / "checkpoint.pt", weights_only=True)
    b = torch.load(forked / "checkpoint.pt", weights_only=True)
    assert any(k.startswith("codebook.refiner.") for k in a["state_dict"])
    assert a["state_dict"].keys() == b["state_dict"].keys()
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
