"""Object-aware 3D Gaussian map (no ROS).

* :mod:`.raster` — ``rasterize``: gsplat's CUDA rasteriser or our pure-PyTorch tiled path, same I/O.
* :mod:`.map` — :class:`GaussianMap`: 3DGS parameters + identity feature and shared identity head.
* :mod:`.mapper` — :class:`OnlineMapper`: LiDAR growth, keyframes, photometric/depth/identity fitting.
* :mod:`.losses`, :mod:`.keyframes`, :mod:`.ply` — losses, keyframe logic, 3DGS PLY persistence.
"""
