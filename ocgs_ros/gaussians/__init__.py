"""Object-aware 3D Gaussian map: parameters, rasteriser backends, online optimiser (no ROS)."""
