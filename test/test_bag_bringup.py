"""Real bags reach the nodes (issue 14, part 3): a 2 s bag replayed with ``bringup bag:=...`` gets
every synchronised frame to the mapping node (bag_play waits until the node subscribes), and the run
ends by itself once the node has drained, well before ``duration:``. Also: bag_play's wait is
bounded and names the topics still without a subscriber; the drain waits for busy or still
receiving nodes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from types import SimpleNamespace

from conftest import REPO

from ocgs_ros import bringup
from ocgs_ros.ros.bags import BagReader
from ocgs_ros.ros.conversions import stamp_to_ns
from ocgs_ros.ros.sim_to_bag import write_sim_bag

#: a 2 s bag at 5 Hz, tiny sensors (as test_sim_replay.py)
FRAMES, RATE_HZ = 10, 5.0
SMALL = dict(image_width=96, image_height=72, lidar_beams=16, lidar_azimuth_steps=256)
SENSOR_TOPICS = ("/camera/image_raw", "/camera/camera_info", "/lidar/points")
#: far beyond the run's own end: reaching it would mean the run did not end by itself
DURATION_S = 600


def run_python(args: list[str], cwd, timeout_s: float) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout_s,
                          env=dict(os.environ), cwd=cwd)


def synchronised_stamps(bag) -> set[int]:
    """Stamps present on every sensor topic: the frames the node's synchronizer can form."""
    reader = BagReader(bag)
    try:
        per_topic = [{stamp_to_ns(m.deserialize().header.stamp) for m in reader.messages([topic])}
                     for topic in SENSOR_TOPICS]
    finally:
        reader.close()
    return set.intersection(*per_topic)


def test_a_2s_bag_through_the_bringup_reaches_the_node_frame_by_frame_and_ends_after_draining(tmp_path):
    bag = write_sim_bag(tmp_path / "bag", frames=FRAMES, rate_hz=RATE_HZ, seed=3, ground_truth=False, **SMALL)
    frames = len(synchronised_stamps(bag))
    assert frames == FRAMES
    out = tmp_path / "run"
    done = run_python(["-m", "ocgs_ros.bringup", f"bag:={bag}", "mapping:=true", "bev:=false",
                       f"output:={out}", f"duration:={DURATION_S}"], cwd=tmp_path, timeout_s=DURATION_S / 2)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-3000:]
    # the player waited for the node's resolved inputs, TF included, then played
    assert all(f"'{topic}': 1" in log for topic in (*SENSOR_TOPICS, "/tf")), log[-3000:]
    assert "every awaited topic has its subscribers" in log, log[-3000:]
    # ended by itself: the bag, then the drain, no duration cut and no signal
    assert log.index("bag finished; draining") < log.index("drained; stopping"), log[-3000:]
    assert "duration" not in log.split("bag finished; draining")[1], log[-3000:]
    summary = json.loads((out / "bringup_summary.json").read_text())
    assert summary["interrupted_by"] is None and summary["workers_stopped"], summary
    stats = summary["node_stats"]["object_mapping_node"]
    # every frame of the bag reached the node; each was then processed or, newest-wins, replaced
    # by a newer one while the worker was busy; none was left in the worker when the run ended
    assert stats["frames_synchronised"] == frames, stats
    assert stats["rejected"] == {} and stats["frames_failed"] == 0, stats
    assert stats["frames_processed"] + stats["frames_dropped_busy"] == frames, stats
    assert stats["frames_processed"] >= 1, stats


def test_bag_play_waits_bounded_then_plays_naming_the_topics_without_subscribers(tmp_path):
    bag = write_sim_bag(tmp_path / "bag", frames=2, rate_hz=RATE_HZ, seed=3, ground_truth=False, **SMALL)
    done = run_python(["-m", "ocgs_ros.nodes.bag_play", "--ros-args", "-p", f"bag:={bag}",
                       "-p", "wait_for_subscribers_s:=0.5",
                       "-p", "wait_for_topics:=[/camera/image_raw,/not/in/the/bag]"], cwd=REPO, timeout_s=120)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-3000:]
    warnings = [line for line in log.splitlines() if "too few subscribers" in line]
    assert len(warnings) == 1 and "['/camera/image_raw']" in warnings[0], log[-3000:]
    absent = [line for line in log.splitlines() if "not in the bag" in line]
    assert len(absent) == 1 and "/not/in/the/bag" in absent[0], log[-3000:]
    assert "playback finished" in log.split(warnings[0])[1], "it played anyway after the warning"


def fake_perception_node(topics: list[str], busy: bool = False, received: int = 0):
    return SimpleNamespace(frame_topics=topics, idle=lambda: not busy, inputs_received=received)


def test_bag_play_is_told_every_input_of_every_perception_node_once_per_node():
    mapping = fake_perception_node(["/camera/image_raw", "/lidar/points", "/tf"])
    bev = fake_perception_node(["/camera/image_raw", "/tf"])
    recorder = SimpleNamespace(finished=False)  # not a perception node: nothing to wait for
    overrides = bringup.bag_wait_overrides([recorder, mapping, bev])
    assert overrides == {"wait_for_topics": ["/camera/image_raw", "/lidar/points", "/tf", "/camera/image_raw", "/tf"],
                         "wait_for_subscribers_s": bringup.BAG_SUBSCRIBER_WAIT_S}
    assert bringup.bag_wait_overrides([recorder]) == {}  # no consumer: the YAML's own wait applies


def test_the_drain_waits_for_a_busy_node_and_for_input_still_arriving():
    node = fake_perception_node(["/camera/image_raw"], busy=True, received=5)
    drain = bringup.Drain([node], quiet_s=0.0, timeout_s=3600.0)
    assert not drain.drained()  # a frame still in the worker
    node.idle = lambda: True
    node.inputs_received = 6  # a message was still in flight
    assert not drain.drained()
    assert drain.drained()  # idle, and nothing new since the last look
    assert not drain.timed_out()
    assert bringup.Drain([node], quiet_s=3600.0, timeout_s=0.0).timed_out()
