"""A separate-process DDS peer for test_dds_exchange.py: publishes a known Image and PointCloud2.

Run as a script; the payload comes from ``make_payload`` so the test can rebuild the expected
arrays from the same seed without any shared state.
"""
from __future__ import annotations

import sys
import time

import numpy as np

IMAGE_TOPIC = "/peer/image"
CLOUD_TOPIC = "/peer/points"
NUM_MESSAGES = 5


def make_payload(index: int) -> tuple[np.ndarray, np.ndarray]:
    """RGB image [240, 320, 3] uint8 and a structured cloud (x, y, z, intensity, ring) for message ``index``."""
    rng = np.random.default_rng(1000 + index)
    rgb = rng.integers(0, 256, size=(240, 320, 3), dtype=np.uint8)
    cloud = np.zeros(5000, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("intensity", "<f4"), ("ring", "<u2")])
    for name in ("x", "y", "z"):
        cloud[name] = rng.normal(0.0, 10.0, size=cloud.shape)
    cloud["intensity"] = rng.uniform(0.0, 1.0, size=cloud.shape)
    cloud["ring"] = rng.integers(0, 32, size=cloud.shape)
    return rgb, cloud


def main() -> int:
    import rclpy
    from sensor_msgs.msg import Image, PointCloud2

    from ocgs_ros.ros import conversions, qos

    rclpy.init()
    node = rclpy.create_node("dds_peer")
    image_pub = node.create_publisher(Image, IMAGE_TOPIC, qos.RELIABLE)
    cloud_pub = node.create_publisher(PointCloud2, CLOUD_TOPIC, qos.RELIABLE)
    deadline = time.monotonic() + 30.0
    while (image_pub.get_subscription_count() == 0 or cloud_pub.get_subscription_count() == 0):
        if time.monotonic() > deadline:
            print("dds_peer: no subscriber matched within 30 s", flush=True)
            return 1
        rclpy.spin_once(node, timeout_sec=0.05)
    for index in range(NUM_MESSAGES):
        rgb, cloud = make_payload(index)
        stamp = conversions.ns_to_stamp(1_000_000_000 + index)
        image_pub.publish(conversions.rgb_to_image_msg(rgb, "camera_optical_frame", stamp))
        cloud_pub.publish(conversions.array_to_pointcloud2(cloud, "lidar_link", stamp))
        time.sleep(0.05)
    time.sleep(1.0)  # reliable delivery of the last samples before the participant goes away
    node.destroy_node()
    rclpy.shutdown()
    print("dds_peer: published", NUM_MESSAGES, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
