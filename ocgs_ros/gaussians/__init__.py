"""Object-aware 3D Gaussian map (no ROS).

* :mod:`.raster` — ``rasterize``: gsplat's CUDA rasteriser or our pure-PyTorch tiled path, same I/O.
* :mod:`.map` — :class:`GaussianMap`: 3DGS parameters + identity feature and shared identity head.
* :mod:`.mapper` — :class:`OnlineMapper`: LiDAR growth, keyframes, photometric/depth/identity fitting.
* :mod:`.densify` — densify/prune through gsplat's public ``Strategy`` interface (gsplat's default rules,
  on CPU or CUDA), under the hard cap.
* :mod:`.objects` — instances with stable ids (:class:`ObjectTracker`), queries, instance masks.
* :mod:`.persistence` — ``save_map``/``load_map``: one map directory (PLY, identity, objects, hash manifest) switched in one rename.
* :mod:`.eval_metrics` — metrics of the map evaluation (the command is ``ocgs_ros.mapping.evaluate``).
* :mod:`.losses`, :mod:`.keyframes`, :mod:`.ply` — losses, keyframe logic, 3DGS PLY persistence.
"""
