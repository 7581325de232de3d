"""End to end over real DDS, every node in its own process (loopback-only Fast DDS, this test
process's own ROS domain):

* simulated tabletop sensors -> object_mapping_node -> this test's subscriber: ObjectInstanceArray
  compared with the simulator's ground-truth objects (3D IoU 0.25), ~/query_objects by point +
  radius, ~/save_map writing a loadable map;
* simulated driving sensors -> bev_perception_node -> typed detections and one OccupancyGrid per
  BEV map layer.

The tabletop is ``tabletop_gocl``, the tabletop the shipped GOCL model is trained on (square
images, closer orbit, 2-5 objects), under a world seed no training scene uses.
GOCL / BEV: the shipped checkpoints (the tabletop test asserts the issue's object recall with the
shipped GOCL), else small untrained ones written here, which exercise the same code paths and skip
the recall check (``OCGS_E2E_GOCL`` / ``OCGS_E2E_BEV`` name other checkpoints to try).
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, spin_until

from ocgs_ros import models
from ocgs_ros.ros import conversions, qos

CONFIG = str(REPO / "config" / "ocgs.yaml")
#: recall target of the issue (ObjectInstanceArray vs ground truth at 3D IoU 0.25)
RECALL_TARGET = 0.8
#: at least this share of the published objects is a real one (3D IoU 0.25); a live map once published
#: tens of table patches beside its objects (precision 0.03-0.12) while recall stayed at target
PRECISION_TARGET = 0.5
MAPPING_BUDGET_S = 60.0  # 2.5 orbits of the table at 5 Hz


def _params(**values) -> list[str]:
    args = ["--ros-args", "--params-file", CONFIG]
    for key, value in values.items():
        args += ["-p", f"{key}:={value}"]
    return args


@pytest.fixture(scope="module")
def gocl_checkpoint(tmp_path_factory) -> str:
    if os.environ.get("OCGS_E2E_GOCL"):
        return os.environ["OCGS_E2E_GOCL"]
    if models.GOCL_TABLETOP.is_file():
        return str(models.GOCL_TABLETOP)
    import torch

    from ocgs_ros.ocl.checkpoint import save_checkpoint
    from ocgs_ros.ocl.config import GoclConfig
    from ocgs_ros.ocl.model import GoclModel

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("gocl") / "untrained.pt"
    save_checkpoint(path, GoclModel(GoclConfig.tiny()))
    return str(path)


@pytest.fixture(scope="module")
def bev_checkpoint(tmp_path_factory) -> str:
    if os.environ.get("OCGS_E2E_BEV"):
        return os.environ["OCGS_E2E_BEV"]
    if models.BEV_DRIVING.is_file():
        return str(models.BEV_DRIVING)
    import torch

    from ocgs_ros.bev.checkpoint import save_checkpoint
    from ocgs_ros.bev.config import BevConfig
    from ocgs_ros.bev.model import BevFusionModel

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("bev") / "untrained.pt"
    save_checkpoint(path, BevFusionModel(BevConfig.tiny(score_threshold=0.0)))
    return str(path)


def _wait_until_quiet(ros_node, messages: list, quiet_s: float, timeout_s: float, processes) -> None:
    """Spin until no new message has arrived in ``messages`` for ``quiet_s`` (or ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        count = len(messages)
        spin_until(ros_node, lambda: len(messages) > count, quiet_s, processes=processes)
        if len(messages) == count:
            return


def test_tabletop_sensors_to_objects_query_and_save(ros_node, node_process, gocl_checkpoint, tmp_path,
                                                   record_property):
    from ocgs_ros_interfaces.msg import ObjectInstanceArray
    from ocgs_ros_interfaces.srv import QueryObjects, SaveMap
    from sensor_msgs.msg import PointCloud2
    from std_msgs.msg import String

    from ocgs_ros.gaussians.persistence import load_map
    from ocgs_ros.evaluation import ground_truth_boxes, match_objects

    arrays, clouds, truth = [], [], []
    ros_node.create_subscription(ObjectInstanceArray, "/object_mapping_node/objects", arrays.append, qos.LATCHED)
    ros_node.create_subscription(PointCloud2, "/object_mapping_node/gaussians", clouds.append, qos.LATCHED)
    ros_node.create_subscription(String, "/sim/objects", truth.append, qos.LATCHED)
    query = ros_node.create_client(QueryObjects, "/object_mapping_node/query_objects")
    save = ros_node.create_client(SaveMap, "/object_mapping_node/save_map")

    mapper = node_process("ocgs_ros.nodes.object_mapping_node", *_params(**{
        "gocl.checkpoint": gocl_checkpoint, "view.process_width": 64, "view.process_height": 64,
        # 4 iterations every frame whatever the machine's load (no time budget): what the map
        # recovers in the budget then depends on the frames integrated, not on how busy CI is
        "mapper.iterations_per_frame": 4, "mapper.frame_budget_ms": 0.0, "view.max_points": 3000,
        "publish_gaussians_period_s": 1.0,
        "expected_rate_hz": 5.0}))
    sim = node_process("ocgs_ros.nodes.sim_publisher", *_params(
        world="tabletop_gocl", seed=7, rate_hz=5.0, image_width=128, image_height=128, lidar_beams=32,
        lidar_azimuth_steps=1024))
    procs = [mapper, sim]
    # the mapper announces its services once it has loaded GOCL and built its map
    assert spin_until(ros_node, lambda: query.service_is_ready() and save.service_is_ready(), 60.0,
                      processes=procs), mapper.output()
    started = time.monotonic()
    assert spin_until(ros_node, lambda: truth and len(arrays) >= 3, 60.0, processes=procs), mapper.output()
    # keep mapping for the budget (the orbit covers the table in 24 s at 5 Hz)
    spin_until(ros_node, lambda: time.monotonic() - started > MAPPING_BUDGET_S, MAPPING_BUDGET_S + 5, processes=procs)
    assert mapper.alive(), mapper.output()
    # Stop the sensors and let the mapper drain, so the map the query and the save see is the one of
    # the last ~/objects message (a frame integrated in between may drop or re-number a spurious object).
    sim_exit = sim.stop()
    procs = [mapper]  # the simulator has exited on purpose: spin_until must not give up on it
    _wait_until_quiet(ros_node, arrays, quiet_s=3.0, timeout_s=60.0, processes=procs)

    last = arrays[-1]
    assert last.header.frame_id == "map"
    stamps = [conversions.stamp_to_ns(a.header.stamp) for a in arrays]
    assert all(b > a for a, b in zip(stamps, stamps[1:])), "objects are published for ever newer sensor stamps"
    assert clouds and {"rgb", "opacity", "scale", "instance"} <= {f.name for f in clouds[-1].fields}
    assert clouds[-1].width > 1000, "the Gaussian map grew from the LiDAR"

    ground_truth = ground_truth_boxes(truth[-1].data)
    boxes = conversions.instances_to_boxes(last.objects)
    result = match_objects(ground_truth, boxes, iou_threshold=0.25)
    result.update(objects_messages=len(arrays), gocl_checkpoint=gocl_checkpoint, budget_s=MAPPING_BUDGET_S)
    record_property("object_recall_iou25", result["recall"])
    (tmp_path / "e2e_recall.json").write_text(json.dumps(result, indent=1))
    print(f"\ne2e object recall @ IoU 0.25: {result['recall']:.3f} ({result['matched']}/{result['ground_truth_objects']}), "
          f"{result['predicted_objects']} published objects; best IoU per object {result['best_iou_per_object']}")

    # save_map writes a map that loads (also with no objects yet)
    future = save.call_async(SaveMap.Request(path=str(tmp_path / "map" / "tabletop")))
    assert spin_until(ros_node, future.done, 60.0, processes=procs)
    saved = future.result()
    assert saved.success, saved.message
    gmap, tracker = load_map(saved.ply_path)
    assert gmap.num_gaussians > 1000 and Path(saved.objects_path).is_file() and tracker is not None

    if "untrained" in Path(gocl_checkpoint).name:
        mapper.stop()
        pytest.skip(f"objects, query and recall need the shipped GOCL checkpoint ({models.GOCL_TABLETOP} absent); "
                    f"an untrained model published {len(last.objects)} objects")
    # query by point + radius at a published object's centre returns that object
    assert len(last.objects) > 0, f"no objects published after {MAPPING_BUDGET_S} s: {result}"
    target = last.objects[0]
    request = QueryObjects.Request(mode=QueryObjects.Request.BY_POINT_RADIUS, radius=0.02, frame_id="map")
    request.point = target.pose.position
    future = query.call_async(request)
    assert spin_until(ros_node, future.done, 30.0, processes=procs)
    answer = future.result()
    assert answer.success and answer.header.frame_id == "map", answer.message
    ids = [o.id for o in answer.objects]
    # the map may have been updated since the last message: the object keeps its id (tracker)
    assert target.id in ids, (target.id, ids)

    assert len(tracker.objects) > 0, "the saved objects JSON holds the map's objects"

    assert sim_exit == 0 and mapper.stop() == 0, mapper.output()
    # The target: >= 80 % of the ground-truth objects recovered at 3D IoU 0.25 within the
    # budget, with the shipped GOCL (measured 0.8-1.0 over our runs once GoclSegmenter's mask
    # temperature kept the table out of the objects), and precision. OCGS_E2E_ALLOW_LOW_RECALL=1 reports
    # instead of failing, for trying other checkpoints (OCGS_E2E_GOCL).
    assert result["matched"] >= 1, result
    if os.environ.get("OCGS_E2E_ALLOW_LOW_RECALL", "0") != "1":
        assert result["recall"] >= RECALL_TARGET, result
        assert result["precision"] >= PRECISION_TARGET, result


def test_driving_sensors_to_bev_detections_and_map_layers(ros_node, node_process, bev_checkpoint):
    from nav_msgs.msg import OccupancyGrid
    from ocgs_ros_interfaces.msg import Detection3DArray

    from ocgs_ros.bev.checkpoint import load_checkpoint

    _, cfg, _ = load_checkpoint(bev_checkpoint)
    detections, layers = [], {name: [] for name in cfg.map_classes}
    ros_node.create_subscription(Detection3DArray, "/bev_perception_node/detections", detections.append, qos.RELIABLE)
    for name, received in layers.items():
        ros_node.create_subscription(OccupancyGrid, f"/bev_perception_node/map/{name}", received.append, qos.LATCHED)

    bev = node_process("ocgs_ros.nodes.bev_perception_node", *_params(bev_checkpoint=bev_checkpoint, min_score=0.0))
    sim = node_process("ocgs_ros.nodes.sim_publisher", *_params(
        world="driving", seed=0, rate_hz=5.0, image_width=176, image_height=64, lidar_beams=32,
        lidar_azimuth_steps=1024))
    procs = [bev, sim]
    assert spin_until(ros_node, lambda: len(detections) >= 3 and all(layers.values()), 90.0, processes=procs), \
        bev.output()
    msg = detections[-1]
    assert msg.header.frame_id == "base_link"
    for d in msg.detections:
        assert d.class_name in cfg.box_classes and 0.0 <= d.score <= 1.0
    grid = cfg.map_grid
    for name, received in layers.items():
        layer = received[-1]
        assert layer.header.frame_id == "base_link"
        assert (layer.info.width, layer.info.height) == (grid.rows, grid.cols)
        assert layer.info.origin.position.x == pytest.approx(grid.x_min)
        values = np.asarray(layer.data)
        assert values.min() >= 0 and values.max() <= 100
    assert sim.stop() == 0 and bev.stop() == 0, bev.output()
