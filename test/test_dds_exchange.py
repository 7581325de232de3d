"""Two separate processes exchange Image and PointCloud2 over real DDS (rclpy + Fast DDS, loopback)."""
from __future__ import annotations

import numpy as np
from conftest import spin_until
from dds_peer import CLOUD_TOPIC, IMAGE_TOPIC, NUM_MESSAGES, make_payload

from ocgs_ros.ros import conversions, qos


def test_image_and_pointcloud_cross_process(ros_node, node_process):
    from sensor_msgs.msg import Image, PointCloud2

    images, clouds = [], []
    ros_node.create_subscription(Image, IMAGE_TOPIC, images.append, qos.RELIABLE)
    ros_node.create_subscription(PointCloud2, CLOUD_TOPIC, clouds.append, qos.RELIABLE)
    peer = node_process("test/dds_peer.py")

    assert spin_until(ros_node, lambda: len(images) == NUM_MESSAGES and len(clouds) == NUM_MESSAGES, 60.0), (
        f"got {len(images)} images, {len(clouds)} clouds; peer log:\n{peer.output()}"
    )
    assert peer.wait(20.0) == 0, peer.output()
    for index, (image_msg, cloud_msg) in enumerate(zip(images, clouds)):
        rgb, cloud = make_payload(index)
        assert conversions.stamp_to_ns(image_msg.header.stamp) == 1_000_000_000 + index
        assert image_msg.header.frame_id == "camera_optical_frame"
        np.testing.assert_array_equal(conversions.image_msg_to_rgb(image_msg), rgb)
        received = conversions.pointcloud2_to_array(cloud_msg)
        assert received.dtype.names == cloud.dtype.names
        for name in cloud.dtype.names:
            np.testing.assert_array_equal(received[name], cloud[name])
