"""Object-aware 3D Gaussian map (no ROS).

* :mod:`.raster` — ``rasterize``: gsplat's CUDA rasteriser or our pure-PyTorch tiled path, same I/O.
* :mod:`.map` — :class:`GaussianMap`: 3DGS parameters + identity feature and shared identity head.
* :mod:`.mapper` — :class:`OnlineMapper`: LiDAR growth, keyframes, photometric/depth/identity fitting.
* :mod:`.densify` — gsplat's ``DefaultStrategy`` densify/prune on CPU or CUDA, under the hard cap.
* :mod:`.objects` — instances with stable ids (:class:`ObjectTracker`), queries, instance masks.
* :mod:`.persistence` — ``save_map``/``load_map``: PLY + identity sidecar + objects JSON, atomic.
* :mod:`.evaluate` — the ``gaussian_map_evaluate`` command; :mod:`.eval_metrics` its metrics.
* :mod:`.losses`, :mod:`.keyframes`, :mod:`.ply` — losses, keyframe logic, 3DGS PLY persistence.
"""
