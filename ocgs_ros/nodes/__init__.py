"""ROS 2 nodes: thin adapters over the core libraries, one file per node."""
