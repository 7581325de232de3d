"""GOCL: slot attention with a global, scene-agnostic object codebook (no ROS)."""
