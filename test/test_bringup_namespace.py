"""config/ocgs.yaml applies under any namespace (issue 15): a bring-up under ``namespace:=robot1``
runs its nodes as /robot1/<node> and they read a non-default value from the parameter file."""
from __future__ import annotations

from conftest import REPO, spin_until

from ocgs_ros.ros import qos


def test_a_namespaced_bringup_reads_its_yaml(ros_node, node_process, tmp_path):
    from sensor_msgs.msg import Image

    config = tmp_path / "ocgs.yaml"
    text = (REPO / "config" / "ocgs.yaml").read_text()
    section = text.index("/**/sim_publisher:")
    text = text[:section] + text[section:].replace("image_width: 320", "image_width: 96", 1) \
        .replace("image_height: 240", "image_height: 72", 1)
    config.write_text(text)
    images = []
    ros_node.create_subscription(Image, "/camera/image_raw", images.append, qos.SENSOR_DATA)

    bringup = node_process("ocgs_ros.bringup", "namespace:=robot1", "sim:=true", "mapping:=false", "bev:=false",
                           f"config:={config}", f"output:={tmp_path / 'run'}")
    assert spin_until(ros_node, lambda: images, 60.0, processes=[bringup]), bringup.output()[-3000:]
    assert ("sim_publisher", "/robot1") in ros_node.get_node_names_and_namespaces()
    assert (images[-1].width, images[-1].height) == (96, 72)  # the defaults are 320 x 240
    assert bringup.stop() == 0, bringup.output()[-3000:]
