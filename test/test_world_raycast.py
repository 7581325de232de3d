"""Ray casting against each primitive equals the analytic distance; nearest hit wins; culling is exact."""
from __future__ import annotations

import numpy as np
import pytest

from ocgs_ros.sim.geometry import camera_rays, intrinsics, make_pose, optical_pose_in_body
from ocgs_ros.sim.raycast import Cone, Cylinder, Plane, Scene, Sphere, YawBox


def _down(origin):
    return np.array([origin], float), np.array([[0.0, 0.0, -1.0]])


@pytest.mark.parametrize("primitive, top", [
    (Sphere(np.array([0.0, 0.0, 0.5]), 0.5), 1.0),
    (YawBox(np.array([0.0, 0.0, 0.25]), np.array([1.0, 0.4, 0.5]), 0.7), 0.5),
    (Cylinder(np.array([0.0, 0.0, 0.0]), 0.3, 0.8), 0.8),
    (Cone(np.array([0.0, 0.0, 0.0]), 0.3, 0.9), 0.9),
])
def test_vertical_ray_hits_the_top_at_the_analytic_distance(primitive, top):
    o, d = _down([0.0, 0.0, 3.0])
    hits = Scene([primitive], ground=Plane(0.0)).cast(o, d)
    # (1e-6: the cone's apex is a double root, where the quadratic loses half its digits)
    assert hits.t[0] == pytest.approx(3.0 - top, abs=1e-6)
    assert hits.primitive[0] == 0
    assert hits.normal[0] @ [0, 0, 1] > 0.1  # an upward-facing surface


def test_horizontal_rays_hit_sides_and_miss_beside():
    scene = Scene([Cylinder(np.array([5.0, 0.0, 0.0]), 1.0, 2.0), YawBox(np.array([0.0, 5.0, 1.0]), np.array([2.0, 2.0, 2.0]), 0.0)])
    o = np.array([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    d = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])
    hits = scene.cast(o, d)
    np.testing.assert_allclose(hits.t[:2], [4.0, 4.0], atol=1e-9)
    np.testing.assert_allclose(hits.normal[0], [-1.0, 0.0, 0.0], atol=1e-9)
    assert np.isinf(hits.t[2]) and hits.primitive[2] == -1


def test_nearest_of_overlapping_primitives_and_ground():
    scene = Scene([Sphere(np.array([0, 0, 0.2]), 0.2), Sphere(np.array([0, 0, 1.0]), 0.3)], ground=Plane(0.0))
    hits = scene.cast(*_down([0.0, 0.0, 5.0]))
    assert hits.primitive[0] == 1 and hits.t[0] == pytest.approx(3.7)
    hits = scene.cast(*_down([2.0, 0.0, 5.0]))
    assert hits.primitive[0] == Scene.GROUND and hits.t[0] == pytest.approx(5.0)


def test_camera_ray_distance_is_z_depth():
    # A camera 2 m above the ground looking straight down sees depth 2 everywhere.
    T_world_cam = make_pose(np.diag([1.0, -1.0, -1.0]), [0.3, -0.2, 2.0])
    K = intrinsics(40, 30, 80.0)
    origin, dirs = camera_rays(K, 40, 30, T_world_cam)
    hits = Scene([], ground=Plane(0.0)).cast(origin[None], dirs)
    np.testing.assert_allclose(hits.t, 2.0, atol=1e-9)


def test_optical_frame_axes():
    T = optical_pose_in_body([0, 0, 1], pitch_down=0.0)
    np.testing.assert_allclose(T[:3, 2], [1, 0, 0], atol=1e-12)  # optical z = body forward
    np.testing.assert_allclose(T[:3, 0], [0, -1, 0], atol=1e-12)  # optical x = body right
    np.testing.assert_allclose(T[:3, 1], [0, 0, -1], atol=1e-12)  # optical y = body down
