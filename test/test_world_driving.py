"""Driving world: ego-frame boxes vs world state, map layers, LiDAR labels inside boxes, ego motion."""
from __future__ import annotations

import numpy as np
import pytest

from ocgs_ros.sim.classes import BOX_CLASSES, MAP_CLASSES
from ocgs_ros.sim.driving import DrivingWorld
from ocgs_ros.sim.types import DrivingConfig

SMALL = DrivingConfig.from_dict({"cameras": [{"width": 176, "height": 64}], "lidar": {"azimuth_steps": 512}})


@pytest.fixture(scope="module")
def world():
    return DrivingWorld(SMALL, seed=2)


def test_ego_moves_along_its_lane(world):
    p0, p1 = world.ego_pose(0), world.ego_pose(10)
    assert p1[0, 3] - p0[0, 3] == pytest.approx(SMALL.ego_speed * 10 * SMALL.frame_period_s)
    assert p0[1, 3] == p1[1, 3]
    layers = world.map_layers(p0)
    g = SMALL.bev_grid
    centre = (int((0 - g.x_min) / g.resolution), int((0 - g.y_min) / g.resolution))
    assert layers[MAP_CLASSES.index("drivable_area"), centre[0], centre[1]]  # the ego is on the road
    assert layers[MAP_CLASSES.index("drivable_area")].mean() > 0.05
    assert layers[MAP_CLASSES.index("walkway")].any() and layers[MAP_CLASSES.index("divider")].any()
    assert not (layers[MAP_CLASSES.index("walkway")] & layers[MAP_CLASSES.index("drivable_area")]).any()


def test_ego_frame_boxes_match_world_state(world):
    index = 7
    frame = world.frame(index)
    centers = world.agent_centers(index)
    for box, cls, instance in zip(frame.boxes, frame.box_classes, frame.box_instance_ids):
        world_center = frame.T_world_ego[:3, :3] @ box[:3] + frame.T_world_ego[:3, 3]
        np.testing.assert_allclose(world_center, centers[instance - 1], atol=1e-4)
        assert BOX_CLASSES[cls] in BOX_CLASSES
        assert box[5] == pytest.approx(2 * box[2], rel=1e-5)  # standing on the ground
    g = SMALL.bev_grid
    assert ((frame.boxes[:, 0] >= g.x_min) & (frame.boxes[:, 0] < g.x_max)).all()


def test_lidar_points_labelled_with_a_box_lie_inside_it(world):
    frame = world.frame(3)
    lidar = frame.lidar
    points_ego = lidar.points @ lidar.T_ego_lidar[:3, :3].T + lidar.T_ego_lidar[:3, 3]
    checked = 0
    for box, instance, count in zip(frame.boxes, frame.box_instance_ids, frame.box_num_points):
        mine = points_ego[lidar.instance == instance]
        assert len(mine) == count
        if not len(mine):
            continue
        c, s = np.cos(box[6]), np.sin(box[6])
        local = (mine[:, :2] - box[:2]) @ np.array([[c, -s], [s, c]])
        margin = 0.1  # range noise
        assert (np.abs(local[:, 0]) <= box[3] / 2 + margin).all() and (np.abs(local[:, 1]) <= box[4] / 2 + margin).all()
        assert (mine[:, 2] <= box[2] + box[5] / 2 + margin).all()
        checked += 1
    assert checked >= 3
    assert set(np.unique(lidar.cls[lidar.instance > 0])) <= set(range(len(BOX_CLASSES)))


def test_camera_sees_agents_with_their_class(world):
    frame = world.frame(0)
    cam = frame.cameras[0]
    assert cam.rgb.shape == (64, 176, 3) and cam.instance.max() > 0
    for instance in np.unique(cam.instance[cam.instance > 0]):
        classes = np.unique(cam.kind[cam.instance == instance])
        assert len(classes) == 1 and classes[0] == world._classes[instance - 1]


def test_deterministic(world):
    again = DrivingWorld(SMALL, seed=2).frame(5)
    frame = world.frame(5)
    np.testing.assert_array_equal(frame.lidar.points, again.lidar.points)
    np.testing.assert_array_equal(frame.map_layers, again.map_layers)
    np.testing.assert_array_equal(frame.boxes, again.boxes)
