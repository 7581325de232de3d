"""sim_publisher in its own process: sensor topics, TF and ground truth arrive over DDS and agree."""
from __future__ import annotations

import json

import numpy as np
from conftest import spin_until

from ocgs_ros.ros import conversions, qos
from ocgs_ros.ros.tf import TransformListener, make_tf_buffer


def test_sim_publisher_streams_sensors_tf_and_ground_truth(ros_node, node_process):
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2
    from std_msgs.msg import String

    images, infos, clouds, objects, clocks = [], [], [], [], []
    ros_node.create_subscription(Clock, "/clock", clocks.append, qos.CLOCK)
    ros_node.create_subscription(Image, "/camera/image_raw", images.append, qos.SENSOR_DATA)
    ros_node.create_subscription(CameraInfo, "/camera/camera_info", infos.append, qos.RELIABLE)
    ros_node.create_subscription(PointCloud2, "/lidar/points", clouds.append, qos.SENSOR_DATA)
    ros_node.create_subscription(String, "/sim/objects", objects.append, qos.LATCHED)
    tf_buffer = make_tf_buffer()
    TransformListener(tf_buffer, ros_node)

    proc = node_process("ocgs_ros.nodes.sim_publisher", "--ros-args", "-p", "rate_hz:=5.0",
                        "-p", "image_width:=128", "-p", "image_height:=96", "-p", "lidar_azimuth_steps:=512",
                        "-p", "seed:=7", "-p", "publish_clock:=true")
    assert spin_until(ros_node, lambda: len(images) >= 3 and len(clouds) >= 3 and infos and objects, 60.0,
                      processes=[proc]), proc.output()

    image = conversions.image_msg_to_rgb(images[-1])
    assert image.shape == (96, 128, 3) and image.std() > 5  # a rendered scene, not a blank frame
    model = conversions.camera_info_to_model(infos[-1])
    assert (model.width, model.height) == (128, 96) and model.K[0, 0] > 0
    cloud = conversions.pointcloud2_to_array(clouds[-1])
    assert {"x", "y", "z", "intensity", "ring", "time"} <= set(cloud.dtype.names)
    assert len(cloud) > 1000 and np.isfinite(cloud["x"]).all()
    stamps = [conversions.stamp_to_ns(m.header.stamp) for m in images]
    assert all(b > a for a, b in zip(stamps, stamps[1:])), "image stamps must increase"
    cloud_stamps = {conversions.stamp_to_ns(m.header.stamp) for m in clouds}
    assert cloud_stamps & set(stamps), "camera and LiDAR of one frame share a stamp"

    assert len(json.loads(objects[-1].data)["objects"]) >= 3
    # simulated time on /clock: the frames' stamps, for use_sim_time consumers
    clock_stamps = {conversions.stamp_to_ns(c.clock) for c in clocks}
    assert clock_stamps & set(stamps)
    # The camera pose at an image's stamp is on /tf (dynamic map→base_link + static base_link→camera).
    stamp = images[-1].header.stamp
    assert spin_until(ros_node, lambda: tf_buffer.can_transform("map", images[-1].header.frame_id, stamp), 10.0)
    T_map_cam = tf_buffer.lookup_matrix("map", images[-1].header.frame_id, conversions.stamp_to_ns(stamp))
    assert np.isfinite(T_map_cam).all() and abs(np.linalg.det(T_map_cam[:3, :3]) - 1) < 1e-6
    assert proc.stop() == 0, proc.output()  # clean exit on SIGINT
