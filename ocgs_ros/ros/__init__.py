"""The only ROS-aware library code: message conversions, TF buffer, QoS, bags."""
