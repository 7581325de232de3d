"""The crop/letterbox fit policy (ocgs_ros/image_fit.py): boxes, moved intrinsics (checked against
the simulator rendering the fitted camera directly), round trips back to the source grid, the
tensor twins, and the pipeline's view of a 16:9 camera."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from ocgs_ros.image_fit import (Box, check_policy, fit_image, fit_tensor, plan_fit, plan_resize, unfit_tensor)
from ocgs_ros.mapping.config import MappingConfig, ViewConfig
from ocgs_ros.mapping.pipeline import MappingFrame, ObjectMappingPipeline, view_fit, view_image
from ocgs_ros.settings import from_flat, problems
from ocgs_ros.sim.geometry import intrinsics
from ocgs_ros.sim.tabletop import TabletopWorld
from ocgs_ros.sim.types import CameraConfig, TabletopConfig

WIDE = (180, 320)  # (height, width): 16:9


@pytest.fixture(scope="module")
def world():
    return TabletopWorld(TabletopConfig(camera=CameraConfig(width=WIDE[1], height=WIDE[0], hfov_deg=70.0)), seed=4)


def test_crop_keeps_the_centre_at_the_target_aspect_and_letterbox_the_whole_image():
    crop = plan_fit(WIDE, (48, 48), "crop")
    assert crop.source_box == Box(70, 0, 180, 180) and crop.target_box == Box(0, 0, 48, 48)
    tall = plan_fit((200, 100), (60, 80), "crop")
    assert tall.source_box == Box(0, 62, 100, 75) and tall.target_box == Box(0, 0, 80, 60)
    box = plan_fit(WIDE, (48, 48), "letterbox")
    assert box.source_box == Box(0, 0, 320, 180) and box.target_box == Box(0, 10, 48, 27)
    for policy in ("crop", "letterbox"):  # the model's own aspect: a plain resize either way
        assert plan_fit((240, 320), (120, 160), policy).is_plain_resize
    assert not crop.is_plain_resize and plan_resize(WIDE, (48, 48)).is_plain_resize
    with pytest.raises(ValueError, match="unknown fit policy 'squash'"):
        check_policy("squash")
    with pytest.raises(ValueError, match="positive"):
        plan_fit((0, 10), (4, 4))


@pytest.mark.parametrize("policy", ["crop", "letterbox"])
def test_moved_intrinsics_project_a_point_where_the_pixel_went(policy):
    K = np.array([[300.0, 0.0, 170.0], [0.0, 310.0, 80.0], [0.0, 0.0, 1.0]])
    fit = plan_fit(WIDE, (48, 64), policy)
    K2 = fit.move_intrinsics(K)
    points = np.random.default_rng(0).uniform([-1, -0.5, 2], [1, 0.5, 6], (20, 3))
    uv = points @ K.T
    uv2 = points @ K2.T
    u, v = fit.to_target(uv[:, 0] / uv[:, 2], uv[:, 1] / uv[:, 2])
    np.testing.assert_allclose(uv2[:, 0] / uv2[:, 2], u, atol=1e-9)
    np.testing.assert_allclose(uv2[:, 1] / uv2[:, 2], v, atol=1e-9)
    back = fit.to_source(u, v)
    np.testing.assert_allclose(back[0], uv[:, 0] / uv[:, 2], atol=1e-9)
    np.testing.assert_allclose(back[1], uv[:, 1] / uv[:, 2], atol=1e-9)


@pytest.mark.parametrize("policy", ["crop", "letterbox"])
def test_the_fitted_image_is_what_the_moved_camera_sees(world, policy):
    """Render the world at 16:9, fit it to a square; render it again with the moved K at the square
    size: the instance images agree. A missing principal-point shift or a squash does not."""
    T = world.pose(0) @ world.T_base_camera
    camera = world.render_camera(T, world.K, WIDE[1], WIDE[0])
    fit = plan_fit(WIDE, (64, 64), policy)
    fitted = fit.apply(camera.instance, interpolation=cv2.INTER_NEAREST_EXACT, fill=-1)  # pixel-centre aligned
    direct = world.render_camera(T, fit.move_intrinsics(world.K), 64, 64).instance
    region = fitted >= 0  # letterbox bars: no camera ray

    def agreement(instance):
        objects = (fitted > 0) | (instance > 0)
        return ((fitted == instance) & objects & region).sum() / (objects & region).sum()

    assert agreement(direct) > 0.9
    off_by_one = fit.move_intrinsics(world.K)
    off_by_one[0, 2] += 1.0  # one target pixel
    assert agreement(world.render_camera(T, off_by_one, 64, 64).instance) < 0.8
    sx, sy = fit.scale
    unshifted = world.K.copy()  # scaled as a resize would, principal point not moved to the box
    unshifted[0] *= sx
    unshifted[1] *= sy
    assert agreement(world.render_camera(T, unshifted, 64, 64).instance) < 0.6
    squashed = plan_resize(WIDE, (64, 64)).move_intrinsics(world.K)
    assert agreement(world.render_camera(T, squashed, 64, 64).instance) < 0.6


def test_unfit_puts_values_back_on_the_source_grid():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)
    K = intrinsics(80, 60, 60.0)
    cropped, K_crop, crop = fit_image(image, K, 60, 60, "crop")  # scale 1: exact
    assert cropped.shape == (60, 60, 3) and np.array_equal(cropped, image[:, 10:70])
    assert K_crop[0, 2] == pytest.approx(K[0, 2] - 10) and K_crop[0, 0] == K[0, 0]
    back = crop.unfit(cropped, fill=7)
    assert np.array_equal(back[:, 10:70], image[:, 10:70]) and (back[:, :10] == 7).all() and (back[:, 70:] == 7).all()
    assert crop.seen().sum() == 60 * 60 and not crop.seen()[:, :10].any()
    boxed, K_box, box = fit_image(image, K, 80, 80, "letterbox")
    assert np.array_equal(boxed[10:70], image) and (boxed[:10] == 0).all() and (boxed[70:] == 0).all()
    assert K_box[1, 2] == pytest.approx(K[1, 2] + 10)
    assert np.array_equal(box.unfit(boxed), image)  # bars dropped
    assert box.seen().all()
    # on another grid of the same field of view (e.g. full resolution): boxes scale with it
    assert crop.output_box((120, 160)) == Box(20, 0, 120, 120)
    assert crop.unfit(cropped[..., 0], fill=0, output_size=(120, 160)).shape == (120, 160)


@pytest.mark.parametrize("policy", ["crop", "letterbox"])
def test_tensor_fit_and_unfit_match_the_image_ones(policy):
    rng = np.random.default_rng(2)
    values = rng.random((60, 80, 2)).astype(np.float32)
    fit = plan_fit((60, 80), (60, 60) if policy == "crop" else (80, 80), policy)  # scale 1: exact
    tensor = torch.from_numpy(values).permute(2, 0, 1)[None]
    fitted = fit_tensor(tensor, fit, fill=0.0)
    np.testing.assert_array_equal(fitted[0].permute(1, 2, 0).numpy(), fit.apply(values, fill=0.0))
    back = unfit_tensor(fitted, fit, torch.tensor([5.0, 6.0]))
    np.testing.assert_array_equal(back[0].permute(1, 2, 0).numpy(), fit.unfit(fit.apply(values), fill=[5.0, 6.0]))


def test_view_fit_is_a_setting_and_letterbox_views_carry_no_bars():
    assert ViewConfig().fit == "crop"
    assert problems(ViewConfig, {"fit": "squash"}) and not problems(ViewConfig, {"fit": "letterbox"})
    crop_view = ViewConfig(process_width=160, process_height=120)
    letterbox_view = ViewConfig(process_width=160, process_height=120, fit="letterbox")
    assert view_fit(WIDE, crop_view).source_box == Box(40, 0, 240, 180)
    assert view_fit(WIDE, letterbox_view).is_plain_resize and view_fit(WIDE, letterbox_view).target_size == (90, 160)
    assert view_fit(WIDE, ViewConfig(process_width=0, process_height=0)).target_size == WIDE


def test_the_pipeline_maps_a_16_9_camera_without_distortion(world):
    """The view the map is built from, and the K it is given, are those of a camera the simulator
    renders directly; the registered depth follows the same fit."""
    frame = world.frame(0)
    config = from_flat(MappingConfig, {"view.process_width": 64, "view.process_height": 48, "gocl.checkpoint": "none",
                                       "mapper.iterations_per_frame": 1})
    pipeline = ObjectMappingPipeline(config)
    update = pipeline.process(MappingFrame(frame.camera.rgb, frame.camera.K, frame.camera.T_world_cam,
                                           frame.lidar.points, frame.lidar.T_world_lidar,
                                           depth=frame.camera.depth))
    assert update.rgb.shape == (48, 64, 3)
    direct = world.render_camera(frame.camera.T_world_cam, update.K, 64, 48)
    assert np.abs(update.rgb.astype(float) - direct.rgb).mean() < 6.0
    rgb, K = view_image(frame.camera.rgb, frame.camera.K, config.view)
    assert np.array_equal(rgb, update.rgb) and np.array_equal(K, update.K)
