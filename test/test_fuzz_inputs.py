"""Malformed sensor input never reaches a library and never stops a node: a seeded fuzzer breaks
Image, CameraInfo, PointCloud2 and depth messages in every way a driver or a bag can (sizes, steps,
encodings, data lengths, intrinsics, distortion, fields, datatypes, NaN/inf and zero points).

* Converter level (fast): >= 1000 malformed messages of each kind through the checks the nodes run
  (:mod:`ocgs_ros.ros.sensor_frames`): each one is accepted or rejected with a named reason; no
  other exception escapes.
* End to end over DDS: both perception nodes as processes get >= 1000 frames with a broken Image,
  >= 1000 with a broken CameraInfo and >= 1000 with a broken PointCloud2 (current stamps, valid
  frame ids: every frame passes synchronisation), valid frames mixed in. Afterwards both nodes are
  alive and publish on valid frames, /diagnostics names every rejection by reason, no frame counts
  as a generic "processing" failure, and no traceback is logged.
"""
from __future__ import annotations

import collections
import copy
import time

import numpy as np
import pytest
from sensor_msgs.msg import PointField

from conftest import spin_until
from ocgs_ros.ros import conversions
from ocgs_ros.ros.conversions.image import MAX_IMAGE_SIDE
from ocgs_ros.ros.sensor_frames import (INPUT_REJECT_REASONS, CameraFrame, FrameError, camera_from_messages,
                                        cloud_points, depth_from_message)

MESSAGES_PER_KIND = 1000
SEED = 15

# -- valid messages -------------------------------------------------------------------------
K = np.array([[30.0, 0.0, 15.5], [0.0, 30.0, 11.5], [0.0, 0.0, 1.0]])


def _image(stamp=0, frame_id="cam", height=24, width=32):
    rgb = np.random.default_rng(1).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return conversions.rgb_to_image_msg(rgb, frame_id, stamp)


def _info(stamp=0, frame_id="cam"):
    return conversions.make_camera_info(K, 32, 24, frame_id, stamp, D=[0.05, -0.01, 0.0, 0.0, 0.001])


def _cloud(points=None, stamp=0, frame_id="lidar"):
    points = np.random.default_rng(2).normal(size=(200, 3)).astype(np.float32) if points is None else points
    n = len(points)
    return conversions.xyz_to_pointcloud2(points, frame_id, stamp, intensity=np.ones(n, np.float32),
                                          ring=np.zeros(n, np.uint16))


def _depth(stamp=0, frame_id="cam", height=24, width=32):
    return conversions.metres_to_depth_msg(np.full((height, width), 1.5, np.float32), frame_id, stamp)


# -- mutations: each breaks (or, rarely, harmlessly changes) one thing -------------------------
BAD_COLOUR_ENCODINGS = ["", "bayer_rggb8", "32FC1", "16UC1", "8UC3", "yuv422", "RGB8", "rgb8 ", "nonsense",
                        "64FC4", "8UC0", "8UC600"]
BAD_DEPTH_ENCODINGS = ["", "rgb8", "bgr8", "mono8", "8UC1", "32FC3", "16SC1", "64FC1", "depth"]
NON_FINITE = [float("nan"), float("inf"), float("-inf")]


def _set(**fields):
    def mutate(msg, rng):
        for key, value in fields.items():
            setattr(msg, key, value(msg, rng) if callable(value) else value)
        return msg
    return mutate


def _image_mutations(bad_encodings):
    return {
        "zero_width": _set(width=0),
        "zero_height": _set(height=0),
        "zero_size_no_data": _set(width=0, height=0, step=0, data=b""),
        "huge_width": _set(width=lambda m, r: int(r.integers(MAX_IMAGE_SIDE + 1, 2 ** 32))),
        "huge_height": _set(height=lambda m, r: int(r.integers(MAX_IMAGE_SIDE + 1, 2 ** 32))),
        "encoding": _set(encoding=lambda m, r: str(r.choice(bad_encodings))),
        "short_step": _set(step=lambda m, r: int(r.integers(0, max(m.step, 1)))),
        "long_step": _set(step=lambda m, r: m.step + int(r.integers(1, 64))),
        "truncated_data": _set(data=lambda m, r: bytes(m.data)[: int(r.integers(0, max(len(m.data), 1)))]),
        "extra_data": _set(data=lambda m, r: bytes(m.data) + bytes(int(r.integers(1, 64)))),
        "no_data": _set(data=b""),
        "swapped_size": _set(width=lambda m, r: m.height, height=lambda m, r: m.width),
        "bigendian": _set(is_bigendian=True),
    }


IMAGE_MUTATIONS = _image_mutations(BAD_COLOUR_ENCODINGS)
DEPTH_MUTATIONS = {
    **_image_mutations(BAD_DEPTH_ENCODINGS),
    "other_frame": _set(header=lambda m, r: type(m.header)(stamp=m.header.stamp, frame_id="other_cam")),
    "other_size": lambda m, r: _depth(m.header.stamp, m.header.frame_id, 12, 16),
}


def _k_entry(msg, rng):
    k = list(msg.k)
    k[int(rng.integers(0, 9))] = float(rng.choice(NON_FINITE))
    msg.k = k
    return msg


def _k_focal(msg, rng):
    k = list(msg.k)
    k[int(rng.choice([0, 4]))] = float(rng.choice([0.0, -1.0, -300.0]))
    msg.k = k
    return msg


def _k_last_row(msg, rng):
    k = list(msg.k)
    k[int(rng.integers(6, 9))] = float(rng.choice([0.5, 2.0, -1.0]))
    k[8] = k[8] if k[8] != 1.0 else 0.0
    msg.k = k
    return msg


def _non_finite_entry(field: str):
    def mutate(msg, rng):
        values = list(getattr(msg, field))
        if not values:
            values = [0.0] * 5
        values[int(rng.integers(0, len(values)))] = float(rng.choice(NON_FINITE))
        setattr(msg, field, values)
        return msg
    return mutate


CAMERA_INFO_MUTATIONS = {
    "k_zero": _set(k=[0.0] * 9),
    "k_non_finite": _k_entry,
    "k_focal": _k_focal,
    "k_last_row": _k_last_row,
    "zero_width": _set(width=0),
    "zero_height": _set(height=0),
    "size_mismatch": _set(width=lambda m, r: m.width + int(r.integers(1, 100))),
    "size_mismatch_h": _set(height=lambda m, r: m.height * 2),
    "d_non_finite": _non_finite_entry("d"),
    "d_count": _set(d=lambda m, r: [0.01] * int(r.choice([1, 2, 3, 6, 7, 9, 10, 13, 20]))),
    "unknown_model": _set(distortion_model=lambda m, r: str(r.choice(["fisheye", "kannala_brandt", "", "PLUMB_BOB"]))),
    "equidistant_count": _set(distortion_model="equidistant"),
    "p_non_finite": _non_finite_entry("p"),
}


def _field(msg, rng):
    return msg.fields[int(rng.integers(0, len(msg.fields)))] if msg.fields else PointField()


def _drop_field(msg, rng):
    name = str(rng.choice(["x", "y", "z"]))
    msg.fields = [f for f in msg.fields if f.name != name]
    return msg


def _field_edit(attr, values):
    def mutate(msg, rng):
        setattr(_field(msg, rng), attr, values(rng))
        return msg
    return mutate


def _all_points(value):
    def mutate(msg, rng):
        return _cloud(np.full((50, 3), value, np.float32), msg.header.stamp, msg.header.frame_id)
    return mutate


POINTCLOUD_MUTATIONS = {
    "drop_xyz": _drop_field,
    "rename_field": _field_edit("name", lambda r: str(r.choice(["q", "x", "X", ""]))),
    "datatype": _field_edit("datatype", lambda r: int(r.choice([0, 9, 42, 255, PointField.INT8, PointField.UINT16,
                                                               PointField.INT32, PointField.FLOAT64]))),
    "count": _field_edit("count", lambda r: int(r.choice([0, 2, 3, 1000, 2 ** 31]))),
    "offset": _field_edit("offset", lambda r: int(r.integers(0, 64))),
    "point_step_zero": _set(point_step=0),
    "point_step_small": _set(point_step=lambda m, r: int(r.integers(1, max(m.point_step, 2)))),
    "point_step_big": _set(point_step=lambda m, r: m.point_step + int(r.integers(1, 16))),
    "point_step_huge": _set(point_step=2 ** 31 + 5),
    "row_step_small": _set(row_step=lambda m, r: int(r.integers(0, max(m.row_step, 1)))),
    "row_step_big": _set(row_step=lambda m, r: m.row_step + int(r.integers(1, 64))),
    "truncated_data": _set(data=lambda m, r: bytes(m.data)[: int(r.integers(0, max(len(m.data), 1)))]),
    "extra_data": _set(data=lambda m, r: bytes(m.data) + bytes(int(r.integers(1, 64)))),
    "zero_points": _set(width=0, row_step=0, data=b""),
    "zero_height": _set(height=0),
    "huge_width": _set(width=2 ** 31),
    "all_nan": _all_points(np.nan),
    "all_inf": _all_points(np.inf),
    "bigendian": _set(is_bigendian=True),
}


def broken(message, mutations: dict, rng: np.random.Generator):
    """A copy of ``message`` with one or two random mutations -> (message, their names)."""
    msg = copy.deepcopy(message)
    names = [str(n) for n in rng.choice(list(mutations), size=int(rng.integers(1, 3)))]
    for name in names:
        msg = mutations[name](msg, rng)
    return msg, names


# -- converter level ---------------------------------------------------------------------------
CAMERA = CameraFrame(np.zeros((12, 16, 3), np.uint8), K, "cam")
KINDS = {
    # kind: (valid message, mutations, what the node runs on it, reason prefixes it may give)
    "image": (_image(), IMAGE_MUTATIONS, lambda m: camera_from_messages(m, _info(), 16, 12),
              ("image_", "camera_info_size_mismatch")),
    "camera_info": (_info(), CAMERA_INFO_MUTATIONS, lambda m: camera_from_messages(_image(), m, 16, 12),
                    ("camera_info_",)),
    "pointcloud": (_cloud(), POINTCLOUD_MUTATIONS, lambda m: cloud_points(m, with_intensity=True),
                   ("pointcloud_",)),
    "depth": (_depth(), DEPTH_MUTATIONS, lambda m: depth_from_message(m, _image(), CAMERA), ("depth_",)),
}


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_malformed_message_is_rejected_by_name(kind):
    valid, mutations, run, prefixes = KINDS[kind]
    run(valid)  # the unbroken message passes
    rng = np.random.default_rng([SEED, list(KINDS).index(kind)])
    reasons: collections.Counter[str] = collections.Counter()
    accepted = []
    for _ in range(MESSAGES_PER_KIND + 200):
        msg, names = broken(valid, mutations, rng)
        try:
            run(msg)
        except FrameError as exc:
            assert exc.reason in INPUT_REJECT_REASONS and exc.reason.startswith(prefixes), (names, exc.reason, exc)
            reasons[exc.reason] += 1
        except Exception as exc:  # noqa: BLE001 - the point: nothing but a named rejection may escape
            pytest.fail(f"{kind} mutated by {names} raised {type(exc).__name__}: {exc}")
        else:
            accepted.append(names)
    assert sum(reasons.values()) >= MESSAGES_PER_KIND, (reasons, accepted[:10])
    # the harmless ones are those that change nothing a reader relies on
    harmless = {"bigendian", "swapped_size", "long_step", "extra_data", "offset", "datatype", "count",
                "rename_field", "d_count", "unknown_model", "equidistant_count", "k_non_finite", "p_non_finite",
                "d_non_finite", "k_last_row", "row_step_big"}
    assert all(set(names) & harmless for names in accepted), accepted[:10]


# -- end to end over DDS -----------------------------------------------------------------------
RATE_HZ = 100.0
#: named rejections after the message checks: no LiDAR return inside the camera view (the mapping
#: pipeline; a cloud whose fields were moved can read as finite points elsewhere), the BEV model's
#: own input check
DOWNSTREAM_REASONS = {"empty_cloud", "model_input"}
VALID_EVERY = 50  # one whole valid frame in this many: the nodes keep working throughout


@pytest.fixture(scope="module")
def driving_stream():
    from ocgs_ros.ros.sim_messages import SimStream, make_world

    stream = SimStream(make_world("driving", 3, 352, 128, 32, 512))
    frames = [dict(stream.frame_messages(i, conversions.ns_to_stamp(0)).sensors) for i in range(3)]
    return stream, frames


def _restamped(msg, stamp):
    out = copy.copy(msg)  # the header is replaced, the (large) data shared
    out.header = type(msg.header)(stamp=stamp, frame_id=msg.header.frame_id)
    return out


def _latest_status(statuses: dict, node: str) -> dict[str, str]:
    return {kv.key: kv.value for kv in statuses[node].values} if node in statuses else {}


def test_both_nodes_survive_a_fuzzed_stream_and_name_every_rejection(ros_node, node_process, driving_stream):
    from diagnostic_msgs.msg import DiagnosticArray
    from ocgs_ros_interfaces.msg import Detection3DArray, ObjectInstanceArray
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2
    from tf2_msgs.msg import TFMessage

    from ocgs_ros.ros import qos

    common = ["-p", "diagnostics_period_s:=0.5", "-p", "tf_timeout_s:=0.05"]
    mapping = node_process("ocgs_ros.nodes.object_mapping_node", "--ros-args", *common,
                           "-p", "gocl.checkpoint:=none", "-p", "view.process_width:=48", "-p", "view.process_height:=16",
                           "-p", "view.max_points:=300", "-p", "mapper.iterations_per_frame:=1",
                           "-p", "map.max_gaussians:=3000", "-p", "publish_gaussians_period_s:=5.0")
    bev = node_process("ocgs_ros.nodes.bev_perception_node", "--ros-args", *common)
    stream, frames = driving_stream

    node = ros_node
    pubs = {"/tf": node.create_publisher(TFMessage, "/tf", qos.TF),
            "/tf_static": node.create_publisher(TFMessage, "/tf_static", qos.TF_STATIC),
            "/camera/image_raw": node.create_publisher(Image, "/camera/image_raw", qos.SENSOR_DATA),
            "/camera/camera_info": node.create_publisher(CameraInfo, "/camera/camera_info", qos.SENSOR_DATA),
            "/lidar/points": node.create_publisher(PointCloud2, "/lidar/points", qos.SENSOR_DATA)}
    outputs = {"bev": [], "mapping": []}
    statuses: dict[str, object] = {}
    node.create_subscription(Detection3DArray, "/bev_perception_node/detections",
                             lambda m: outputs["bev"].append(conversions.stamp_to_ns(m.header.stamp)), qos.RELIABLE)
    node.create_subscription(ObjectInstanceArray, "/object_mapping_node/objects",
                             lambda m: outputs["mapping"].append(conversions.stamp_to_ns(m.header.stamp)), qos.LATCHED)
    node.create_subscription(DiagnosticArray, "/diagnostics",
                             lambda m: statuses.update({s.hardware_id: s for s in m.status}), qos.RELIABLE)
    assert spin_until(node, lambda: pubs["/lidar/points"].get_subscription_count() >= 2, 60.0,
                      processes=[mapping, bev]), mapping.output()[-2000:] + bev.output()[-2000:]
    static = dict(stream.static_messages(node.get_clock().now().to_msg()))
    pubs["/tf_static"].publish(static["/tf_static"])

    def send(index: int, broken_topic: str | None, rng) -> int:
        stamp = node.get_clock().now().to_msg()
        frame = frames[index % len(frames)]
        pubs["/tf"].publish(TFMessage(transforms=[_restamped(t, stamp) for t in frame["/tf"].transforms]))
        for topic, mutations in (("/camera/image_raw", IMAGE_MUTATIONS), ("/camera/camera_info", CAMERA_INFO_MUTATIONS),
                                 ("/lidar/points", POINTCLOUD_MUTATIONS)):
            msg = _restamped(frame[topic], stamp)
            if topic == broken_topic:
                msg, _ = broken(msg, mutations, rng)
            pubs[topic].publish(msg)
        return conversions.stamp_to_ns(stamp)

    # warm-up: both nodes publish on valid frames before the fuzzing starts
    assert spin_until(node, lambda: bool(outputs["bev"]) and bool(outputs["mapping"]) or
                      (send(0, None, None) and False), 60.0, step_s=0.2, processes=[mapping, bev]), \
        mapping.output()[-3000:] + bev.output()[-3000:]

    rng = np.random.default_rng(SEED)
    kinds = ["/camera/image_raw", "/camera/camera_info", "/lidar/points"] * MESSAGES_PER_KIND
    rng.shuffle(kinds)
    sent = collections.Counter()
    next_send = time.monotonic()
    for index, topic in enumerate(kinds):
        send(index, topic, rng)
        sent[topic] += 1
        if index % VALID_EVERY == 0:
            send(index, None, None)
        next_send += 1.0 / RATE_HZ
        spin_until(node, lambda: time.monotonic() >= next_send, 1.0, step_s=0.002)
    assert min(sent.values()) >= MESSAGES_PER_KIND

    # afterwards: valid frames are still turned into outputs by both nodes
    after_ns = conversions.stamp_to_ns(node.get_clock().now().to_msg())
    assert spin_until(node, lambda: (any(s >= after_ns for s in outputs["bev"]) and
                                     any(s >= after_ns for s in outputs["mapping"])) or
                      (send(1, None, None) and False), 60.0, step_s=0.3, processes=[mapping, bev]), \
        (mapping.output()[-3000:], bev.output()[-3000:])
    spin_until(node, lambda: False, 1.5)  # one more diagnostics period with every count in it
    assert mapping.alive() and bev.alive()

    for name, process in (("object_mapping_node", mapping), ("bev_perception_node", bev)):
        values = _latest_status(statuses, name)
        rejected = {k.split("/", 1)[1]: int(v) for k, v in values.items() if k.startswith("rejected/")}
        log = process.output()
        assert "Traceback" not in log, log[-3000:]
        # most broken frames reach the checks (the rest are replaced while the worker is busy)
        assert sum(rejected.values()) >= 300, (name, rejected)
        assert "processing" not in rejected, (name, rejected, log[-3000:])
        assert set(rejected) <= INPUT_REJECT_REASONS | DOWNSTREAM_REASONS, (name, rejected)
        for prefix in ("image_", "camera_info_", "pointcloud_"):
            assert any(r.startswith(prefix) for r in rejected), (name, prefix, rejected)
        for reason in rejected:  # each reason is named in the log at least once
            assert f"[{reason}]" in log, (name, reason)


def test_a_stamp_out_of_range_is_dropped_by_the_synchronizer_not_raised():
    """``nanosec >= 1e9`` fits the wire type (uint32); raising in the subscription callback would stop
    the node's executor, so the synchronizer drops and counts the message instead."""
    from ocgs_ros.ros.sync import ApproximateTimeSynchronizer, SimpleFilter

    inputs = [SimpleFilter(), SimpleFilter()]
    sync = ApproximateTimeSynchronizer(inputs, queue_size=5, slop=0.01)
    emitted = []
    sync.registerCallback(lambda *msgs: emitted.append(msgs))
    bad = _image()
    bad.header.stamp.nanosec = 2_000_000_000
    inputs[0].signalMessage(bad)
    assert sync.dropped_invalid_stamp == 1
    good = _image(stamp=conversions.ns_to_stamp(10 ** 9))
    inputs[0].signalMessage(good)
    inputs[1].signalMessage(_info(stamp=conversions.ns_to_stamp(10 ** 9)))
    assert len(emitted) == 1 and emitted[0][0] is good
