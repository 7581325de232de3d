"""Bag writer/reader (rosbags) with rclpy messages: round trips, atomic close, clear errors."""
from __future__ import annotations

import pytest

from ocgs_ros.ros.bags import BagError, BagReader, BagWriter, message_class, msgtype_of


def _messages():
    from geometry_msgs.msg import TransformStamped
    from sensor_msgs.msg import Image
    from tf2_msgs.msg import TFMessage

    out = []
    for i in range(4):
        image = Image(height=2, width=3, encoding="rgb8", step=9, data=bytes(range(i, i + 18)))
        image.header.frame_id = f"camera_{i}"
        image.header.stamp.sec = 100 + i
        out.append(("/camera/image_raw", image, 1_000 + i))
    tf = TFMessage(transforms=[TransformStamped(child_frame_id="lidar_link")])
    tf.transforms[0].header.frame_id = "base_link"
    tf.transforms[0].transform.rotation.w = 1.0
    out.append(("/tf_static", tf, 999))
    return out


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_round_trip_is_message_identical_and_time_ordered(tmp_path, storage):
    written = _messages()
    with BagWriter(tmp_path / "bag", storage=storage) as writer:
        for topic, msg, stamp in written:
            writer.write(topic, msg, stamp)
    reader = BagReader(tmp_path / "bag")
    assert reader.topics == {"/camera/image_raw": "sensor_msgs/msg/Image", "/tf_static": "tf2_msgs/msg/TFMessage"}
    assert reader.message_count == len(written)
    read = list(reader.messages())
    assert [m.stamp_ns for m in read] == sorted(stamp for _, _, stamp in written)
    expected = sorted(written, key=lambda item: item[2])
    for (topic, msg, stamp), got in zip(expected, read):
        assert (got.topic, got.stamp_ns) == (topic, stamp)
        assert got.deserialize() == msg
    only_images = list(reader.messages(["/camera/image_raw"]))
    assert len(only_images) == 4 and {m.topic for m in only_images} == {"/camera/image_raw"}


def test_failed_recording_leaves_no_bag(tmp_path):
    from sensor_msgs.msg import Image

    with pytest.raises(RuntimeError, match="boom"):
        with BagWriter(tmp_path / "bag") as writer:
            writer.write("/camera/image_raw", Image(), 1)
            raise RuntimeError("boom")
    assert not (tmp_path / "bag").exists()
    assert list(tmp_path.iterdir()) == []


def test_errors_are_named(tmp_path):
    with pytest.raises(BagError, match="does not exist"):
        BagReader(tmp_path / "missing")
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / "metadata.yaml").write_text("rosbag2_bagfile_information: [not: a: bag")
    with pytest.raises(BagError, match="cannot open bag"):
        BagReader(tmp_path / "corrupt")
    (tmp_path / "exists").mkdir()
    with pytest.raises(BagError, match="already exists"):
        BagWriter(tmp_path / "exists")
    with pytest.raises(BagError, match="unknown bag storage"):
        BagWriter(tmp_path / "new", storage="parquet")
    with pytest.raises(BagError, match="not installed"):
        message_class("no_such_pkg/msg/Nothing")
    with pytest.raises(BagError, match="malformed"):
        message_class("just_a_name")


def test_topic_type_is_fixed_per_topic(tmp_path):
    from sensor_msgs.msg import Image, PointCloud2

    with BagWriter(tmp_path / "bag") as writer:
        writer.write("/x", Image(), 1)
        with pytest.raises(BagError, match="already recorded as sensor_msgs/msg/Image"):
            writer.write("/x", PointCloud2(), 2)


def test_msgtype_names():
    from sensor_msgs.msg import PointCloud2

    assert msgtype_of(PointCloud2) == "sensor_msgs/msg/PointCloud2"
    assert msgtype_of(PointCloud2()) == "sensor_msgs/msg/PointCloud2"
    assert message_class("sensor_msgs/msg/PointCloud2") is PointCloud2
    assert message_class("sensor_msgs/PointCloud2") is PointCloud2


def test_own_interface_types_are_recorded_with_nested_definitions(tmp_path):
    """Types outside rosbags' typestore (our interfaces) are registered from the ament index,
    nested ones included, so the bag is self-describing."""
    from ocgs_ros_interfaces.msg import ObjectInstance, ObjectInstanceArray

    msg = ObjectInstanceArray(objects=[ObjectInstance(id=3, codebook_entry=7, gaussian_count=12),
                                       ObjectInstance(id=4, codebook_entry=-1, confidence=0.5)])
    msg.header.frame_id = "map"
    with BagWriter(tmp_path / "bag", storage="sqlite3") as writer:
        writer.write("/object_mapping_node/objects", msg, 5)
    (read,) = list(BagReader(tmp_path / "bag").messages())
    assert read.msgtype == "ocgs_ros_interfaces/msg/ObjectInstanceArray"
    assert read.deserialize() == msg
