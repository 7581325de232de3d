"""Colour whitening of GOCL's reconstruction error and encoder input (ocl/colour.py)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ocgs_ros.ocl import GoclConfig, GoclModel, gocl_loss, load_checkpoint
from ocgs_ros.ocl.checkpoint import save_checkpoint
from ocgs_ros.ocl.colour import ColourWhitening, fit_colour_whitening
from ocgs_ros.ocl.data import GoclViewDataset
from ocgs_ros.ocl.losses import reconstruction_error
from ocgs_ros.ocl.train import main as train_main, training_pixels

torch.set_num_threads(1)


def correlated_pixels(count: int = 20000, seed: int = 0) -> np.ndarray:
    """Mostly brightness variation (one strong axis) plus a weak chroma axis, like the tabletop."""
    rng = np.random.default_rng(seed)
    brightness = rng.normal(0.0, 0.15, count)[:, None] * np.array([1.0, 0.8, 0.6])
    chroma = rng.normal(0.0, 0.03, count)[:, None] * np.array([0.3, 0.3, -1.0])
    noise = rng.normal(0.0, 0.01, (count, 3))  # full rank, as real sensor noise makes it
    return np.array([0.5, 0.42, 0.33]) + brightness + chroma + noise


def test_whitening_decorrelates_and_keeps_the_total_variance():
    pixels = correlated_pixels()
    mean, matrix = fit_colour_whitening(pixels)
    np.testing.assert_allclose(mean, pixels.mean(0), atol=1e-6)
    np.testing.assert_allclose(matrix, matrix.T, atol=1e-6)  # ZCA: symmetric, no rotation
    whitened = (pixels - mean) @ matrix.T
    covariance = np.cov(whitened, rowvar=False)
    total = np.trace(np.cov(pixels, rowvar=False))
    np.testing.assert_allclose(covariance, np.eye(3) * total / 3.0, atol=1e-4 * total)


@pytest.mark.parametrize("pixels", [np.zeros((1, 3)), np.full((10, 3), np.nan)])
def test_whitening_rejects_too_few_or_non_finite_pixels(pixels):
    with pytest.raises(ValueError, match="finite RGB pixels"):
        fit_colour_whitening(pixels)


def test_whitened_error_weighs_a_weak_colour_axis_like_a_strong_one():
    """The property the option exists for: in RGB an error along the weak (blue) axis costs far
    less than an equally large error along the dominant brightness axis; whitened, the two are close."""
    module = ColourWhitening()
    module.set(*fit_colour_whitening(correlated_pixels()))
    image = torch.full((1, 3, 8, 8), 0.4)
    strong = torch.tensor([1.0, 0.8, 0.6]) / np.sqrt(2.0)
    weak = torch.tensor([0.3, 0.3, -1.0]) / np.sqrt(1.18)
    shifted = {name: image + 0.2 * axis[None, :, None, None] for name, axis in (("strong", strong), ("weak", weak))}
    rgb_ratio = float(reconstruction_error(shifted["weak"], image) / reconstruction_error(shifted["strong"], image))
    white_ratio = float(reconstruction_error(shifted["weak"], image, module)
                        / reconstruction_error(shifted["strong"], image, module))
    assert rgb_ratio == pytest.approx(1.0, rel=0.05)  # equal-length shifts, equal RGB error
    assert white_ratio > 5.0 * rgb_ratio  # the rare axis is now the expensive one


def test_only_configs_that_whiten_carry_the_buffers_and_they_survive_a_checkpoint(tmp_path):
    assert GoclModel(GoclConfig.tiny()).colour_whitening is None  # older checkpoints load as before
    config = GoclConfig.tiny(whitened_colour_loss=True, whitened_encoder_input=True)
    model = GoclModel(config)
    mean, matrix = fit_colour_whitening(correlated_pixels())
    model.colour_whitening.set(mean, matrix)
    save_checkpoint(tmp_path / "m.pt", model, config)
    loaded, loaded_config, _ = load_checkpoint(tmp_path / "m.pt")
    assert loaded_config.whitened_encoder_input
    torch.testing.assert_close(loaded.colour_whitening.matrix, torch.from_numpy(matrix))
    torch.testing.assert_close(loaded.colour_whitening.mean, torch.from_numpy(mean))


def test_whitened_input_changes_what_the_encoder_sees():
    config = GoclConfig.tiny(whitened_encoder_input=True)
    torch.manual_seed(0)
    model = GoclModel(config).eval()
    images = torch.rand(2, 3, config.image_height, config.image_width)
    before = model(images).intrinsic_features
    model.colour_whitening.set(*fit_colour_whitening(correlated_pixels()))
    after = model(images).intrinsic_features
    assert not torch.allclose(before, after)


def test_loss_requires_the_module_when_the_config_whitens():
    config = GoclConfig.tiny(whitened_colour_loss=True)
    model = GoclModel(config)
    images = torch.rand(2, 3, config.image_height, config.image_width)
    with pytest.raises(ValueError, match="colour_whitening"):
        gocl_loss(model(images, tau=1.0), images, config)


def test_train_command_fits_the_whitening_on_its_training_images_and_resume_keeps_it(tmp_path, tiny_gocl_train_data):
    data = tiny_gocl_train_data
    args = ["--data", str(data), "--out", str(tmp_path / "run"), "--preset", "tiny", "--batch", "2",
            "--seed", "1", "--threads", "1", "--no-progress", "--checkpoint-every", "2",
            "--set", "whitened_colour_loss=true"]
    train_main([*args, "--steps", "2"])
    model, config, _ = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert config.whitened_colour_loss and not config.whitened_encoder_input
    expected_mean, expected_matrix = fit_colour_whitening(training_pixels(GoclViewDataset(data, size=(32, 32))))
    torch.testing.assert_close(model.colour_whitening.matrix, torch.from_numpy(expected_matrix))
    torch.testing.assert_close(model.colour_whitening.mean, torch.from_numpy(expected_mean))
    train_main([*args, "--steps", "4", "--resume"])
    resumed, _, meta = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert meta["step"] == 4
    torch.testing.assert_close(resumed.colour_whitening.matrix, torch.from_numpy(expected_matrix))
