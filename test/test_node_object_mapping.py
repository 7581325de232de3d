"""object_mapping_node in-process: frames from the simulator map into objects; every kind of bad
input is logged, counted and dropped while the node keeps mapping; services answer."""
from __future__ import annotations

import copy

import numpy as np
import pytest
from conftest import reject_families

from ocgs_ros.ros import conversions

NO_GOCL = {"gocl.checkpoint": "none"}


@pytest.fixture(scope="module")
def gocl_checkpoint(tmp_path_factory):
    import torch

    from ocgs_ros.ocl.checkpoint import save_checkpoint
    from ocgs_ros.ocl.config import GoclConfig
    from ocgs_ros.ocl.model import GoclModel

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("gocl") / "tiny.pt"
    save_checkpoint(path, GoclModel(GoclConfig.tiny()))
    return path


class KindIdentity:
    """Test double for the pipeline's identity source (GOCL): the simulator's object-kind image of
    the frame in hand as one-hot codebook logits (channel kind + 1), so this test exercises the
    node, not GOCL."""

    def __init__(self, entries: int):
        self.num_entries = entries
        self.kind_msg = None

    def pixel_logits(self, rgb):
        import cv2
        import torch

        kind = conversions.CvBridge().imgmsg_to_cv2(self.kind_msg).astype(np.int64)  # 0 = background
        kind = cv2.resize(kind.astype(np.uint16), (rgb.shape[1], rgb.shape[0]),
                          interpolation=cv2.INTER_NEAREST).astype(np.int64)
        logits = torch.full((self.num_entries + 1, *kind.shape), -20.0)
        logits.scatter_(0, torch.from_numpy(np.minimum(kind, self.num_entries))[None], 0.0)
        return logits


def make_node(ros_context, checkpoint, **overrides):
    from rclpy.parameter import Parameter

    from ocgs_ros.nodes.object_mapping_node import ObjectMappingNode

    values = {"gocl.checkpoint": str(checkpoint), "view.process_width": 64, "view.process_height": 48,
              "mapper.iterations_per_frame": 2, "view.max_points": 2000, "mapper.grow_max_points": 800,
              "objects.min_gaussians": 3, "objects.min_opacity": 0.0, "objects.link_radius": 0.05,
              "tf_timeout_s": 0.0, "publish_gaussians_period_s": 0.0,
              # in the node's process: these tests reach into the pipeline (test_mapping_process.py
              # and the tests below that set it true cover the pipeline's own process)
              "pipeline_process": False, **overrides}
    return ObjectMappingNode(context=ros_context, parameter_overrides=[Parameter(k, value=v) for k, v in values.items()])


def feed_tf(node, static, frame) -> None:
    for t in static["/tf_static"].transforms:
        node.tf_buffer.set_transform_static(t, "test")
    for t in frame["/tf"].transforms:
        node.tf_buffer.set_transform(t, "test")


def submit(node, image, info, cloud) -> None:
    node.on_frame(image, info, cloud)
    assert node.worker.wait_idle(60.0)


def parts(frame):
    return frame["/camera/image_raw"], frame["/camera/camera_info"], frame["/lidar/points"]


def test_frames_become_objects_and_services_answer(ros_context, gocl_checkpoint, sim_frames, tmp_path):
    from ocgs_ros_interfaces.srv import QueryObjects, SaveMap
    from std_srvs.srv import Trigger

    from ocgs_ros.gaussians.persistence import load_map

    static, frames = sim_frames
    node = make_node(ros_context, gocl_checkpoint, **{"gocl.checkpoint": "none", "gocl.num_codebook_entries": 32},
                     publish_identity_image=True)
    node.pipeline.identity = identity = KindIdentity(32)
    identity_images = []
    node.pub_identity.publish = identity_images.append
    try:
        for frame in frames:
            feed_tf(node, static, frame)
            identity.kind_msg = frame["/sim/camera/kind"]
            submit(node, *parts(frame))
        assert node.published == len(frames) and not node.rejected, node.rejected
        assert node.pipeline.map.num_gaussians > 100
        objects = node.objects
        assert objects, "a map of a table with objects must yield instances"
        # the debug identity image: the current camera's view of the instances, coloured by entry
        assert len(identity_images) == len(frames)
        identity = conversions.image_msg_to_rgb(identity_images[-1])
        assert identity.shape == (48, 64, 3) and identity.any(axis=2).mean() > 0.01
        assert identity_images[-1].header.frame_id == frames[-1]["/camera/image_raw"].header.frame_id

        # the published cloud carries every field the issue names, and instance ids of real objects
        cloud = conversions.pointcloud2_to_array(node.gaussians_cloud(frames[-1]["/lidar/points"].header.stamp))
        assert {"x", "y", "z", "rgb", "opacity", "scale", "instance"} <= set(cloud.dtype.names)
        assert set(np.unique(cloud["instance"])) - {0} <= {o.id for o in objects}

        target = objects[0]
        request = QueryObjects.Request(mode=QueryObjects.Request.BY_POINT_RADIUS, radius=0.01)
        request.point.x, request.point.y, request.point.z = (float(v) for v in target.box_center)
        response = node._on_query(request, QueryObjects.Response())
        assert response.success and target.id in [o.id for o in response.objects]
        far = QueryObjects.Request(mode=QueryObjects.Request.BY_POINT_RADIUS, radius=0.01)
        far.point.z = 50.0
        assert node._on_query(far, QueryObjects.Response()).objects == []
        by_entry = node._on_query(QueryObjects.Request(mode=QueryObjects.Request.BY_CODEBOOK_ENTRY,
                                                       codebook_entry=target.codebook_entry), QueryObjects.Response())
        assert {o.codebook_entry for o in by_entry.objects} == {target.codebook_entry}
        bad = node._on_query(QueryObjects.Request(mode=9), QueryObjects.Response())
        assert not bad.success and "mode" in bad.message

        saved = node._on_save(SaveMap.Request(path=str(tmp_path / "m")), SaveMap.Response())
        assert saved.success, saved.message
        gmap, tracker = load_map(saved.ply_path)
        assert gmap.num_gaussians == node.pipeline.map.num_gaussians
        assert [o.id for o in tracker.objects] == [o.id for o in objects]

        assert node._on_reset(Trigger.Request(), Trigger.Response()).success
        assert node.pipeline.map.num_gaussians == 0 and node.objects == []
    finally:
        node.destroy_node()


def _bad_inputs(frame):
    image, info, cloud = parts(frame)
    unknown_encoding = copy.deepcopy(image)
    unknown_encoding.encoding = "bayer_wxyz9"
    truncated = copy.deepcopy(cloud)
    truncated.data = bytes(truncated.data)[: len(truncated.data) // 3]
    points = conversions.pointcloud2_to_xyz(cloud)
    nan_cloud = conversions.xyz_to_pointcloud2(np.full_like(points, np.nan), cloud.header.frame_id, cloud.header.stamp)
    empty = conversions.xyz_to_pointcloud2(np.zeros((0, 3), np.float32), cloud.header.frame_id, cloud.header.stamp)
    wrong_info = copy.deepcopy(info)
    wrong_info.width = info.width * 2
    return [
        ("image", (unknown_encoding, info, cloud)),
        ("pointcloud", (image, info, truncated)),
        ("pointcloud", (image, info, nan_cloud)),
        ("pointcloud", (image, info, empty)),
        ("camera_info", (image, None, cloud)),
        ("camera_info", (image, wrong_info, cloud)),
    ]


def test_bad_input_is_dropped_and_counted_and_the_node_keeps_mapping(ros_context, gocl_checkpoint, sim_frames):
    static, frames = sim_frames
    node = make_node(ros_context, gocl_checkpoint, **NO_GOCL)
    try:
        # TF missing: no pose for this stamp yet
        submit(node, *parts(frames[0]))
        assert reject_families(node.rejected) == {"tf": 1} and node.published == 0
        feed_tf(node, static, frames[0])
        expected: dict[str, int] = {"tf": 1}
        for family, msgs in _bad_inputs(frames[0]):
            submit(node, *msgs)
            expected[family] = expected.get(family, 0) + 1
            assert reject_families(node.rejected) == expected, (family, node.rejected)
        assert node.published == 0
        # a good frame afterwards is mapped as usual
        submit(node, *parts(frames[0]))
        assert node.published == 1 and node.pipeline.map.num_gaussians > 0
        # NaN points mixed into a good cloud are removed, not fatal
        feed_tf(node, static, frames[1])
        image, info, cloud = parts(frames[1])
        pts = conversions.pointcloud2_to_xyz(cloud)
        pts[::3] = np.nan
        submit(node, image, info, conversions.xyz_to_pointcloud2(pts, cloud.header.frame_id, cloud.header.stamp))
        assert node.published == 2
    finally:
        node.destroy_node()


def test_the_pipelines_own_process_maps_and_its_death_is_counted_not_fatal(ros_context, gocl_checkpoint, sim_frames):
    import os
    import signal

    from ocgs_ros_interfaces.srv import QueryObjects
    from std_srvs.srv import Trigger

    static, frames = sim_frames
    node = make_node(ros_context, gocl_checkpoint, **NO_GOCL, pipeline_process=True)
    try:
        assert node.pipeline.pid != os.getpid()
        feed_tf(node, static, frames[0])
        submit(node, *parts(frames[0]))  # a frame through the process, published by the node
        assert node.published == 1 and not node.rejected and node.stats()["gaussians"] > 0
        os.kill(node.pipeline.pid, signal.SIGKILL)
        feed_tf(node, static, frames[1])
        submit(node, *parts(frames[1]))
        assert node.published == 1 and reject_families(node.rejected) == {"processing": 1}
        query = node._on_query(QueryObjects.Request(mode=QueryObjects.Request.ALL), QueryObjects.Response())
        assert not query.success and "exited" in query.message
        assert not node._on_reset(Trigger.Request(), Trigger.Response()).success
        assert "exited" in node.stats()["pipeline_error"]
    finally:
        node.destroy_node()


def test_stale_and_out_of_order_frames_are_dropped(ros_context, gocl_checkpoint, sim_frames):
    static, frames = sim_frames
    node = make_node(ros_context, gocl_checkpoint, **NO_GOCL, max_input_age_s=5.0)
    try:
        # stamps from 2023 are far older than the wall clock: stale
        node.on_frame(*parts(frames[0]))
        assert reject_families(node.rejected) == {"stale": 1} and node.worker.stats.submitted == 0
    finally:
        node.destroy_node()
    node = make_node(ros_context, gocl_checkpoint, **NO_GOCL)
    try:
        for frame in frames:
            feed_tf(node, static, frame)
        # through the synchronizer: frame 2, then the older frame 1, then frame 3
        for index in (2, 1, 3):
            for slot, msg in enumerate(parts(frames[index])):
                node.sync.add(msg, slot)
            node.worker.wait_idle(60.0)
        assert node.sync.dropped_stale >= 1
        assert node.sync.emitted == 2 and node.published == 2 and not node.rejected
        # /diagnostics carries the worker's own time per frame beside the latency (published with
        # the second frame: the mean of the frames finished before it)
        assert node.diagnostics.summary()["process_ms_mean"] > 0
    finally:
        node.destroy_node()


def test_missing_camera_info_is_reported_by_diagnostics(ros_context, gocl_checkpoint, sim_frames):
    _, frames = sim_frames
    node = make_node(ros_context, gocl_checkpoint, **NO_GOCL)
    try:
        from diagnostic_msgs.msg import DiagnosticStatus

        image_sub, _, cloud_sub = node._subscribers
        for frame in frames[:3]:  # images and clouds arrive (through the subscribers' filters), no CameraInfo
            image_sub.signalMessage(frame["/camera/image_raw"])
            cloud_sub.signalMessage(frame["/lidar/points"])
        assert node.sync.emitted == 0 and node.worker.stats.submitted == 0
        level, message = node.diagnostics.level_and_message(node.diagnostics.summary())
        assert level == DiagnosticStatus.ERROR and "no camera_info" in message and "no image" not in message
    finally:
        node.destroy_node()


def test_a_gocl_checkpoint_drives_the_identities(ros_context, gocl_checkpoint, sim_frames):
    static, frames = sim_frames
    node = make_node(ros_context, gocl_checkpoint)
    try:
        assert node.pipeline.num_entries == 8  # the tiny model's codebook, not the parameter's 32
        feed_tf(node, static, frames[0])
        submit(node, *parts(frames[0]))
        assert node.published == 1 and not node.rejected
        assert node.pipeline.map.identity_head.out_features == 9
        segmenter = node.pipeline.identity.segmenter
        assert segmenter.flip_average and segmenter.mask_temperature == 0.5  # the defaults
        assert node.pipeline.tracker.config.ground_clearance == 0.01
    finally:
        node.destroy_node()
    node = make_node(ros_context, gocl_checkpoint, **{"gocl.flip_average": False, "gocl.mask_temperature": 0.35,
                                                      "objects.ground_clearance": 0.0})
    try:
        segmenter = node.pipeline.identity.segmenter
        assert not segmenter.flip_average and segmenter.mask_temperature == 0.35
        assert node.pipeline.tracker.config.ground_clearance == 0.0
    finally:
        node.destroy_node()


def test_invalid_parameters_fail_at_start_with_a_clear_error(ros_context, gocl_checkpoint, tmp_path):
    def bad(**overrides):
        return make_node(ros_context, gocl_checkpoint, **overrides)

    with pytest.raises(ValueError, match="gocl.checkpoint.*not found"):
        bad(**{"gocl.checkpoint": str(tmp_path / "missing.pt")})
    with pytest.raises(ValueError, match="process_width"):
        bad(**{"view.process_width": 64, "view.process_height": 0})
    with pytest.raises(ValueError, match="mapper.iterations_per_frame"):
        bad(**{"mapper.iterations_per_frame": 0})
    with pytest.raises(ValueError, match="gocl.mask_temperature"):
        bad(**{"gocl.mask_temperature": 0.0})
    with pytest.raises(ValueError, match="objects.ground_clearance"):
        bad(**{"objects.ground_clearance": -0.01})
    with pytest.raises(ValueError, match="view.process_width.*int"):  # a wrong type is one clear line too
        bad(**{"view.process_width": "abc"})
    # every bad parameter of both config classes in one line
    with pytest.raises(ValueError, match="sync_queue_size.*map.max_gaussians|map.max_gaussians.*sync_queue_size"):
        bad(**{"sync_queue_size": 0, "map.max_gaussians": 0})
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="gocl.checkpoint"):
        bad(**{"gocl.checkpoint": str(garbage)})
    with pytest.raises(ValueError, match="gocl.checkpoint"):  # raised in the pipeline's process, named alike
        bad(**{"gocl.checkpoint": str(garbage), "pipeline_process": True})


def test_a_registered_depth_camera_feeds_the_map_and_bad_depth_is_dropped(ros_context, gocl_checkpoint, sim_frames):
    static, frames = sim_frames
    node = make_node(ros_context, gocl_checkpoint, **NO_GOCL, depth_topic="/camera/depth",
                     **{"mapper.grow_max_points": 5000, "view.max_points": 1})
    calls = []
    mapper = node.pipeline.mapper
    integrate = mapper.integrate
    mapper.integrate = lambda *args, **kwargs: calls.append(kwargs.get("depth")) or integrate(*args, **kwargs)
    try:
        feed_tf(node, static, frames[0])
        depth_msg = frames[0]["/sim/camera/depth"]  # the simulator's depth image, registered to the camera
        assert len(node._subscribers) == 4
        node.on_frame(*parts(frames[0]), depth_msg)
        assert node.worker.wait_idle(60.0)
        assert node.published == 1 and not node.rejected, node.rejected
        depth = calls[-1]
        assert depth is not None and depth.shape == (48, 64) and depth.dtype == np.float32
        expected = conversions.depth_msg_to_metres(depth_msg)
        assert np.array_equal(depth, expected)  # 64x48 in, 64x48 processing: untouched
        # with 1 LiDAR point per frame, the depth pixels are what the map grew from
        assert node.pipeline.map.num_gaussians > 0.5 * (expected > 0).sum()

        wrong_encoding = copy.deepcopy(depth_msg)
        wrong_encoding.encoding = "rgb8"
        wrong_frame = copy.deepcopy(depth_msg)
        wrong_frame.header.frame_id = "elsewhere"
        small = conversions.metres_to_depth_msg(expected[::2, ::2], depth_msg.header.frame_id, depth_msg.header.stamp)
        for bad in (wrong_encoding, wrong_frame, small):
            node.on_frame(*parts(frames[0]), bad)
            assert node.worker.wait_idle(60.0)
        assert reject_families(node.rejected) == {"depth": 3} and node.published == 1, node.rejected
    finally:
        node.destroy_node()
