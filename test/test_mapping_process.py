"""The mapping pipeline in its own process (ocgs_ros.mapping.process): the same map and objects as in
the caller's process, rejections raised with their reason, start-up errors named as the pipeline
names them, and a dead process reported as such instead of hanging the caller."""
from __future__ import annotations

import dataclasses
import os
import signal

import numpy as np
import pytest
import torch

from ocgs_ros.mapping.config import MappingConfig
from ocgs_ros.mapping.errors import FrameRejected
from ocgs_ros.mapping.evaluate import EvalConfig, make_world_config, mapping_frame
from ocgs_ros.mapping.pipeline import ObjectMappingPipeline
from ocgs_ros.mapping.process import PipelineProcess, PipelineProcessError
from ocgs_ros.settings import from_flat
from ocgs_ros.sim.dataset import scene_seed
from ocgs_ros.sim.tabletop import TabletopWorld

# the shipped GOCL model (built from the checkpoint path in each process, as the node does), small
# views, offline frames: a map that depends only on the frames and the seed
SETTINGS = {"gocl.checkpoint": "shipped", "view.process_width": 64, "view.process_height": 48,
            "view.max_points": 3000, "mapper.iterations_per_frame": 2, "seed": 3}


@pytest.fixture(scope="module")
def frames():
    torch.set_num_threads(1)
    world = TabletopWorld(make_world_config(EvalConfig(camera_width=128, camera_height=96)), seed=scene_seed(7, 0))
    return [mapping_frame(world, index) for index in range(0, 60, 10)]


def test_the_process_builds_the_same_map_and_objects_as_the_callers_process(frames, tmp_path):
    config = from_flat(MappingConfig, SETTINGS)
    local, remote = ObjectMappingPipeline(config), PipelineProcess(config, torch_threads=1)
    try:
        assert remote.pid != os.getpid()
        assert (remote.num_entries, remote.has_identity) == (local.num_entries, True)
        for frame in frames:
            a, b = local.process(frame), remote.process(frame)
            assert (a.num_gaussians, a.frames_integrated) == (b.num_gaussians, b.frames_integrated)
        assert remote.snapshot().means.tobytes() == local.snapshot().means.tobytes()
        local_objects, remote_objects = local.objects(), remote.objects()
        assert [(o.id, o.codebook_entry) for o in remote_objects] == [(o.id, o.codebook_entry) for o in local_objects]
        for a, b in zip(local_objects, remote_objects):
            np.testing.assert_array_equal(a.aabb_min, b.aabb_min)
        # a rejection keeps its class and reason across the process boundary, and is counted there
        with pytest.raises(FrameRejected) as info:
            remote.process(dataclasses.replace(frames[0], T_world_cam=np.full((4, 4), np.nan)))
        assert info.value.reason == "tf_non_finite"
        assert remote.stats()["rejected"] == {"tf_non_finite": 1}
        with remote.locked():  # one thread's several calls inside it do not wait for themselves
            paths = remote.save(tmp_path / "map")
            assert remote.stats()["frames_integrated"] == len(frames)
        assert paths["ply"].is_file()
        remote.reset()
        assert remote.stats()["gaussians"] == 0
    finally:
        assert remote.close(timeout_s=10.0)
    with pytest.raises(PipelineProcessError, match="closed"):
        remote.stats()


def test_an_unusable_checkpoint_is_named_by_the_processs_start(tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="gocl.checkpoint"):
        PipelineProcess(from_flat(MappingConfig, {**SETTINGS, "gocl.checkpoint": str(garbage)}))


def test_a_killed_process_fails_the_next_call_with_its_exit_code(frames):
    remote = PipelineProcess(from_flat(MappingConfig, {**SETTINGS, "gocl.checkpoint": "none"}))
    remote.process(frames[0])
    os.kill(remote.pid, signal.SIGKILL)
    with pytest.raises(PipelineProcessError, match="exited"):
        remote.process(frames[1])
    with pytest.raises(AttributeError):
        remote.mapper  # noqa: B018 - only the forwarded methods cross the boundary
    remote.close(timeout_s=1.0)
