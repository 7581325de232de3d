"""ObjectMappingPipeline on a few simulated tabletop frames: objects, queries, snapshots, rejections,
resizing, reset, persistence and determinism (small views; ground-truth identity where objects matter)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from ocgs_ros.camera import resize_image
from ocgs_ros.mapping.config import GoclConfig, MappingConfig, ViewConfig
from ocgs_ros.mapping.errors import FrameRejected
from ocgs_ros.mapping.evaluate import EvalConfig, OracleIdentity, build_scene_map, make_world_config, mapping_frame
from ocgs_ros.mapping.pipeline import MappingFrame, ObjectMappingPipeline
from ocgs_ros.settings import from_flat
from ocgs_ros.sim.dataset import scene_seed
from ocgs_ros.sim.tabletop import TabletopWorld

# 64x48 views of a 128x96 camera; the node's iterations, LiDAR and Gaussian cap. After 12 frames
# the ground-truth identity has made the objects confident (>= 0.3) while spurious table patches are
# still near the uniform 1/33; min_object_confidence keeps the former.
SMALL = {"view.process_width": 64, "view.process_height": 48, "view.max_points": 3000,
         "min_object_confidence": 0.2, "seed": 3}


@pytest.fixture(scope="module")
def world():
    torch.set_num_threads(1)
    config = make_world_config(EvalConfig(camera_width=128, camera_height=96))
    return TabletopWorld(config, seed=scene_seed(7, 0))


@pytest.fixture(scope="module")
def frames(world):
    return [mapping_frame(world, index) for index in range(0, 120, 10)]


def oracle_pipeline(world, frames, config):
    oracle = OracleIdentity()
    for frame in frames:
        oracle.add_view(world, frame, config)
    return ObjectMappingPipeline(config, identity=oracle)


@pytest.fixture(scope="module")
def mapped(world, frames):
    """A pipeline with ground-truth identity that has integrated every frame."""
    config = from_flat(MappingConfig, SMALL)
    pipeline = oracle_pipeline(world, frames, config)
    update = build_scene_map(pipeline, frames)
    return pipeline, update


def test_objects_appear_where_the_world_has_them(world, mapped):
    pipeline, update = mapped
    objects = pipeline.objects()
    assert update.frames_integrated == 12 and update.num_gaussians == pipeline.map.num_gaussians > 0
    assert update.rgb.shape == (48, 64, 3) and update.K[0, 2] == pytest.approx((world.K[0, 2] + 0.5) / 2 - 0.5)
    assert [o.id for o in update.objects] == [o.id for o in objects] and objects
    kinds = {o.kind_id for o in world.objects}
    for obj in objects:  # oracle identity: entry = object kind, and each object sits on a real one
        assert obj.codebook_entry in kinds
        nearest = min(np.linalg.norm(obj.centroid[:2] - o.center[:2]) for o in world.objects
                      if o.kind_id == obj.codebook_entry)
        assert nearest < 0.05
    stats = pipeline.stats()
    assert stats["frames_integrated"] == 12 and stats["objects"] == len(objects) and stats["rejected"] == {}


def test_queries(mapped):
    pipeline, _ = mapped
    obj = pipeline.objects()[0]
    assert obj.id in [o.id for o in pipeline.query_by_codebook(obj.codebook_entry)]
    assert all(o.codebook_entry == obj.codebook_entry for o in pipeline.query_by_codebook(obj.codebook_entry))
    assert pipeline.query_by_codebook(10_000) == []
    assert pipeline.query_by_point(obj.box_center, 0.0)[0].id == obj.id
    assert pipeline.query_by_point(obj.box_center + [5.0, 0.0, 0.0], 0.1) == []
    assert {o.id for o in pipeline.query_by_box([0, 0, 0], [10, 10, 10])} == {o.id for o in pipeline.objects()}
    assert pipeline.query_by_box([5.0, 5.0, 5.0], [0.1, 0.1, 0.1]) == []
    with pytest.raises(ValueError):
        pipeline.query_by_point(obj.box_center, -1.0)


def test_snapshot_matches_the_map(mapped):
    pipeline, _ = mapped
    snapshot = pipeline.snapshot()
    assert len(snapshot) == pipeline.map.num_gaussians
    assert np.array_equal(snapshot.means, pipeline.map.params["means"].detach().numpy())
    for obj in pipeline.objects():
        assert np.array_equal(np.flatnonzero(snapshot.instance == obj.id), np.unique(obj.gaussian_indices))
    assert set(np.unique(snapshot.instance)) <= {0, *(o.id for o in pipeline.objects())}
    assert (snapshot.opacity >= 0).all() and (snapshot.opacity <= 1).all() and (snapshot.scale > 0).all()
    capped = pipeline.snapshot(max_points=100)
    assert len(capped) == 100
    rows = {tuple(row) for row in snapshot.means.tolist()}
    assert all(tuple(row) in rows for row in capped.means.tolist())


def test_identity_render_shows_objects(world, frames, mapped):
    pipeline, update = mapped
    image = pipeline.render_identity(update.K, frames[-1].T_world_cam, 64, 48)
    assert image.shape == (48, 64, 3) and image.dtype == np.uint8 and image.any()
    rgb, entries = pipeline.render(update.K, frames[-1].T_world_cam, 64, 48)
    assert rgb.shape == (48, 64, 3) and entries.shape == (48, 64)
    assert set(np.unique(entries)) - {-1} <= {o.kind_id for o in world.objects}


def test_lidar_behind_the_camera_is_rejected(frames):
    pipeline = ObjectMappingPipeline(from_flat(MappingConfig, {**SMALL, "gocl.checkpoint": "none"}))
    frame = frames[0]
    behind_cam = np.array([[0.0, 0.0, -1.0], [0.1, 0.1, -0.5], [0.0, 0.0, 0.0]])
    T_lidar_cam = np.linalg.inv(frame.T_world_lidar) @ frame.T_world_cam
    points = behind_cam @ T_lidar_cam[:3, :3].T + T_lidar_cam[:3, 3]
    with pytest.raises(FrameRejected) as info:
        pipeline.process(dataclasses.replace(frame, points=points))
    assert info.value.reason == "empty_cloud"
    with pytest.raises(FrameRejected) as info:
        pipeline.process(dataclasses.replace(frame, T_world_cam=np.full((4, 4), np.nan)))
    assert info.value.reason == "tf_non_finite"
    with pytest.raises(FrameRejected) as info:
        pipeline.process(dataclasses.replace(frame, depth=np.ones((5, 5), np.float32)))
    assert info.value.reason == "depth_size_mismatch"
    assert pipeline.map.num_gaussians == 0
    assert pipeline.stats()["rejected"] == {"empty_cloud": 1, "tf_non_finite": 1, "depth_size_mismatch": 1}
    assert pipeline.process(frame).frames_integrated == 1  # the pipeline carries on


def test_camera_resolution_and_pre_resized_frames_give_the_same_map(frames):
    at_view = from_flat(MappingConfig, {**SMALL, "gocl.checkpoint": "none"})
    at_camera = dataclasses.replace(at_view, view=ViewConfig(process_width=0, process_height=0,
                                                             max_points=at_view.view.max_points))
    resized = []
    for frame in frames[:3]:
        rgb, K = resize_image(frame.rgb, frame.K, 64, 48)
        resized.append(dataclasses.replace(frame, rgb=rgb, K=K))
    a, b = ObjectMappingPipeline(at_view), ObjectMappingPipeline(at_camera)
    build_scene_map(a, frames[:3])
    build_scene_map(b, resized)
    assert a.map.num_gaussians == b.map.num_gaussians > 0
    assert torch.equal(a.map.params["means"], b.map.params["means"])


def test_registered_depth_grows_the_map_too(world, frames):
    config = from_flat(MappingConfig, {**SMALL, "gocl.checkpoint": "none", "mapper.grow_max_points": 20_000})
    frame = frames[0]
    depth = world.frame(0).camera.depth  # registered to the camera image, at its resolution
    lidar_only = ObjectMappingPipeline(config).process(frame).num_gaussians
    with_depth = ObjectMappingPipeline(config).process(dataclasses.replace(frame, depth=depth)).num_gaussians
    assert with_depth > lidar_only


def test_reset_empties_the_map(frames):
    config = from_flat(MappingConfig, {**SMALL, "gocl.checkpoint": "none"})
    pipeline = ObjectMappingPipeline(config)
    first = pipeline.process(frames[0]).num_gaussians
    pipeline.process(frames[1])
    pipeline.reset()
    assert pipeline.map.num_gaussians == 0 and pipeline.objects() == [] and pipeline.stats()["frames_integrated"] == 0
    assert pipeline.process(frames[0]).num_gaussians == first  # as a new pipeline


def test_same_seed_and_frames_give_the_same_map(world, frames, mapped):
    pipeline, _ = mapped
    torch.manual_seed(1234)  # other torch users in the process must not matter
    again = oracle_pipeline(world, frames, pipeline.config)
    build_scene_map(again, frames)
    assert again.map.num_gaussians == pipeline.map.num_gaussians
    assert [(o.id, o.codebook_entry, o.num_gaussians) for o in again.objects()] == \
        [(o.id, o.codebook_entry, o.num_gaussians) for o in pipeline.objects()]
    for a, b in zip(again.objects(), pipeline.objects()):
        assert np.array_equal(a.box_center, b.box_center) and np.array_equal(a.box_size, b.box_size)


def test_save_and_load_continue_the_map(tmp_path, mapped):
    pipeline, _ = mapped
    pipeline.save(tmp_path / "map")
    loaded = ObjectMappingPipeline(pipeline.config, identity=OracleIdentity())
    loaded.load(tmp_path / "map")
    assert loaded.map.num_gaussians == pipeline.map.num_gaussians
    assert [o.id for o in loaded.objects()] == [o.id for o in pipeline.objects()]
    assert np.array_equal(loaded.snapshot().instance, pipeline.snapshot().instance)


def test_bad_settings_are_named(tmp_path):
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="gocl.checkpoint") as info:
        ObjectMappingPipeline(MappingConfig(gocl=GoclConfig(checkpoint=str(broken))))
    assert str(broken) in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ValueError, match="both"):
        ViewConfig(process_width=64, process_height=0)
    with pytest.raises(ValueError, match="view.max_points"):
        from_flat(MappingConfig, {"view.max_points": -1})


def test_frame_defaults():
    frame = MappingFrame(np.zeros((4, 4, 3), np.uint8), np.eye(3), np.eye(4), np.zeros((0, 3)), np.eye(4))
    assert frame.stamp_ns == 0 and frame.depth is None
