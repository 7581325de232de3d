"""The ROS-free object-mapping pipeline: camera + LiDAR frames in, an object-aware Gaussian map and
its objects out. The mapping node, the evaluator, the demo report and the benchmarks all run
:class:`ocgs_ros.mapping.pipeline.ObjectMappingPipeline`; its one configuration is
:class:`ocgs_ros.mapping.config.MappingConfig`.

Nothing is imported here eagerly: ``ocgs_ros.mapping.errors`` is imported by the ROS adapters
(``FrameError``), which must not pay for torch and the map on import.
"""
