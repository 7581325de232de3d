"""ros2 launch ocgs_ros mapping.launch.py [sim:=true] [bag:=PATH] [record:=true] [use_sim_time:=true]
    [namespace:=NS] [mapping:=true] [bev:=false] [image_topic:=...] [camera_info_topic:=...]
    [points_topic:=...] [image_topics:=[...]] [camera_info_topics:=[...]] [rviz:=false] ...

Starts the ocgs_ros nodes with one parameter YAML. Several cameras (bev_perception_node's
``image_topics`` / ``camera_info_topics`` lists) come from that YAML (``config:=config/driving_surround.yaml``
for the six-camera surround rig) or from ``image_topics:=[/cam_front/image_raw,...]`` /
``camera_info_topics:=[...]``, one topic per camera in the model's order. The pip-only equivalent is the ``bringup``
command (ocgs_ros/bringup.py), which declares the same arguments and starts the same executables
with the same YAML; test/test_launch_parity.py keeps the two in step.

DDS is left to the user: nothing here sets discovery range or a Fast DDS profile, so sensors,
RViz or other robots on other computers stay visible. (Our scripts and tests keep DDS on loopback
by sourcing scripts/ros_env.sh.)
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, GroupAction, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import (AndSubstitution, EqualsSubstitution, LaunchConfiguration, NotEqualsSubstitution,
                                  PathJoinSubstitution)
from launch_ros.actions import Node, PushRosNamespace
from launch_ros.parameter_descriptions import ParameterValue

from ocgs_ros.bringup import CAMERA_LIST_ARGUMENTS, LAUNCH_ARGUMENTS, SENSOR_REMAPS, camera_list_overrides, default_output_dir

PACKAGE = "ocgs_ros"


def _text(name: str) -> ParameterValue:
    """A launch argument as a string parameter: without the type, launch_ros reads the value as
    YAML (``bag:=2024_01_01`` would become the integer 20240101)."""
    return ParameterValue(LaunchConfiguration(name), value_type=str)


def _flag(name: str) -> ParameterValue:
    return ParameterValue(LaunchConfiguration(name), value_type=bool)


def _bev_node(context, config, use_sim_time, sensor_remaps):
    """bev_perception_node, with the camera lists of ``image_topics:=`` / ``camera_info_topics:=``:
    a list is a parameter value, not a remapping, and its length is known only once the arguments
    are, so the node is built here, at launch time (parsed by the bring-up's own rule, not eval)."""
    camera_lists = camera_list_overrides({name: LaunchConfiguration(name).perform(context)
                                          for name in CAMERA_LIST_ARGUMENTS})
    return [Node(
        package=PACKAGE, executable="bev_perception_node", name="bev_perception_node", output="screen",
        parameters=[config, {"use_sim_time": use_sim_time, **camera_lists}], remappings=sensor_remaps,
        condition=IfCondition(LaunchConfiguration("bev")),
    )]


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory(PACKAGE)
    config = LaunchConfiguration("config")
    use_sim_time = _flag("use_sim_time")
    # default sensor topic -> the topic named by its launch argument (identity unless remapped)
    sensor_remaps = [(default, LaunchConfiguration(name)) for name, default in SENSOR_REMAPS.items()]

    # The argument list is the bring-up's own, so both entry points accept the same arguments.
    defaults = {"config": os.path.join(share, "config", "ocgs.yaml"), "output": default_output_dir()}
    arguments = [
        DeclareLaunchArgument(name, default_value=defaults.get(name, default), description=description)
        for name, (default, description) in LAUNCH_ARGUMENTS.items()
    ]

    # Conditions compare the arguments as text (no PythonExpression: a path with a quote stays a path).
    have_bag = NotEqualsSubstitution(LaunchConfiguration("bag"), "")
    simulate = AndSubstitution(EqualsSubstitution(LaunchConfiguration("bag"), ""), LaunchConfiguration("sim"))

    nodes = [
        Node(
            package=PACKAGE, executable="bag_play", name="bag_play", output="screen",
            parameters=[config, {"use_sim_time": use_sim_time, "bag": _text("bag"), "publish_clock": use_sim_time}],
            condition=IfCondition(have_bag),
        ),
        Node(
            package=PACKAGE, executable="sim_publisher", name="sim_publisher", output="screen",
            parameters=[config, {"use_sim_time": use_sim_time, "world": _text("world"),
                                 "publish_clock": use_sim_time}],
            condition=IfCondition(simulate),
        ),
        Node(
            package=PACKAGE, executable="bag_record", name="bag_record", output="screen",
            parameters=[config, {"use_sim_time": use_sim_time,
                                 "output": ParameterValue(PathJoinSubstitution([LaunchConfiguration("output"),
                                                                                "sensors_bag"]), value_type=str)}],
            condition=IfCondition(LaunchConfiguration("record")),
        ),
        Node(
            package=PACKAGE, executable="object_mapping_node", name="object_mapping_node", output="screen",
            parameters=[config, {"use_sim_time": use_sim_time}], remappings=sensor_remaps,
            condition=IfCondition(LaunchConfiguration("mapping")),
        ),
        OpaqueFunction(function=_bev_node, args=[config, use_sim_time, sensor_remaps]),
    ]
    # Every node under the namespace argument; the YAML's /**/<node> sections still match them.
    robot = GroupAction([PushRosNamespace(LaunchConfiguration("namespace")), *nodes])
    # RViz outside the namespace: config/ocgs.rviz names the topics absolutely (/object_mapping_node/...);
    # under a namespace, point its displays at /<namespace>/... in RViz.
    visualisation = [
        Node(package="rviz2", executable="rviz2", name="rviz2", output="screen",
             arguments=["-d", os.path.join(share, "config", "ocgs.rviz")],
             parameters=[{"use_sim_time": use_sim_time}], condition=IfCondition(LaunchConfiguration("rviz"))),
    ]
    return LaunchDescription(arguments + [robot] + visualisation)
