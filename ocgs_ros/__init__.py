"""ocgs_ros: object-aware 3D Gaussian mapping and gradient-calibrated BEV perception for ROS 2.

Core subpackages (``sim``, ``ocl``, ``gaussians``, ``bev``) import no ROS and work on numpy/torch.
``ocgs_ros.ros`` holds the only ROS-aware library code; ``ocgs_ros.nodes`` the thin node adapters.
"""

__version__ = "0.1.0"
