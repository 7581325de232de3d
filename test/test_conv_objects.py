"""Map objects <-> ObjectInstance[Array], BEV boxes <-> Detection3DArray, and their markers."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from ocgs_ros.ros import conversions


def _object(obj_id=3, entry=5, yaw=0.4, center=(0.1, -0.2, 0.05), size=(0.08, 0.05, 0.1), **kw):
    c, s = math.cos(yaw), math.sin(yaw)
    values = dict(id=obj_id, codebook_entry=entry, confidence=0.8, box_center=np.array(center),
                  box_size=np.array(size), box_rotation=np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]]),
                  num_gaussians=120, mean_color=np.array([0.9, 0.1, 0.2]))
    values.update(kw)
    return SimpleNamespace(**values)


def test_objects_round_trip_through_the_typed_message():
    objects = [_object(), _object(obj_id=7, entry=-1, yaw=-1.2, center=(1.0, 2.0, 0.3))]
    msg = conversions.map_objects_to_msg(objects, "map", 1_500_000_000)
    assert msg.header.frame_id == "map" and msg.header.stamp.sec == 1 and msg.header.stamp.nanosec == 500_000_000
    boxes = conversions.instances_to_boxes(msg.objects)
    assert boxes.ids.tolist() == [3, 7] and boxes.codebook_entries.tolist() == [5, -1]
    np.testing.assert_allclose(boxes.centers, [o.box_center for o in objects])
    np.testing.assert_allclose(boxes.sizes, [o.box_size for o in objects])
    np.testing.assert_allclose(boxes.rotations, [o.box_rotation for o in objects], atol=1e-9)
    assert boxes.gaussian_counts.tolist() == [120, 120]
    np.testing.assert_allclose(boxes.mean_colors[0], [0.9, 0.1, 0.2], atol=1e-6)


def test_a_reflected_box_basis_still_gives_a_proper_rotation():
    reflected = np.diag([1.0, 1.0, -1.0])
    msg = conversions.map_object_to_msg(_object(box_rotation=reflected))
    q = msg.pose.orientation
    assert abs(q.x ** 2 + q.y ** 2 + q.z ** 2 + q.w ** 2 - 1.0) < 1e-9


@pytest.mark.parametrize("bad, match", [
    ({"confidence": 1.5}, "confidence"), ({"box_size": np.array([0.1, -0.1, 0.1])}, "non-negative"),
    ({"box_center": np.array([np.nan, 0, 0])}, "finite"), ({"box_rotation": np.eye(2)}, r"\[3, 3\]"),
])
def test_bad_objects_raise(bad, match):
    with pytest.raises(ValueError, match=match):
        conversions.map_object_to_msg(_object(**bad))


def test_object_markers_colour_by_codebook_entry():
    objects = [_object(entry=2), _object(obj_id=4, entry=2), _object(obj_id=5, entry=9)]
    markers = conversions.object_markers(objects, "map", 0).markers
    boxes = [m for m in markers if m.ns == "objects" and m.type == m.CUBE]
    texts = [m for m in markers if m.type == m.TEXT_VIEW_FACING]
    assert len(boxes) == 3 and len(texts) == 3 and texts[0].text.startswith("#3 c2")
    rgb = [(m.color.r, m.color.g, m.color.b) for m in boxes]
    assert rgb[0] == rgb[1] != rgb[2]
    # the node's path: markers of the ~/objects message it built, the same markers
    instances = conversions.map_objects_to_msg(objects, "map", 0).objects
    assert conversions.instance_markers(instances, "map", 0).markers == markers


def test_detections_round_trip_and_validate():
    boxes = np.array([[10.0, -2.0, 0.8, 4.5, 1.9, 1.6, 0.3, 5.0, -0.5],
                      [-3.0, 6.0, 0.9, 0.6, 0.6, 1.8, -2.8, 0.0, 1.0]])
    msg = conversions.bev_to_detection_array(boxes, [0.9, 0.4], [0, 2], ("car", "truck", "pedestrian"), "base_link", 0)
    assert [d.class_name for d in msg.detections] == ["car", "pedestrian"]
    back, scores, labels, names = conversions.detection_array_to_bev(msg)
    np.testing.assert_allclose(back, boxes, atol=1e-6)
    np.testing.assert_allclose(scores, [0.9, 0.4], atol=1e-6)
    assert labels.tolist() == [0, 2]
    markers = conversions.detection_markers(boxes, [0.9, 0.4], [0, 2], ("car", "truck", "pedestrian"), "base_link", 0)
    assert len(markers.markers) == 5
    with pytest.raises(ValueError, match=r"\[D, 9\]"):
        conversions.bev_to_detection_array(boxes[:, :7], [0.9, 0.4], [0, 2], ("car",), "base_link", 0)
    with pytest.raises(ValueError, match="labels must index"):
        conversions.bev_to_detection_array(boxes, [0.9, 0.4], [0, 5], ("car", "truck"), "base_link", 0)
    with pytest.raises(ValueError, match="NaN"):
        conversions.bev_to_detection_array(np.full((1, 9), np.nan), [0.5], [0], ("car",), "base_link", 0)


def test_published_boxes_match_ground_truth_one_to_one():
    # the IoU itself is tested in test_evaluation_boxes; here: message boxes -> one-to-one recall
    from ocgs_ros.evaluation import Box3D, GroundTruthObject, match_objects

    c, s = np.array([0.0, 0.0, 0.5]), np.array([2.0, 1.0, 1.0])
    gt = [GroundTruthObject(1, "a", Box3D.from_yaw(c, s, 0.0)),
          GroundTruthObject(2, "b", Box3D.from_yaw(c + [3.0, 0, 0], s, 0.0))]
    msg = conversions.map_objects_to_msg([_object(obj_id=9, center=c, size=s, yaw=0.05)], "map", 0)
    result = match_objects(gt, conversions.instances_to_boxes(msg.objects))
    assert result["matched"] == 1 and result["recall"] == 0.5 and result["precision"] == 1.0
    assert result["matches"][0]["object_id"] == 9
