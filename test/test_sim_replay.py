"""Simulated stream → bag → replay over DDS (separate processes) → identical messages, and
bag_record captures the replay identically. Also: sim_to_bag matches the live stream generator."""
from __future__ import annotations

from collections import defaultdict

import pytest
from conftest import spin_until

from ocgs_ros.ros import conversions
from ocgs_ros.ros.bags import BagReader, message_class
from ocgs_ros.ros.sim_messages import SimStream, make_world
from ocgs_ros.ros.sim_to_bag import DEFAULT_START_NS, write_sim_bag

SMALL = dict(image_width=96, image_height=72, lidar_beams=16, lidar_azimuth_steps=256)


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_sim_to_bag_holds_exactly_the_stream(tmp_path, storage):
    frames = 3
    bag = write_sim_bag(tmp_path / "bag", frames=frames, rate_hz=10.0, seed=3, storage=storage, **SMALL)
    stream = SimStream(make_world("tabletop", 3, **SMALL))
    expected = list(stream.static_messages(conversions.ns_to_stamp(DEFAULT_START_NS)))
    for i in range(frames):
        expected += stream.frame_messages(i, conversions.ns_to_stamp(DEFAULT_START_NS + i * 100_000_000)).all()
    read = [(m.topic, m.deserialize()) for m in BagReader(bag).messages()]
    # Same multiset per topic and the same order within each topic.
    by_topic_expected, by_topic_read = defaultdict(list), defaultdict(list)
    for topic, msg in expected:
        by_topic_expected[topic].append(msg)
    for topic, msg in read:
        by_topic_read[topic].append(msg)
    assert by_topic_read.keys() == by_topic_expected.keys()
    for topic in by_topic_expected:
        assert by_topic_read[topic] == by_topic_expected[topic], topic
    assert {"/camera/image_raw", "/camera/camera_info", "/lidar/points", "/tf", "/tf_static"} <= by_topic_read.keys()


def test_replay_over_dds_is_identical_and_rerecords_identically(tmp_path, ros_node, node_process):
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

    source = write_sim_bag(tmp_path / "source", frames=4, rate_hz=10.0, seed=5, **SMALL)
    reader = BagReader(source)
    original = defaultdict(list)
    for m in reader.messages():
        original[m.topic].append(m.deserialize())
    total = sum(len(v) for v in original.values())
    # the bag keeps each topic's QoS: latched ground truth must come back latched
    assert reader.offered_qos("/sim/objects").durability == DurabilityPolicy.TRANSIENT_LOCAL
    assert reader.offered_qos("/camera/image_raw").reliability == ReliabilityPolicy.BEST_EFFORT

    received = defaultdict(list)
    for topic, msgs in original.items():
        profile = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE,
                             durability=reader.offered_qos(topic).durability)
        ros_node.create_subscription(type(msgs[0]), topic, lambda msg, t=topic: received[t].append(msg), profile)

    rerecorded = tmp_path / "rerecorded"
    recorder = node_process(
        "ocgs_ros.nodes.bag_record", "--ros-args", "-p", f"output:={rerecorded}",
        "-p", f"topics:=[{','.join(repr(t) for t in original)}]".replace("'", '"'),
        "-p", f"max_messages:={total}", "-p", "discovery_period_s:=0.1")
    # The recorder subscribes once it sees publishers, i.e. once the player is up; the player
    # waits until both the recorder and this test are subscribed to every topic.
    player = node_process(
        "ocgs_ros.nodes.bag_play", "--ros-args", "-p", f"bag:={source}", "-p", "wait_for_subscribers_s:=30.0",
        "-p", "min_subscribers:=2", "-p", "start_delay_s:=0.5", "-p", "force_reliable:=true")

    done = spin_until(ros_node, lambda: sum(len(v) for v in received.values()) >= total, 90.0,
                      processes=[player])
    assert done, (f"received {sum(len(v) for v in received.values())}/{total}\nplayer:\n{player.output()}"
                  f"\nrecorder:\n{recorder.output()}")
    for topic, msgs in original.items():
        assert received[topic] == msgs, f"replayed {topic} differs"

    assert recorder.wait(30.0) == 0, recorder.output()
    again = defaultdict(list)
    for m in BagReader(rerecorded).messages():
        again[m.topic].append(m.deserialize())
    for topic, msgs in original.items():
        assert again[topic] == msgs, f"re-recorded {topic} differs"
    assert player.wait(30.0) == 0, player.output()


def test_bag_player_rejects_bad_parameters(tmp_path, node_process):
    missing = node_process("ocgs_ros.nodes.bag_play", "--ros-args", "-p", f"bag:={tmp_path / 'nope'}")
    assert missing.wait(30.0) == 2
    assert "does not exist" in missing.output()
    bad_rate = node_process("ocgs_ros.nodes.bag_play", "--ros-args", "-p", f"bag:={tmp_path}", "-p", "rate:=-1.0")
    assert bad_rate.wait(30.0) == 2
    assert "'rate' must be > 0" in bad_rate.output()


def test_message_class_covers_every_simulated_topic():
    stream = SimStream(make_world("tabletop", 0, **SMALL))
    for topic, msg in stream.frame_messages(0, conversions.ns_to_stamp(1)).all():
        assert message_class(f"{type(msg).__module__.split('.')[0]}/msg/{type(msg).__name__}") is type(msg), topic
