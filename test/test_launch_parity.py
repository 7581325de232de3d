"""mapping.launch.py and the pip-only bring-up start the same executables with the same YAML and
accept the same arguments (the launch file itself is only importable in a full ROS 2 install)."""
from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

from ocgs_ros import bringup

REPO = Path(__file__).resolve().parent.parent
LAUNCH_FILE = REPO / "launch" / "mapping.launch.py"


def _node_calls(tree: ast.AST) -> list[dict[str, ast.AST]]:
    calls = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Node":
            calls.append({kw.arg: kw.value for kw in node.keywords})
    return calls


def test_launch_and_bringup_start_the_same_executables_with_the_config():
    calls = _node_calls(ast.parse(LAUNCH_FILE.read_text()))
    executables = {ast.literal_eval(c["executable"]) for c in calls}
    assert executables == set(bringup.NODE_CLASSES)
    for call in calls:
        # every node gets the shared parameter file first, then its overrides
        params = call["parameters"]
        assert isinstance(params, ast.List) and getattr(params.elts[0], "id", None) == "config"


def test_every_executable_is_a_console_script_with_a_node_class():
    setup_text = (REPO / "setup.py").read_text()
    for executable, target in bringup.NODE_CLASSES.items():
        assert f'"{executable}":' in setup_text, f"{executable} missing from setup.py entry points"
        module_name, class_name = target.split(":")
        assert hasattr(importlib.import_module(module_name), class_name)


def test_launch_file_declares_the_bringup_arguments():
    assert "LAUNCH_ARGUMENTS.items()" in LAUNCH_FILE.read_text()
    assert set(bringup.LAUNCH_ARGUMENTS) >= {"config", "use_sim_time", "sim", "bag", "record", "output", "world"}


@pytest.mark.skipif(importlib.util.find_spec("launch_ros") is None, reason="launch/launch_ros not installed (pip-only)")
def test_launch_description_builds():  # pragma: no cover - needs a ROS 2 install
    spec = importlib.util.spec_from_file_location("mapping_launch", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    assert len(description.entities) > len(bringup.LAUNCH_ARGUMENTS)


def test_bringup_arguments_and_plan(tmp_path):
    arguments, duration, ros_args = bringup.parse_arguments(
        ["sim:=true", "record:=true", "duration:=2.5", "--ros-args", "-r", "a:=b"])
    assert duration == 2.5 and ros_args == ["--ros-args", "-r", "a:=b"]
    plan = bringup.plan_nodes(arguments, tmp_path)
    assert [p.executable for p in plan] == ["sim_publisher", "bag_record", "object_mapping_node"]
    assert plan[1].overrides["output"] == str(tmp_path / "sensors_bag")
    assert plan[2].remappings == [] and plan[2].cli_args() == []

    arguments, _, _ = bringup.parse_arguments(["bag:=/data/x", "use_sim_time:=true", "mapping:=false"])
    plan = bringup.plan_nodes(arguments, tmp_path)
    assert [p.executable for p in plan] == ["bag_play"]
    assert plan[0].overrides == {"use_sim_time": True, "bag": "/data/x", "publish_clock": True}

    arguments, _, _ = bringup.parse_arguments(["world:=driving", "mapping:=false", "bev:=true",
                                               "points_topic:=/velodyne_points"])
    plan = bringup.plan_nodes(arguments, tmp_path)
    assert [p.executable for p in plan] == ["sim_publisher", "bev_perception_node"]
    assert plan[1].remappings == [("/lidar/points", "/velodyne_points")]
    assert plan[1].cli_args() == ["--ros-args", "-r", "/lidar/points:=/velodyne_points"]

    with pytest.raises(SystemExit):
        bringup.parse_arguments(["nonsense:=1"])
    with pytest.raises(SystemExit):
        bringup.parse_arguments(["sim=true"])
    with pytest.raises(ValueError, match="true/false"):
        bringup.plan_nodes({**arguments, "bag": "", "sim": "maybe"}, tmp_path)


def test_perception_nodes_get_the_sensor_remaps_and_their_own_switches_in_the_launch_file():
    text = LAUNCH_FILE.read_text()
    calls = {ast.literal_eval(c["executable"]): c for c in _node_calls(ast.parse(text))}
    for executable, switch in (("object_mapping_node", "mapping"), ("bev_perception_node", "bev")):
        call = calls[executable]
        assert getattr(call["remappings"], "id", None) == "sensor_remaps"
        assert ast.unparse(call["condition"]) == f"IfCondition({switch})"
    assert "for name, default in SENSOR_REMAPS.items()" in text
    assert set(bringup.SENSOR_REMAPS) <= set(bringup.LAUNCH_ARGUMENTS)
    assert {"mapping", "bev", "rviz"} <= set(bringup.LAUNCH_ARGUMENTS)
    # rviz:=true starts rviz2 with the package's display config, which exists
    assert '"rviz2", "-d"' in text and '"ocgs.rviz"' in text and "IfCondition(rviz)" in text
    assert (REPO / "config" / "ocgs.rviz").is_file()


def test_the_yaml_sets_every_declared_parameter_of_the_perception_nodes_with_a_comment():
    import yaml

    from ocgs_ros.nodes import bev_perception_node, object_mapping_node

    text = (REPO / "config" / "ocgs.yaml").read_text()
    config = yaml.safe_load(text)
    for name, module in (("object_mapping_node", object_mapping_node), ("bev_perception_node", bev_perception_node)):
        values = config[name]["ros__parameters"]
        assert set(values) == set(module.PARAMS), name
        section = text.split(f"\n{name}:\n", 1)[1].split("\n\n", 1)[0]
        for key in values:
            line = next(line for line in section.splitlines() if line.strip().startswith(f"{key}:"))
            assert "#" in line, f"{name}.{key} has no comment in config/ocgs.yaml"
        for key, param in module.PARAMS.items():  # the YAML's values pass the node's own checks
            assert param.check is None or key.endswith("checkpoint") or param.check(values[key]) is None, key
