"""One pipeline, not two: object_mapping_node driven through its ROS interface (its own process,
parameters from a params file, sensor messages and TF over loopback DDS) and the evaluator's code
path (``ocgs_ros.mapping.evaluate.mapping_frame`` + ``build_scene_map``), given the same simulated
frames and seed, build the same map: the same Gaussians and identical objects.

Why exact equality can hold: the node receives the simulator's own numbers (uint8 image, float64
K, float32 points); its poses come through TF as quaternions, which changes them by ~1e-16, far
below the float32 resolution the map computes in. Each frame waits for its ``~/objects`` before the
next is sent, so the newest-wins worker drops nothing.
"""
from __future__ import annotations

import yaml
from conftest import spin_until

from ocgs_ros.mapping.config import MappingConfig
from ocgs_ros.mapping.evaluate import build_scene_map, mapping_frame
from ocgs_ros.mapping.pipeline import ObjectMappingPipeline
from ocgs_ros.ros import conversions, qos
from ocgs_ros.ros.sim_messages import SimStream, make_world
from ocgs_ros.settings import from_flat

NS = 1_000_000_000
START_NS = 1_700_000_000 * NS
FRAME_INDICES = list(range(0, 48, 6))  # one orbit of the tabletop_gocl world, every 6th frame
#: the pipeline both sides run: small and fast, the shipped GOCL, seed 3
PIPELINE = {"view.process_width": 64, "view.process_height": 48, "view.max_points": 1500,
            "mapper.iterations_per_frame": 2, "mapper.grow_max_points": 800, "seed": 3,
            # the node's frames are live: no time budget, objects within every frame, background
            # and new Gaussians started and every pixel and keyframe fitted as offline ones are
            "mapper.frame_budget_ms": 0.0, "objects_period_s": 0.0, "mapper.grow_background_margin": 0.0,
            "mapper.live_init_opacity": 0.0, "mapper.live_pixel_stride": 1, "mapper.live_keyframe_rotation": False,
            "mapper.live_grow_covered_sigma": 0.0}
#: the node's own settings: every Gaussian in ~/gaussians after every frame; TF may lag the sensors
NODE = {"publish_gaussians_period_s": 0.0, "max_published_gaussians": 1_000_000, "tf_timeout_s": 2.0}
SENSOR_TOPICS = ("/camera/image_raw", "/camera/camera_info", "/lidar/points")


def nested(values: dict) -> dict:
    """Dotted names -> nested YAML keys (how a parameter file writes them)."""
    out: dict = {}
    for name, value in values.items():
        *parents, leaf = name.split(".")
        level = out
        for part in parents:
            level = level.setdefault(part, {})
        level[leaf] = value
    return out


def test_the_node_and_the_evaluator_build_the_same_map(ros_node, node_process, tmp_path):
    from ocgs_ros_interfaces.msg import ObjectInstanceArray
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2
    from tf2_msgs.msg import TFMessage

    world = make_world("tabletop_gocl", 7, 160, 120, 16, 512)
    stream = SimStream(world)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"/**/object_mapping_node": {"ros__parameters": nested({**NODE, **PIPELINE})}}))
    node = node_process("ocgs_ros.nodes.object_mapping_node", "--ros-args", "--params-file", str(params))

    arrays, clouds = [], []
    ros_node.create_subscription(ObjectInstanceArray, "/object_mapping_node/objects", arrays.append, qos.LATCHED)
    ros_node.create_subscription(PointCloud2, "/object_mapping_node/gaussians", clouds.append, qos.LATCHED)
    publishers = {"/tf": ros_node.create_publisher(TFMessage, "/tf", qos.TF),
                  "/tf_static": ros_node.create_publisher(TFMessage, "/tf_static", qos.TF_STATIC)}
    for topic, msg_type in zip(SENSOR_TOPICS, (Image, CameraInfo, PointCloud2)):
        publishers[topic] = ros_node.create_publisher(msg_type, topic, qos.SENSOR_DATA)
    # the node subscribes its inputs last in its constructor: when they match, it is ready
    assert spin_until(ros_node, lambda: all(publishers[t].get_subscription_count() >= 1 for t in SENSOR_TOPICS),
                      60.0, processes=[node]), node.output()
    for topic, msg in stream.static_messages(conversions.ns_to_stamp(START_NS)):
        if topic == "/tf_static":
            publishers[topic].publish(msg)

    for index in FRAME_INDICES:
        stamp_ns = START_NS + index * NS // 5
        sensors = stream.frame_messages(index, conversions.ns_to_stamp(stamp_ns)).sensors

        def mapped() -> bool:
            return any(conversions.stamp_to_ns(a.header.stamp) == stamp_ns for a in arrays)

        # sensor data is best effort: resend a frame whose output does not come (the node's
        # synchronizer never emits one stamp twice, so a resend cannot integrate it twice)
        for _attempt in range(3):
            for topic, msg in sensors:
                publishers[topic].publish(msg)
            if spin_until(ros_node, mapped, 10.0, processes=[node]):
                break
        assert mapped(), f"frame {index}: no ~/objects\n{node.output()}"
    stamp_ns = START_NS + FRAME_INDICES[-1] * NS // 5
    assert spin_until(ros_node, lambda: any(conversions.stamp_to_ns(c.header.stamp) == stamp_ns for c in clouds),
                      10.0, processes=[node]), node.output()
    node_objects = next(a for a in arrays if conversions.stamp_to_ns(a.header.stamp) == stamp_ns).objects
    node_cloud = next(c for c in clouds if conversions.stamp_to_ns(c.header.stamp) == stamp_ns)
    assert node.alive(), node.output()

    pipeline = ObjectMappingPipeline(from_flat(MappingConfig, PIPELINE))
    update = build_scene_map(pipeline, [mapping_frame(world, index) for index in FRAME_INDICES])
    assert update is not None and update.frames_integrated == len(FRAME_INDICES)
    evaluator_objects = conversions.map_objects_to_msg(update.objects, "map", conversions.ns_to_stamp(stamp_ns)).objects

    # the same Gaussians, point for point
    node_means, evaluator_means = conversions.pointcloud2_to_xyz(node_cloud), pipeline.snapshot().means
    assert len(node_means) == len(evaluator_means) == update.num_gaussians, (len(node_means), len(evaluator_means))
    assert len(node_means) > 500 and (node_means == evaluator_means).all()
    # identical objects: ids, codebook entries, boxes (pose and size), Gaussian counts, colours
    assert len(evaluator_objects) > 0, "the map of a table with objects must yield objects"
    assert [(o.id, o.codebook_entry) for o in node_objects] == [(o.id, o.codebook_entry) for o in evaluator_objects]
    assert list(node_objects) == list(evaluator_objects)
