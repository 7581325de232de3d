"""ros2 launch ocgs_ros mapping.launch.py [sim:=true] [bag:=PATH] [record:=true] [use_sim_time:=true] ...

Starts the ocgs_ros nodes with one parameter YAML. The pip-only equivalent is the ``bringup``
command (ocgs_ros/bringup.py), which declares the same arguments and starts the same executables
with the same YAML; test/test_launch_parity.py keeps the two in step.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, PythonExpression
from launch_ros.actions import Node

from ocgs_ros.bringup import LAUNCH_ARGUMENTS

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
    ]

    # DDS stays on this machine unless the user has chosen otherwise.
    environment = [
        SetEnvironmentVariable("ROS_AUTOMATIC_DISCOVERY_RANGE",
                               os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")),
    ]
    return LaunchDescription(environment + arguments + nodes)
