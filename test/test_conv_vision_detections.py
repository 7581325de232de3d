"""BEV boxes -> vision_msgs/Detection3DArray: every field, a real predictor output, and the message
crossing DDS with the real vision_msgs type name and hash."""
from __future__ import annotations

import math

import numpy as np
import pytest
from vision_msgs.msg import Detection3DArray

from ocgs_ros.ros import conversions, qos

CLASSES = ("car", "truck", "pedestrian")
BOXES = np.array([[10.0, -2.0, 0.8, 4.5, 1.9, 1.6, 0.3, 5.0, -0.5],
                  [-3.0, 6.0, 0.9, 0.6, 0.6, 1.8, -2.8, 0.0, 1.0]])
STAMP_NS = 1_700_000_000_250_000_000
# Type hash of vision_msgs/msg/Detection3DArray (4.x, Humble and later) as published for the real
# package; the stand-in must hash the same or real subscribers would not match our publisher.
REAL_DETECTION3DARRAY_HASH = "RIHS01_793f5eab9595ac1c0da07873cc859db42eae51f0ee76056db8562515d830e018"


def _yaw(pose) -> float:
    q = pose.orientation
    assert q.x == pytest.approx(0.0, abs=1e-12) and q.y == pytest.approx(0.0, abs=1e-12)
    return 2.0 * math.atan2(q.z, q.w)


def test_every_field_of_each_detection():
    msg = conversions.bev_to_vision_detections(BOXES, [0.9, 0.4], [0, 2], CLASSES, "base_link", STAMP_NS)
    assert msg.header.frame_id == "base_link"
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (1_700_000_000, 250_000_000)
    assert len(msg.detections) == 2
    for det, box, score, name in zip(msg.detections, BOXES, [0.9, 0.4], ["car", "pedestrian"]):
        assert det.header == msg.header and det.header is not msg.header
        assert det.id == ""
        assert len(det.results) == 1
        hyp = det.results[0]
        assert hyp.hypothesis.class_id == name and hyp.hypothesis.score == pytest.approx(score)
        for pose in (hyp.pose.pose, det.bbox.center):
            p = pose.position
            assert [p.x, p.y, p.z] == pytest.approx(box[:3].tolist())
            assert math.remainder(_yaw(pose) - box[6], 2 * math.pi) == pytest.approx(0.0, abs=1e-9)
        assert [det.bbox.size.x, det.bbox.size.y, det.bbox.size.z] == pytest.approx(box[3:6].tolist())
        assert not any(hyp.pose.covariance)
    # the bbox centre is its own message, not an alias of the hypothesis pose
    msg.detections[0].bbox.center.position.x = -99.0
    assert msg.detections[0].results[0].pose.pose.position.x == pytest.approx(10.0)


def test_no_boxes_give_an_empty_array_and_bad_boxes_raise():
    empty = conversions.bev_to_vision_detections(np.zeros((0, 9)), [], [], CLASSES, "ego", 0)
    assert empty.detections == [] and empty.header.frame_id == "ego"
    with pytest.raises(ValueError, match=r"\[D, 9\]"):
        conversions.bev_to_vision_detections(BOXES[:, :7], [0.9, 0.4], [0, 2], CLASSES, "ego", 0)
    with pytest.raises(ValueError, match="labels must index"):
        conversions.bev_to_vision_detections(BOXES, [0.9, 0.4], [0, 3], CLASSES, "ego", 0)
    with pytest.raises(ValueError, match="NaN"):
        conversions.bev_to_vision_detections(np.full((1, 9), np.inf), [0.5], [0], CLASSES, "ego", 0)


def test_predictor_output_converts_box_for_box():
    from ocgs_ros import models
    from ocgs_ros.bev.inference import BevPredictor
    from ocgs_ros.ros.sim_messages import SimStream, make_world
    from ocgs_ros.mapping.frames import transform_points
    from ocgs_ros.ros.sensor_frames import camera_from_messages, cloud_points

    predictor = BevPredictor.from_checkpoint(models.shipped_checkpoint("bev"))
    stream = SimStream(make_world("driving", 1, 352, 128, 32, 512))
    stamp = conversions.ns_to_stamp(STAMP_NS)
    static = dict(stream.static_messages(stamp))
    frame = dict(stream.frame_messages(0, stamp).sensors)
    extrinsics = {t.child_frame_id: conversions.transform_to_matrix(t.transform)
                  for t in static["/tf_static"].transforms}
    camera = camera_from_messages(frame["/camera/image_raw"], frame["/camera/camera_info"])
    cloud = frame["/lidar/points"]
    points = transform_points(extrinsics[cloud.header.frame_id], cloud_points(cloud, with_intensity=True))
    pred = predictor.predict(camera.rgb[None], camera.K[None], extrinsics[camera.frame_id][None], points)
    assert len(pred.boxes) > 0
    msg = conversions.bev_to_vision_detections(pred.boxes, pred.scores, pred.labels, pred.class_names,
                                               "base_link", cloud.header.stamp)
    assert msg.header.stamp == cloud.header.stamp and len(msg.detections) == len(pred.boxes)
    for det, box, score, label in zip(msg.detections, pred.boxes, pred.scores, pred.labels):
        assert det.results[0].hypothesis.class_id == pred.class_names[label]
        assert det.results[0].hypothesis.score == pytest.approx(float(score), abs=1e-6)
        c = det.bbox.center.position
        assert [c.x, c.y, c.z, det.bbox.size.x, det.bbox.size.y, det.bbox.size.z] == \
            pytest.approx(np.asarray(box[:6], dtype=float).tolist(), abs=1e-5)


def test_the_message_crosses_dds_as_the_real_vision_msgs_type(ros_node):
    from conftest import spin_until

    received: list[Detection3DArray] = []
    ros_node.create_subscription(Detection3DArray, "/test/detections", received.append, qos.RELIABLE)
    pub = ros_node.create_publisher(Detection3DArray, "/test/detections", qos.RELIABLE)
    sent = conversions.bev_to_vision_detections(BOXES, [0.9, 0.4], [0, 2], CLASSES, "base_link", STAMP_NS)
    assert spin_until(ros_node, lambda: pub.get_subscription_count() > 0, 10.0)
    pub.publish(sent)
    assert spin_until(ros_node, lambda: bool(received), 10.0)
    assert received[0] == sent
    types = dict(ros_node.get_topic_names_and_types())
    assert types["/test/detections"] == ["vision_msgs/msg/Detection3DArray"]
    assert str(ros_node.get_publishers_info_by_topic("/test/detections")[0].topic_type_hash) == \
        REAL_DETECTION3DARRAY_HASH
