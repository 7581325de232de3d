"""The six-camera surround rig end to end (issue 14, part 1): the simulator renders it, the BEV model
takes six cameras of different intrinsics, the nuScenes-layout export writes all six and reads them
back, and a simulated surround bag replayed through the bring-up reaches ``bev_perception_node``,
which publishes detections and map layers for every frame it takes; a camera frame missing from TF
is a named rejection and the node carries on."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import yaml
from conftest import REPO, spin_until

from ocgs_ros.bev.config import MAP_CLASSES, BevConfig
from ocgs_ros.ros import conversions, qos
from ocgs_ros.sim.driving import SURROUND_RIG, DrivingWorld, surround_config

WIDTH, HEIGHT = 64, 36  # 16:9 like nuScenes' 1600 x 900, tiny for the test
SURROUND_TOPICS = [f"/{m.name.lower()}/image_raw" for m in SURROUND_RIG]
SURROUND_INFOS = [f"/{m.name.lower()}/camera_info" for m in SURROUND_RIG]
NS = 1_000_000_000
START_NS = 1_700_000_000 * NS


def tiny_surround_config(**overrides) -> BevConfig:
    # score_threshold 0: an untrained model's peaks still decode, so the detection path is exercised
    return BevConfig.tiny(num_cameras=6, image_height=HEIGHT, image_width=WIDTH, score_threshold=0.0,
                          max_detections=20, **overrides)


@pytest.fixture(scope="module")
def surround_checkpoint(tmp_path_factory):
    from ocgs_ros.bev.checkpoint import save_checkpoint
    from ocgs_ros.bev.model import BevFusionModel

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("bev_surround") / "tiny_surround.pt"
    save_checkpoint(path, BevFusionModel(tiny_surround_config()))
    return path


# ----- the rig -------------------------------------------------------------------------------
def test_surround_rig_covers_the_car_with_overlapping_cameras_stamped_at_their_own_times():
    world = DrivingWorld(surround_config(WIDTH, HEIGHT, num_moving_vehicles=4), seed=2, staggered_cameras=True)
    frame = world.frame(3)
    assert world.camera_names == ("CAM_FRONT", "CAM_FRONT_LEFT", "CAM_BACK_LEFT", "CAM_BACK", "CAM_BACK_RIGHT",
                                  "CAM_FRONT_RIGHT")
    assert [c.rgb.shape for c in frame.cameras] == [(HEIGHT, WIDTH, 3)] * 6
    back = world.camera_names.index("CAM_BACK")
    assert world.Ks[back][0, 0] < world.Ks[0][0, 0]  # the wider back camera has the shorter focal length
    # Each camera's optical axis points where its mount says, and neighbours' fields of view overlap.
    for mount, T in zip(SURROUND_RIG, world.T_ego_cams):
        axis = T[:3, 2]
        assert math.degrees(math.atan2(axis[1], axis[0])) == pytest.approx(mount.yaw_deg, abs=1e-6)
    for a, b in zip(SURROUND_RIG, SURROUND_RIG[1:] + SURROUND_RIG[:1]):
        gap = (b.yaw_deg - a.yaw_deg) % 360.0
        assert gap < (a.hfov_deg + b.hfov_deg) / 2, (a.name, b.name)
    delays = [c.stamp_ns - frame.stamp_ns for c in frame.cameras]
    assert len(set(delays)) == 6 and 0 <= min(delays) and max(delays) < 0.05 * NS


def test_model_forward_with_six_cameras_of_different_intrinsics():
    from ocgs_ros.bev.model import BevFusionModel
    from ocgs_ros.bev.synthetic import random_inputs

    cfg = tiny_surround_config()
    torch.manual_seed(0)
    model = BevFusionModel(cfg).eval()
    inputs = random_inputs(cfg, batch=2, points_per_sample=500)
    k = inputs.intrinsics[0]
    assert not torch.allclose(k[3], k[0])  # the back camera's K differs
    with torch.no_grad():
        out = model(inputs)
    g = cfg.det_grid
    assert out.heatmap.shape == (2, cfg.num_box_classes, g.rows, g.cols)
    assert out.map_logits.shape == (2, cfg.num_map_classes, *cfg.map_grid.shape)
    # Every direction around the car is seen by some camera: frustum cells reach all four quadrants.
    cells = torch.cat([model.camera.geometry.cells(k[n], inputs.cam_to_ego[0, n]) for n in range(6)])
    rows, cols = cells[cells >= 0] // g.cols, cells[cells >= 0] % g.cols
    quadrants = {(bool(r), bool(c)) for r, c in zip((rows >= g.rows // 2).tolist(), (cols >= g.cols // 2).tolist())}
    assert quadrants == {(False, False), (False, True), (True, False), (True, True)}
    assert (cells[: len(cells) // 6] >= 0).any() and (cells[3 * len(cells) // 6: 4 * len(cells) // 6] >= 0).any()


def test_nuscenes_export_writes_six_cameras_and_the_reader_reads_them_back(tmp_path):
    from ocgs_ros.bev.data import driving_dataset
    from ocgs_ros.bev.nuscenes import CAMERA_CHANNELS_6, NuScenesRecords, export_simulated_scenes

    config = surround_config(WIDTH, HEIGHT, num_moving_vehicles=6)
    root = export_simulated_scenes(tmp_path / "nus", num_scenes=1, frames_per_scene=2, seed=4, config=config,
                                   staggered_cameras=True)
    for channel in CAMERA_CHANNELS_6:
        assert len(list((root / "samples" / channel).glob("*.jpg"))) == 2, channel
    records = NuScenesRecords(root, "v1.0-mini")
    assert records.cameras == CAMERA_CHANNELS_6
    record = records[1]
    assert record.images.shape == (6, HEIGHT, WIDTH, 3)
    world = DrivingWorld(config, seed=0)
    for n, mount in enumerate(SURROUND_RIG):
        # The reader expresses each camera in the ego frame at the LiDAR time: the ego moved for the
        # camera's trigger delay, along ego +x at the simulator's speed.
        shift = config.ego_speed * mount.trigger_delay_s
        assert np.allclose(record.T_ego_cam[n][:3, :3], world.T_ego_cams[n][:3, :3], atol=1e-6)
        assert np.allclose(record.T_ego_cam[n][:3, 3], world.T_ego_cams[n][:3, 3] + [shift, 0, 0], atol=1e-4)
        assert np.allclose(record.intrinsics[n], world.Ks[n])
    dataset = driving_dataset(root, tiny_surround_config())  # what bev_train / bev_evaluate read
    assert len(dataset) == 2 and dataset[0]["images"].shape == (6, 3, HEIGHT, WIDTH)


# ----- the node ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def surround_frames():
    from ocgs_ros.ros.sim_messages import SimStream, make_world

    stream = SimStream(make_world("driving", 1, WIDTH, HEIGHT, 16, 256, cameras="surround", staggered_cameras=True))
    static = dict(stream.static_messages(conversions.ns_to_stamp(START_NS)))
    frames = [dict(stream.frame_messages(i, conversions.ns_to_stamp(START_NS + i * NS // 10)).sensors)
              for i in range(3)]
    return static, frames


def frame_messages(frame) -> tuple:
    return (*[frame[t] for t in SURROUND_TOPICS], *[frame[t] for t in SURROUND_INFOS], frame["/lidar/points"])


def test_a_camera_missing_from_tf_is_a_named_rejection_and_each_camera_is_looked_up_at_its_own_stamp(
        ros_context, surround_checkpoint, surround_frames):
    from rclpy.parameter import Parameter

    from ocgs_ros.nodes.bev_perception_node import BevPerceptionNode
    from ocgs_ros.ros.perception_node import SyncedFrame
    from ocgs_ros.ros.sensor_frames import FrameError

    static, frames = surround_frames
    values = {"bev_checkpoint": str(surround_checkpoint), "tf_timeout_s": 0.0, "min_score": 0.0,
              "image_topics": SURROUND_TOPICS, "camera_info_topics": SURROUND_INFOS}
    overrides = [Parameter(k, value=v) for k, v in values.items()]
    node = BevPerceptionNode(context=ros_context, parameter_overrides=overrides)
    try:
        assert node.input_topics[:6] == SURROUND_TOPICS and node.input_topics[-1] == "/lidar/points"
        back = "cam_back_optical_frame"
        for t in static["/tf_static"].transforms:
            if t.child_frame_id != back:
                node.tf_buffer.set_transform_static(t, "test")
        msgs = frame_messages(frames[0])
        with pytest.raises(FrameError, match=back) as caught:
            node.process(SyncedFrame(msgs, node.frame_stamp_ns(msgs)))
        assert caught.value.reason == "tf_unknown_frame" and "/cam_back/image_raw" in str(caught.value)
        node.on_frame(*msgs)
        assert node.worker.wait_idle(60.0)
        assert node.rejected == {"tf_unknown_frame": 1} and node.published == 0

        # The back camera's extrinsics now exist only at its own image stamps (25 ms after the LiDAR's):
        # a lookup at the LiDAR's stamp would fail, at the image's it succeeds.
        back_transform = next(t for t in static["/tf_static"].transforms if t.child_frame_id == back)
        back_index = [m.name for m in SURROUND_RIG].index("CAM_BACK")
        for frame in frames[1:]:
            back_transform.header.stamp = frame[SURROUND_TOPICS[back_index]].header.stamp
            assert back_transform.header.stamp != frame["/lidar/points"].header.stamp
            node.tf_buffer.set_transform(back_transform, "test")
            node.on_frame(*frame_messages(frame))
            assert node.worker.wait_idle(60.0)
        assert node.published == 2 and node.rejected == {"tf_unknown_frame": 1}, node.rejected
        assert set(node.pub_layers) == set(MAP_CLASSES)

        # A camera that stops publishing stalls synchronisation: /diagnostics names it.
        for name in ["frames", *(f"image_{k}" for k in range(6) if k != back_index)] * 2:  # a rate needs two
            node.diagnostics.tick(name)
        _, message = node.diagnostics.level_and_message(node.diagnostics.summary())
        assert message == f"no image_{back_index}", message
    finally:
        node.destroy_node()


def test_a_surround_bag_through_the_bringup_gives_detections_and_map_layers_for_every_frame(
        ros_node, node_process, surround_checkpoint, tmp_path):
    from nav_msgs.msg import OccupancyGrid
    from ocgs_ros_interfaces.msg import Detection3DArray

    from ocgs_ros.ros.bags import BagReader, message_class
    from ocgs_ros.ros.sim_messages import topic_qos
    from ocgs_ros.ros.sim_to_bag import write_sim_bag

    frames = 4
    bag = write_sim_bag(tmp_path / "surround_bag", world="driving", frames=frames, rate_hz=10.0, seed=5,
                        image_width=WIDTH, image_height=HEIGHT, lidar_beams=16, lidar_azimuth_steps=256,
                        ground_truth=False, cameras="surround", staggered_cameras=True)
    config = yaml.safe_load((REPO / "config" / "driving_surround.yaml").read_text())
    config["/**/bev_perception_node"]["ros__parameters"].update(bev_checkpoint=str(surround_checkpoint),
                                                                min_score=0.0)
    # The bag starts once the node and this test subscribe to every recorded topic: this test then
    # knows the bring-up's endpoints too and hears every output (no frame lost to start-up order).
    config["/**/bag_play"]["ros__parameters"].update(wait_for_subscribers_s=60.0, min_subscribers=2)
    params = tmp_path / "surround.yaml"
    params.write_text(yaml.safe_dump(config))

    detections, layers = [], {name: [] for name in MAP_CLASSES}
    ros_node.create_subscription(Detection3DArray, "/bev_perception_node/detections", detections.append, qos.RELIABLE)
    reader = BagReader(bag)
    try:
        for topic, msgtype in reader.topics.items():
            ros_node.create_subscription(message_class(msgtype), topic, lambda _msg: None, topic_qos(topic))
        lidar_stamps = {conversions.stamp_to_ns(m.deserialize().header.stamp)
                        for m in reader.messages(["/lidar/points"])}
    finally:
        reader.close()
    for name, received in layers.items():
        ros_node.create_subscription(OccupancyGrid, f"/bev_perception_node/map/{name}", received.append, qos.LATCHED)
    out = tmp_path / "run"
    bringup = node_process("ocgs_ros.bringup", f"bag:={bag}", "bev:=true", "mapping:=false", f"config:={params}",
                           f"output:={out}")
    spin_until(ros_node, lambda: not bringup.alive(), 100.0)
    assert bringup.wait(5.0) == 0, bringup.output()[-3000:]
    spin_until(ros_node, lambda: False, 0.5)  # the last messages in flight
    log = bringup.output()
    assert all(f"image_{k}={topic}" in log for k, topic in enumerate(SURROUND_TOPICS)), log[-3000:]

    stats = json.loads((out / "bringup_summary.json").read_text())["node_stats"]["bev_perception_node"]
    taken = stats["frames_synchronised"] - stats["frames_dropped_busy"]
    assert stats["rejected"] == {} and stats["frames_failed"] == 0, stats
    assert taken >= 2 and stats["frames_processed"] == taken, stats
    assert len(lidar_stamps) == frames
    assert len(detections) == taken and {conversions.stamp_to_ns(d.header.stamp) for d in detections} <= lidar_stamps
    assert all(d.header.frame_id == "base_link" for d in detections)
    assert all(received for received in layers.values()), {k: len(v) for k, v in layers.items()}


def test_bringup_takes_camera_lists_for_the_bev_node(tmp_path):
    from ocgs_ros import bringup

    arguments, _, _ = bringup.parse_arguments(["bev:=true", "mapping:=false", "sim:=false",
                                               f"image_topics:=[{','.join(SURROUND_TOPICS)}]",
                                               f"camera_info_topics:={','.join(SURROUND_INFOS)}"])
    (plan,) = bringup.plan_nodes(arguments, tmp_path)
    assert plan.executable == "bev_perception_node"
    assert plan.overrides["image_topics"] == SURROUND_TOPICS and plan.overrides["camera_info_topics"] == SURROUND_INFOS
    arguments, _, _ = bringup.parse_arguments(["bev:=true"])
    assert "image_topics" not in bringup.plan_nodes(arguments, tmp_path)[-1].overrides  # the YAML's lists
    with pytest.raises(bringup.StartUpError, match="image_topics: expected a list of topics"):
        bringup.parse_arguments(["image_topics:=[/a,,/b]"])


def test_the_surround_yaml_has_the_default_yamls_keys_and_passes_the_check():
    import importlib

    from ocgs_ros.bringup import NODE_CLASSES
    from ocgs_ros.ros.params import params_file_problems

    def flat(mapping: dict, prefix: str = "") -> set[str]:
        return set().union(*(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}"}
                             for k, v in mapping.items()))

    configs = {}
    for name, target in NODE_CLASSES.items():
        module, cls = target.split(":")
        configs[name] = getattr(getattr(importlib.import_module(module), cls), "CONFIG_CLASSES", None) or None
    default, surround = (yaml.safe_load((REPO / "config" / name).read_text())
                         for name in ("ocgs.yaml", "driving_surround.yaml"))
    assert {k: flat(v) for k, v in surround.items()} == {k: flat(v) for k, v in default.items()}
    assert params_file_problems(REPO / "config" / "driving_surround.yaml", configs) == []
    bev = surround["/**/bev_perception_node"]["ros__parameters"]
    assert bev["image_topics"] == SURROUND_TOPICS and bev["camera_info_topics"] == SURROUND_INFOS
    assert surround["/**/sim_publisher"]["ros__parameters"]["cameras"] == "surround"
