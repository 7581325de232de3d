"""Live frames (the node's): objects extracted in the background on their own cadence, maps that
depend only on the frames and the seed when the time budget is off, and objects that always match
the current map wherever Gaussian indices matter (saved maps, instance renders)."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from ocgs_ros.mapping.config import MappingConfig
from ocgs_ros.mapping.evaluate import EvalConfig, OracleIdentity, make_world_config, mapping_frame
from ocgs_ros.mapping.pipeline import ObjectMappingPipeline
from ocgs_ros.settings import from_flat
from ocgs_ros.sim.dataset import scene_seed
from ocgs_ros.sim.tabletop import TabletopWorld

# budget, background margin, opacity, lattice and keyframe rotation off: the map is a function of
# the frames and grows as an offline one, so live and offline maps can be compared; a period
# longer than the test: one background extraction (the first frame's), then none
LIVE = {"view.process_width": 64, "view.process_height": 48, "view.max_points": 3000, "seed": 3,
        "mapper.iterations_per_frame": 2, "mapper.frame_budget_ms": 0.0, "mapper.grow_background_margin": 0.0,
        "mapper.live_init_opacity": 0.0, "mapper.live_pixel_stride": 1, "mapper.live_keyframe_rotation": False,
        "mapper.live_grow_covered_sigma": 0.0, "objects_period_s": 1e6}


@pytest.fixture(scope="module")
def world_frames():
    torch.set_num_threads(1)
    world = TabletopWorld(make_world_config(EvalConfig(camera_width=128, camera_height=96)), seed=scene_seed(7, 0))
    return world, [mapping_frame(world, index) for index in range(0, 80, 10)]


def oracle_pipeline(world, frames, config):
    oracle = OracleIdentity()
    for frame in frames:
        oracle.add_view(world, frame, config)
    return ObjectMappingPipeline(config, identity=oracle)


def test_live_frames_extract_in_the_background_and_saved_objects_match_the_map(world_frames, tmp_path):
    world, frames = world_frames
    config = from_flat(MappingConfig, LIVE)
    live, offline = oracle_pipeline(world, frames, config), oracle_pipeline(world, frames, config)
    updates = [live.process(frame, live=True) for frame in frames]
    for frame in frames:
        offline.process(frame)
    assert not updates[0].objects_updated  # the first extraction runs beside the mapper
    assert sum(u.objects_updated for u in updates) == 1  # ... and one only, at this period
    assert live.snapshot().means.tobytes() == offline.snapshot().means.tobytes()  # same map, budget off
    # saving waits for the background work and re-extracts on the current map: the same objects
    # as after every offline frame (ids may differ: the tracker saw other intermediate maps)
    live.save(tmp_path / "live")
    live_objects, offline_objects = live.objects(), offline.objects()
    assert len(offline_objects) > 0 and len(live_objects) == len(offline_objects)
    for a, b in zip(sorted(live_objects, key=lambda o: tuple(o.centroid)),
                    sorted(offline_objects, key=lambda o: tuple(o.centroid))):
        assert a.codebook_entry == b.codebook_entry and np.array_equal(a.gaussian_indices, b.gaussian_indices)
        np.testing.assert_array_equal(a.aabb_min, b.aabb_min)
    assert live.stats()["frames_integrated"] == offline.stats()["frames_integrated"] == len(frames)


def test_a_failed_background_extraction_is_raised_not_lost(world_frames, tmp_path):
    world, frames = world_frames
    pipeline = ObjectMappingPipeline(from_flat(MappingConfig, {**LIVE, "gocl.checkpoint": "none",
                                                               "objects_period_s": 1e-9}))

    def broken_update(gmap, live=False):
        raise ValueError("broken tracker")

    pipeline.tracker.update = broken_update
    pipeline.process(frames[0], live=True)  # starts the extraction, which fails
    with pytest.raises(RuntimeError, match="object extraction failed: broken tracker"):
        pipeline.save(tmp_path / "map")  # waits for it: its failure surfaces here, not lost in the thread


def test_close_waits_for_a_running_background_extraction_within_its_bound(world_frames):
    world, frames = world_frames
    pipeline = ObjectMappingPipeline(from_flat(MappingConfig, {**LIVE, "gocl.checkpoint": "none"}))
    release = threading.Event()
    update = pipeline.tracker.update

    def held_update(gmap, live=False):
        release.wait(10.0)  # an extraction still running when the node goes down
        return update(gmap, live=live)

    pipeline.tracker.update = held_update
    assert pipeline.close(timeout_s=0.0)  # nothing running yet
    pipeline.process(frames[0], live=True)  # starts the first extraction beside the mapper
    assert not pipeline.close(timeout_s=0.05)  # bounded: reports it is still running
    release.set()
    assert pipeline.close(timeout_s=10.0)


def test_live_frames_grow_gaussians_at_the_live_opacity_and_offline_frames_at_the_maps(world_frames):
    world, frames = world_frames
    config = from_flat(MappingConfig, {**LIVE, "gocl.checkpoint": "none", "mapper.live_init_opacity": 0.3,
                                       "objects_period_s": 0.0})
    live, offline = ObjectMappingPipeline(config), ObjectMappingPipeline(config)
    live.process(frames[0], live=True)
    offline.process(frames[0])
    # the first frame's Gaussians, after its optimisation iterations: near where they started
    assert float(live.map.opacities_act().median()) == pytest.approx(0.3, abs=0.05)
    assert float(offline.map.opacities_act().median()) == pytest.approx(config.map.init_opacity, abs=0.05)


@pytest.mark.parametrize("extraction_s, iterations", [(0.0, 4), (1.05, 1)])
def test_a_live_frames_budget_keeps_the_last_extractions_time_for_its_objects(world_frames, monkeypatch,
                                                                             extraction_s, iterations):
    # The budget runs to the frame's objects: once an extraction took longer than the whole budget,
    # the next frame optimises the minimum (1 iteration), not its full count (a 1 s budget that a
    # handful of 64x48 iterations never approaches)
    world, frames = world_frames
    config = from_flat(MappingConfig, {**LIVE, "mapper.iterations_per_frame": 4, "mapper.frame_budget_ms": 1000.0,
                                       "objects_period_s": 0.0})
    pipeline = oracle_pipeline(world, frames[:2], config)
    update_tracker = pipeline._update_tracker

    def slow_update(*args):
        time.sleep(extraction_s)
        return update_tracker(*args)

    monkeypatch.setattr(pipeline, "_update_tracker", slow_update)
    pipeline.process(frames[0], live=True)
    before = pipeline.stats()["iterations"]
    pipeline.process(frames[1], live=True)
    assert pipeline.stats()["iterations"] - before == iterations
