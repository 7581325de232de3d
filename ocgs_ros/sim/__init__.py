"""Procedural worlds and ray-cast sensors: the independent ground-truth source (no ROS).

* :class:`~ocgs_ros.sim.tabletop.TabletopWorld` — catalogue objects on a table, orbiting camera+LiDAR rig.
* :class:`~ocgs_ros.sim.driving.DrivingWorld` — road network with nuScenes map classes, agents, ego drive.
* :mod:`~ocgs_ros.sim.dataset` — on-disk training datasets; ``sim_dataset`` is its command.

Rendering is analytic ray casting (:mod:`~ocgs_ros.sim.raycast`), never splatting, so it can serve
as the reference for the Gaussian map.
"""
