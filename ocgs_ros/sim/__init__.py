"""Procedural worlds and ray-cast sensors: the independent ground-truth source (no ROS)."""
