"""ros2 launch ocgs_ros mapping.launch.py [sim:=true] [bag:=PATH] [record:=true] [use_sim_time:=true]
    [mapping:=true] [bev:=false] [image_topic:=...] [camera_info_topic:=...] [points_topic:=...] [rviz:=false] ...

Starts the ocgs_ros nodes with one parameter YAML. The pip-only equivalent is the ``bringup``
command (ocgs_ros/bringup.py), which declares the same arguments and starts the same executables
with the same YAML; test/test_launch_parity.py keeps the two in step.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, PythonExpression
from launch_ros.actions import Node

from ocgs_ros.bringup import LAUNCH_ARGUMENTS, SENSOR_REMAPS

PACKAGE = "ocgs_ros"


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory(PACKAGE)
    config = LaunchConfiguration("config")
    use_sim_time = LaunchConfiguration("use_sim_time")
    bag = LaunchConfiguration("bag")
    sim = LaunchConfiguration("sim")
    world = LaunchConfiguration("world")
    record = LaunchConfiguration("record")
    output = LaunchConfiguration("output")
    mapping = LaunchConfiguration("mapping")
    bev = LaunchConfiguration("bev")
    rviz = LaunchConfiguration("rviz")
    # default sensor topic -> the topic named by its launch argument (identity unless remapped)
    sensor_remaps = [(default, LaunchConfiguration(name)) for name, default in SENSOR_REMAPS.items()]

    # The argument list is the bring-up's own, so both entry points accept the same arguments.
    defaults = {"config": os.path.join(share, "config", "ocgs.yaml"), "output": "runs/launch"}
    arguments = [
        DeclareLaunchArgument(name, default_value=defaults.get(name, default), description=description)
        for name, (default, description) in LAUNCH_ARGUMENTS.items()
    ]

    have_bag = PythonExpression(["'", bag, "' != ''"])
    simulate = PythonExpression(["'", bag, "' == '' and '", sim, "'.lower() in ('true', '1')"])

    nodes = [
        Node(
            package=PACKAGE, executable="bag_play", name="bag_play", output="screen",
            parameters=[config, {"use_sim_time": use_sim_time, "bag": bag, "publish_clock": use_sim_time}],
            condition=IfCondition(have_bag),
        ),
        Node(
            package=PACKAGE, executable="sim_publisher", name="sim_publisher", output="screen",
            parameters=[config, {"use_sim_time": use_sim_time, "world": world, "publish_clock": use_sim_time}],
            condition=IfCondition(simulate),
        ),
        Node(
            package=PACKAGE, executable="bag_record", name="bag_record", output="screen",
            parameters=[config, {"use_sim_time": use_sim_time,
                                 "output": PathJoinSubstitution([output, "sensors_bag"])}],
            condition=IfCondition(record),
        ),
        Node(
            package=PACKAGE, executable="object_mapping_node", name="object_mapping_node", output="screen",
            parameters=[config, {"use_sim_time": use_sim_time}], remappings=sensor_remaps,
            condition=IfCondition(mapping),
        ),
        Node(
            package=PACKAGE, executable="bev_perception_node", name="bev_perception_node", output="screen",
            parameters=[config, {"use_sim_time": use_sim_time}], remappings=sensor_remaps,
            condition=IfCondition(bev),
        ),
    ]
    visualisation = [
        ExecuteProcess(cmd=["rviz2", "-d", os.path.join(share, "config", "ocgs.rviz")], output="screen",
                       condition=IfCondition(rviz)),
    ]

    # DDS stays on this machine unless the user has chosen otherwise.
    environment = [
        SetEnvironmentVariable("ROS_AUTOMATIC_DISCOVERY_RANGE",
                               os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")),
        SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE",
                               os.environ.get("FASTDDS_DEFAULT_PROFILES_FILE",
                                              os.path.join(share, "config", "fastdds_localhost.xml"))),
    ]
    return LaunchDescription(environment + arguments + nodes + visualisation)
