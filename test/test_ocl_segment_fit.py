"""GOCL on an image that is not square: a 16:9 simulated tabletop view is centre-cropped to the
shipped model's square input, and its masks, mapped back to the 320x180 pixel grid, line up with
the ground-truth instances there. The same outputs laid over the whole image (a squash back) or
shifted by 8 pixels line up far worse, and squashing the image into the model does worse too."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from ocgs_ros import models
from ocgs_ros.image_fit import fit_tensor, plan_resize, unfit_tensor
from ocgs_ros.ocl.checkpoint import load_checkpoint
from ocgs_ros.ocl.data import gocl_tabletop_config
from ocgs_ros.ocl.segment import GoclSegmenter
from ocgs_ros.sim.tabletop import TabletopWorld
from ocgs_ros.sim.types import CameraConfig

WIDTH, HEIGHT = 320, 180
# The training camera has a 40 degree FOV on a square: the central 180x180 of this camera sees
# exactly that, so the crop is the model's training view at a higher resolution.
HFOV = float(np.degrees(2 * np.arctan(np.tan(np.radians(20.0)) * WIDTH / HEIGHT)))


@pytest.fixture(scope="module")
def segmenter():
    torch.set_num_threads(1)
    model, _, _ = load_checkpoint(models.shipped_checkpoint("gocl"))
    return GoclSegmenter(model.eval())


@pytest.fixture(scope="module")
def views():
    config = dataclasses.replace(gocl_tabletop_config(), camera=CameraConfig(width=WIDTH, height=HEIGHT, hfov_deg=HFOV))
    return [TabletopWorld(config, seed=100 + seed).frame(index).camera for seed in range(4) for index in (0, 30, 60)]


def image_tensor(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255.0


def foreground_iou(slot_of_pixel: np.ndarray, instance: np.ndarray, region: np.ndarray) -> float:
    predicted, truth = (slot_of_pixel > 0) & region, (instance > 0) & region
    return float((predicted & truth).sum() / max(1, (predicted | truth).sum()))


def test_masks_of_a_16_9_image_line_up_with_ground_truth_on_its_own_grid(segmenter, views):
    scores = {"fitted": [], "squashed_back": [], "shifted": [], "squashed_input": []}
    model = segmenter.model
    for camera in views:
        images = image_tensor(camera.rgb)
        result = segmenter.segment(images)
        assert result.masks.shape[-2:] == (HEIGHT, WIDTH) and result.pixel_codebook_logits.shape[-2:] == (HEIGHT, WIDTH)
        seen = result.seen[0].numpy()
        columns = np.flatnonzero(seen.any(axis=0))
        assert seen.all(axis=0)[columns].all() and (columns[0], columns[-1]) == (70, 249)  # the central 180 columns
        slots = result.masks[0].argmax(dim=0).numpy()
        assert (slots[:, ~seen.any(axis=0)] == 0).all()  # never seen: background in the masks
        scores["fitted"].append(foreground_iou(slots, camera.instance, seen))
        scores["shifted"].append(foreground_iou(np.roll(slots, 8, axis=1), camera.instance, seen))
        inner = torch.from_numpy(slots[:, columns[0]:columns[-1] + 1]).float()[None, None]
        stretched = torch.nn.functional.interpolate(inner, size=(HEIGHT, WIDTH), mode="nearest")[0, 0].numpy()
        scores["squashed_back"].append(foreground_iou(stretched, camera.instance, seen))
        squash = plan_resize((HEIGHT, WIDTH), (model.config.image_height, model.config.image_width))
        with torch.no_grad():
            alpha = model(fit_tensor(images, squash)).alpha_logits
        squashed = unfit_tensor(alpha.softmax(dim=1), squash, torch.zeros(alpha.shape[1]))[0].argmax(dim=0).numpy()
        scores["squashed_input"].append(foreground_iou(squashed, camera.instance, seen))
    mean = {name: float(np.mean(values)) for name, values in scores.items()}
    # measured: fitted 0.64, shifted 0.48, squashed back 0.25, squashed input 0.57
    assert mean["fitted"] > 0.55, mean
    assert mean["fitted"] > mean["shifted"] + 0.08, mean
    assert mean["fitted"] > mean["squashed_back"] + 0.25, mean
    assert mean["fitted"] > mean["squashed_input"] + 0.03, mean


def test_square_inputs_are_unchanged_and_full_resolution_is_on_request(segmenter):
    images = torch.rand(2, 3, 48, 48, generator=torch.Generator().manual_seed(0))
    result = segmenter.segment(images)
    assert result.seen.all() and result.masks.shape[-2:] == (48, 48)
    model = segmenter.model
    with torch.no_grad():  # a square image at the model's size: the model's own masks
        alpha = model(images).alpha_logits
    torch.testing.assert_close(result.masks, (alpha / segmenter.mask_temperature).softmax(dim=1))
    # the passes run in inference mode; what is returned must not be an inference tensor: the
    # mapper keeps the pixel distributions as targets of losses autograd differentiates
    assert not any(value.is_inference() for value in vars(result).values() if isinstance(value, torch.Tensor))
    wide = torch.rand(1, 3, 90, 160, generator=torch.Generator().manual_seed(1))
    processing = segmenter.segment(wide)
    full = segmenter.segment(wide, output_size=(180, 320))
    assert processing.masks.shape[-2:] == (90, 160) and full.masks.shape[-2:] == (180, 320)
    assert full.seen[0].sum() == 180 * 180 and processing.seen[0].sum() == 90 * 90
    torch.testing.assert_close(full.pixel_codebook_logits.exp().sum(dim=1), torch.ones(1, 180, 320))
    with pytest.raises(ValueError, match="output_size"):
        segmenter.segment(wide, output_size=(0, 10))
    with pytest.raises(ValueError, match="unknown fit policy"):
        GoclSegmenter(model, fit="stretch")
