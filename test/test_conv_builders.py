"""Output builders: box markers, BEV occupancy grids (row/col <-> x/y), RViz point clouds."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial.transform import Rotation
from visualization_msgs.msg import Marker

from ocgs_ros.ros import conversions


def _boxes():
    centers = np.array([[1.0, 2.0, 0.5], [-3.0, 0.0, 1.0]])
    sizes = np.array([[4.0, 2.0, 1.5], [0.8, 0.6, 1.8]])
    colors = np.array([[1.0, 0.0, 0.0], [0.0, 0.5, 1.0]])
    return centers, sizes, colors


def test_cube_markers_with_labels_and_deleteall_first():
    centers, sizes, colors = _boxes()
    yaws = np.array([math.pi / 2, 0.0])
    out = conversions.boxes_to_marker_array(centers, sizes, yaws, ["car", "pedestrian"], colors,
                                            "base_link", 5_000_000_000, ns="det", lifetime_s=0.25)
    markers = out.markers
    assert markers[0].action == Marker.DELETEALL and markers[0].ns == "det"
    assert [(m.id, m.type) for m in markers[1:]] == [
        (0, Marker.CUBE), (1, Marker.TEXT_VIEW_FACING), (2, Marker.CUBE), (3, Marker.TEXT_VIEW_FACING)]
    box, text = markers[1], markers[2]
    assert box.header.frame_id == "base_link" and box.header.stamp.sec == 5
    assert (box.scale.x, box.scale.y, box.scale.z) == (4.0, 2.0, 1.5)
    # yaw pi/2: the box's length axis (+x local) points along +y
    q = [box.pose.orientation.x, box.pose.orientation.y, box.pose.orientation.z, box.pose.orientation.w]
    np.testing.assert_allclose(Rotation.from_quat(q).apply([1, 0, 0]), [0, 1, 0], atol=1e-12)
    assert (box.pose.position.x, box.pose.position.y, box.pose.position.z) == (1.0, 2.0, 0.5)
    assert (box.color.r, box.color.g, box.color.b) == (1.0, 0.0, 0.0)
    assert (box.lifetime.sec, box.lifetime.nanosec) == (0, 250_000_000)
    assert text.text == "car" and text.pose.position.z > centers[0, 2] + sizes[0, 2] / 2
    # stable ids: the same boxes give the same ids next time
    again = conversions.boxes_to_marker_array(centers, sizes, yaws, ["car", "pedestrian"], colors, "base_link", 0)
    assert [m.id for m in again.markers[1:]] == [m.id for m in markers[1:]]


def test_wireframe_edges_have_the_box_extents_and_quaternions_are_accepted():
    centers, sizes, colors = _boxes()
    quats = Rotation.from_euler("z", [[0.3], [-1.0]]).as_quat()
    out = conversions.boxes_to_marker_array(centers, sizes, quats, None, colors, "map", 0, style="wireframe")
    assert len(out.markers) == 3  # DELETEALL + 2 boxes, no labels
    for marker, size in zip(out.markers[1:], sizes):
        assert marker.type == Marker.LINE_LIST and len(marker.points) == 24
        pts = np.array([[p.x, p.y, p.z] for p in marker.points]).reshape(12, 2, 3)
        lengths = np.linalg.norm(pts[:, 1] - pts[:, 0], axis=1)
        assert sorted(np.round(lengths, 9)) == sorted(np.repeat(size, 4))
        np.testing.assert_allclose(np.abs(pts).max(axis=(0, 1)), size / 2)


def test_box_input_validation():
    centers, sizes, colors = _boxes()
    with pytest.raises(ValueError, match="labels"):
        conversions.boxes_to_marker_array(centers, sizes, None, ["one"], colors, "m", 0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        conversions.boxes_to_marker_array(centers, sizes, None, None, colors * 255, "m", 0)
    with pytest.raises(ValueError, match="orientations"):
        conversions.boxes_to_marker_array(centers, sizes, np.zeros((2, 3)), None, colors, "m", 0)
    with pytest.raises(ValueError, match="zero quaternion"):
        conversions.boxes_to_marker_array(centers, sizes, np.zeros((2, 4)), None, colors, "m", 0)
    with pytest.raises(ValueError, match="lifetime"):
        conversions.boxes_to_marker_array(centers, sizes, None, None, colors, "m", 0, lifetime_s=-1)
    empty = conversions.boxes_to_marker_array(np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0), [],
                                              np.zeros((0, 3)), "m", 0)
    assert [m.action for m in empty.markers] == [Marker.DELETEALL]


def _cell_value(msg, x, y):
    """Look a world point up the way nav_msgs/OccupancyGrid documents it (yaw 0)."""
    col = math.floor((x - msg.info.origin.position.x) / msg.info.resolution)
    row = math.floor((y - msg.info.origin.position.y) / msg.info.resolution)
    return msg.data[row * msg.info.width + col]


def test_occupancy_grid_transposes_bev_rows_x_cols_y():
    res, x_min, y_min = 0.5, -2.0, -1.0
    bev = np.zeros((4, 3), dtype=bool)  # 4 x-bins by 3 y-bins: asymmetric on purpose
    bev[3, 0] = True  # far forward (x max), right side (y min)
    bev[0, 2] = True  # behind, left
    msg = conversions.grid_to_occupancy_grid(bev, res, (x_min, y_min), "base_link", 7)
    assert (msg.info.width, msg.info.height) == (4, 3)
    assert msg.header.frame_id == "base_link" and msg.info.resolution == res
    for i in range(4):
        for j in range(3):
            x = x_min + (i + 0.5) * res
            y = y_min + (j + 0.5) * res
            assert _cell_value(msg, x, y) == (100 if bev[i, j] else 0), (i, j)
    np.testing.assert_array_equal(conversions.occupancy_grid_to_grid(msg), bev.astype(np.float32))


def test_occupancy_grid_probabilities_unknown_and_yaw():
    probs = np.array([[0.0, 0.255, np.nan], [1.0, 0.5, 0.004]], dtype=np.float32)
    msg = conversions.grid_to_occupancy_grid(probs, 0.1, (0.0, 0.0), "map", 0, yaw=math.pi / 2)
    np.testing.assert_array_equal(np.asarray(msg.data).reshape(3, 2).T, [[0, 26, -1], [100, 50, 0]])
    o = msg.info.origin.orientation
    assert (o.z, o.w) == pytest.approx((math.sin(math.pi / 4), math.cos(math.pi / 4)))
    back = conversions.occupancy_grid_to_grid(msg)
    assert np.isnan(back[0, 2])
    np.testing.assert_allclose(back[~np.isnan(back)], [0.0, 0.26, 1.0, 0.5, 0.0], atol=1e-6)


def test_occupancy_grid_validation():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        conversions.grid_to_occupancy_grid(np.array([[1.5]]), 0.1, (0, 0), "m", 0)
    with pytest.raises(ValueError, match="0/1 masks"):
        conversions.grid_to_occupancy_grid(np.array([[2]]), 0.1, (0, 0), "m", 0)
    with pytest.raises(ValueError, match="resolution"):
        conversions.grid_to_occupancy_grid(np.zeros((2, 2)), 0.0, (0, 0), "m", 0)
    with pytest.raises(ValueError, match=r"\[H, W\]"):
        conversions.grid_to_occupancy_grid(np.zeros(4), 0.1, (0, 0), "m", 0)
    msg = conversions.grid_to_occupancy_grid(np.zeros((2, 2)), 0.1, (0, 0), "m", 0)
    msg.info.width = 3
    with pytest.raises(ValueError, match="width \\* height"):
        conversions.occupancy_grid_to_grid(msg)


def test_points_to_pointcloud2_for_rviz():
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(6, 3))
    rgb = rng.integers(0, 256, (6, 3), dtype=np.uint8)
    msg = conversions.points_to_pointcloud2(pts, "map", 3, rgb=rgb, opacity=rng.uniform(size=6),
                                            scale=rng.uniform(size=(6, 3)), instance=np.arange(6, dtype=np.int64),
                                            visible=np.ones(6, bool))
    names = [(f.name, f.datatype, f.count) for f in msg.fields]
    assert names == [("x", 7, 1), ("y", 7, 1), ("z", 7, 1), ("rgb", 7, 1), ("opacity", 7, 1), ("scale", 7, 3),
                     ("instance", 5, 1), ("visible", 2, 1)]
    xyz, colours = conversions.pointcloud2_to_xyz_rgb(msg)
    np.testing.assert_allclose(xyz, pts.astype(np.float32))
    np.testing.assert_array_equal(colours, rgb)
    arr = conversions.pointcloud2_to_array(msg)
    np.testing.assert_array_equal(arr["instance"], np.arange(6))
    # float colours in [0, 1] become the same bytes
    msg2 = conversions.points_to_pointcloud2(pts, "map", 3, rgb=rgb / 255.0)
    np.testing.assert_array_equal(conversions.pointcloud2_to_xyz_rgb(msg2)[1], rgb)
    with pytest.raises(ValueError, match="does not fit"):
        conversions.points_to_pointcloud2(pts, "map", 0, ids=np.full(6, 2**40))
    with pytest.raises(ValueError, match=r"\[6, 3\]"):
        conversions.points_to_pointcloud2(pts, "map", 0, rgb=rgb[:2])
    with pytest.raises(ValueError, match="reserved"):
        conversions.points_to_pointcloud2(pts, "map", 0, x=np.zeros(6))
