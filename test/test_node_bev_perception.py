"""bev_perception_node in-process: simulated driving frames give typed detections and one
OccupancyGrid per map layer in the ego frame; bad input is logged, counted and dropped."""
from __future__ import annotations

import copy

import numpy as np
import pytest
from conftest import reject_families

from ocgs_ros.ros import conversions

NS = 1_000_000_000
START_NS = 1_700_000_000 * NS


@pytest.fixture(scope="module")
def bev_checkpoint(tmp_path_factory):
    import torch

    from ocgs_ros.bev.checkpoint import save_checkpoint
    from ocgs_ros.bev.config import BevConfig
    from ocgs_ros.bev.model import BevFusionModel

    torch.manual_seed(0)
    # score_threshold 0: an untrained model's peaks still decode, so the detection path is exercised
    path = tmp_path_factory.mktemp("bev") / "tiny.pt"
    save_checkpoint(path, BevFusionModel(BevConfig.tiny(score_threshold=0.0, max_detections=20)))
    return path


@pytest.fixture(scope="module")
def driving_frames():
    from ocgs_ros.ros.sim_messages import SimStream, make_world

    stream = SimStream(make_world("driving", 1, 128, 48, 16, 256))
    static = dict(stream.static_messages(conversions.ns_to_stamp(START_NS)))
    frames = [dict(stream.frame_messages(i, conversions.ns_to_stamp(START_NS + i * NS // 10)).sensors)
              for i in range(2)]
    return static, frames


def make_node(ros_context, checkpoint, **overrides):
    from rclpy.parameter import Parameter

    from ocgs_ros.nodes.bev_perception_node import BevPerceptionNode

    values = {"bev_checkpoint": str(checkpoint), "tf_timeout_s": 0.0, "min_score": 0.0, **overrides}
    return BevPerceptionNode(context=ros_context, parameter_overrides=[Parameter(k, value=v) for k, v in values.items()])


def feed_tf(node, static, frame) -> None:
    for t in static["/tf_static"].transforms:
        node.tf_buffer.set_transform_static(t, "test")


def parts(frame):
    return frame["/camera/image_raw"], frame["/camera/camera_info"], frame["/lidar/points"]


def run(node, *msgs) -> None:
    node.on_frame(*msgs)
    assert node.worker.wait_idle(60.0)


def test_driving_frame_gives_detections_and_map_layers(ros_context, bev_checkpoint, driving_frames):
    from ocgs_ros.bev.config import MAP_CLASSES

    static, frames = driving_frames
    node = make_node(ros_context, bev_checkpoint)
    sent = {}
    try:
        feed_tf(node, static, frames[0])
        node.pub_detections.publish = lambda msg: sent.__setitem__("detections", msg)
        node.pub_markers.publish = lambda msg: sent.__setitem__("markers", msg)
        node.pub_vision.publish = lambda msg: sent.__setitem__("vision", msg)
        run(node, *parts(frames[0]))
        assert node.published == 1 and not node.rejected, node.rejected
        detections = sent["detections"]
        assert detections.header.frame_id == "base_link"
        assert detections.header.stamp == frames[0]["/lidar/points"].header.stamp
        boxes, scores, labels, names = conversions.detection_array_to_bev(detections)
        assert len(boxes) > 0 and np.all((scores >= 0) & (scores <= 1))
        assert set(names) <= {"car", "truck", "pedestrian", "cyclist"}
        assert len(sent["markers"].markers) == 1 + 2 * len(boxes)  # DELETEALL + box + label each
        vision = sent["vision"]  # the same detections as vision_msgs/Detection3DArray
        assert vision.header == detections.header and len(vision.detections) == len(boxes)
        assert [d.results[0].hypothesis.class_id for d in vision.detections] == list(names)
        assert np.allclose([d.results[0].hypothesis.score for d in vision.detections], scores)
        assert np.allclose([[d.bbox.center.position.x, d.bbox.center.position.y] for d in vision.detections],
                           boxes[:, :2], atol=1e-5)
        assert node.pub_vision.topic_name == "/bev_perception_node/vision_detections"
        assert set(node.pub_layers) == set(MAP_CLASSES)
        assert all(pub.topic_name == f"/bev_perception_node/map/{name}" for name, pub in node.pub_layers.items())
    finally:
        node.destroy_node()


def test_bad_driving_input_is_dropped_and_the_node_survives(ros_context, bev_checkpoint, driving_frames):
    static, frames = driving_frames
    node = make_node(ros_context, bev_checkpoint)
    try:
        image, info, cloud = parts(frames[0])
        run(node, image, info, cloud)
        assert reject_families(node.rejected) == {"tf": 1}  # no extrinsics yet
        feed_tf(node, static, frames[0])
        mono32 = copy.deepcopy(image)
        mono32.encoding = "32FC1"
        broken = copy.deepcopy(cloud)
        broken.point_step = 3  # smaller than its own fields
        empty = conversions.xyz_to_pointcloud2(np.zeros((0, 3), np.float32), cloud.header.frame_id, cloud.header.stamp)
        for msgs in ((mono32, info, cloud), (image, info, broken), (image, info, empty), (image, None, cloud)):
            run(node, *msgs)
        assert reject_families(node.rejected) == {"tf": 1, "image": 1, "pointcloud": 2, "camera_info": 1}, node.rejected
        run(node, image, info, cloud)
        assert node.published == 1
    finally:
        node.destroy_node()


def test_bev_parameters_are_validated(ros_context, bev_checkpoint, tmp_path):
    with pytest.raises(ValueError, match="bev_checkpoint.*not found"):
        make_node(ros_context, bev_checkpoint, bev_checkpoint=str(tmp_path / "none.pt"))
    with pytest.raises(ValueError, match="camera"):
        make_node(ros_context, bev_checkpoint, image_topics=["/a", "/b"], camera_info_topics=["/a_info", "/b_info"])
    with pytest.raises(ValueError, match="camera_info_topics"):
        make_node(ros_context, bev_checkpoint, image_topics=["/a"], camera_info_topics=["/a_info", "/b_info"])


def test_lidar_intensity_is_scaled_before_the_model(ros_context, bev_checkpoint, driving_frames):
    """A 0-255 driver's intensity reaches the model in the 0-1 range it was trained on."""
    static, frames = driving_frames
    seen = {}
    for scale in (1.0, 1.0 / 255.0):
        node = make_node(ros_context, bev_checkpoint, lidar_intensity_scale=scale)
        try:
            feed_tf(node, static, frames[0])
            predict = node.predictor.predict
            node.predictor.predict = lambda images, Ks, T, points, s=scale: (
                seen.__setitem__(s, points[:, 3].copy()), predict(images, Ks, T, points))[1]
            run(node, *parts(frames[0]))
            assert node.published == 1, node.rejected
        finally:
            node.destroy_node()
    raw, scaled = seen[1.0], seen[1.0 / 255.0]
    assert raw.max() > 0 and np.allclose(scaled, raw / 255.0, rtol=1e-6)

