"""mapping.launch.py and the pip-only bring-up start the same executables with the same YAML and
accept the same arguments (the launch file itself is only importable in a full ROS 2 install, so it
is checked as source); the launch file types its parameters, evaluates no user text as Python and
leaves DDS to the user; config/ocgs.yaml applies under any namespace."""
from __future__ import annotations

import ast
import dataclasses
import importlib
import importlib.util
import re
from pathlib import Path

import pytest
import yaml

from ocgs_ros import bringup
from ocgs_ros.settings import iter_settings

REPO = Path(__file__).resolve().parent.parent
LAUNCH_FILE = REPO / "launch" / "mapping.launch.py"
CONFIG = REPO / "config" / "ocgs.yaml"
PACKAGE = "ocgs_ros"


def _tree() -> ast.AST:
    return ast.parse(LAUNCH_FILE.read_text())


def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    return [node for node in ast.walk(tree)
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == name]


def _node_calls(tree: ast.AST) -> list[dict[str, ast.AST]]:
    """keyword → value of every ``Node(...)`` of our package (rviz2 is the other one)."""
    calls = [{kw.arg: kw.value for kw in call.keywords} for call in _calls(tree, "Node")]
    return [c for c in calls if _is_name(c["package"], "PACKAGE")]


def _is_name(node: ast.AST, name: str) -> bool:
    return isinstance(node, ast.Name) and node.id == name


def _launch_helpers(tree: ast.AST) -> dict[str, ast.FunctionDef]:
    return {f.name: f for f in tree.body if isinstance(f, ast.FunctionDef)}


def _parameter_value_type(value: ast.AST, helpers: dict[str, ast.FunctionDef]) -> str | None:
    """The ``value_type`` a parameter value is given: directly ``ParameterValue(..., value_type=T)``,
    or through a one-line helper of the launch file (``_text(name)`` / ``_flag(name)``) or a
    variable bound to one of those in generate_launch_description."""
    if isinstance(value, ast.Call) and getattr(value.func, "id", None) == "ParameterValue":
        kinds = [kw.value for kw in value.keywords if kw.arg == "value_type"]
        return ast.unparse(kinds[0]) if kinds else None
    if isinstance(value, ast.Call) and getattr(value.func, "id", None) in helpers:
        returned = [n.value for n in ast.walk(helpers[value.func.id]) if isinstance(n, ast.Return)]
        return _parameter_value_type(returned[0], helpers) if len(returned) == 1 else None
    if isinstance(value, ast.Name):
        bindings = [n.value for n in ast.walk(helpers["generate_launch_description"])
                    if isinstance(n, ast.Assign) and any(_is_name(t, value.id) for t in n.targets)]
        return _parameter_value_type(bindings[0], helpers) if len(bindings) == 1 else None
    return None


def test_launch_and_bringup_start_the_same_executables_with_the_config():
    calls = _node_calls(_tree())
    executables = {ast.literal_eval(c["executable"]) for c in calls}
    assert executables == set(bringup.NODE_CLASSES)
    for call in calls:
        assert ast.literal_eval(call["name"]) == ast.literal_eval(call["executable"])
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
    assert set(bringup.LAUNCH_ARGUMENTS) >= {"config", "use_sim_time", "sim", "bag", "record", "output", "world",
                                             "namespace"}
    assert set(bringup.STRING_ARGUMENTS) | set(bringup.BOOLEAN_ARGUMENTS) == set(bringup.LAUNCH_ARGUMENTS)


def test_launch_file_leaves_dds_to_the_user_and_evaluates_no_user_text():
    text = LAUNCH_FILE.read_text()
    tree = _tree()
    names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)} | \
        {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) for alias in node.names}
    assert "PythonExpression" not in names, "a bag path with a quote would break a PythonExpression"
    assert "SetEnvironmentVariable" not in names
    for variable in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_LOCALHOST_ONLY", "FASTDDS_DEFAULT_PROFILES_FILE",
                     "FASTRTPS_DEFAULT_PROFILES_FILE", "RMW_IMPLEMENTATION", "ROS_DOMAIN_ID", "fastdds_localhost"):
        assert variable not in text, f"the launch file must not choose the user's DDS ({variable})"
    assert "os.environ" not in text
    # ... and neither does the bring-up: scripts/ros_env.sh and the test fixtures keep DDS on loopback
    bringup_text = Path(bringup.__file__).read_text()
    assert "ROS_AUTOMATIC_DISCOVERY_RANGE" not in bringup_text and "FASTDDS_DEFAULT_PROFILES_FILE" not in bringup_text
    env_script = (REPO / "scripts" / "ros_env.sh").read_text()
    assert "export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST" in env_script
    assert "export FASTDDS_DEFAULT_PROFILES_FILE=" in env_script
    for script in ("demo.sh", "test.sh"):
        assert ". scripts/ros_env.sh" in (REPO / "scripts" / script).read_text(), script


def test_launch_parameters_are_typed():
    tree = _tree()
    helpers = _launch_helpers(tree)
    expected = {"bag": "str", "world": "str", "output": "str", "use_sim_time": "bool", "publish_clock": "bool"}
    seen = set()
    for call in _node_calls(tree):
        for element in call["parameters"].elts[1:]:
            assert isinstance(element, ast.Dict)
            for key, value in zip(element.keys, element.values):
                if key is None:  # ``**camera_lists``: lists of topic names, checked below
                    assert _is_name(value, "camera_lists")
                    continue
                name = ast.literal_eval(key)
                value_type = _parameter_value_type(value, helpers)
                assert value_type == expected[name], f"{name}: value_type {value_type} (want {expected[name]})"
                seen.add(name)
    assert seen == set(expected)
    assert {"bag", "world", "output"} <= set(bringup.STRING_ARGUMENTS)


def test_the_bev_node_takes_the_camera_list_arguments_by_the_bringups_rule():
    tree = _tree()
    helper = _launch_helpers(tree)["_bev_node"]
    assert "camera_list_overrides(" in ast.unparse(helper) and "CAMERA_LIST_ARGUMENTS" in ast.unparse(helper)
    opaque = _calls(tree, "OpaqueFunction")
    assert len(opaque) == 1 and ast.unparse(opaque[0]).startswith("OpaqueFunction(function=_bev_node")
    assert set(bringup.CAMERA_LIST_ARGUMENTS) <= set(bringup.LAUNCH_ARGUMENTS) & set(bringup.STRING_ARGUMENTS)
    topics = "[/cam_front/image_raw, /cam_back/image_raw]"
    assert bringup.camera_list_overrides({"image_topics": topics, "camera_info_topics": ""}) == {
        "image_topics": ["/cam_front/image_raw", "/cam_back/image_raw"]}


def test_rviz_gets_use_sim_time_and_the_package_display_config():
    tree = _tree()
    calls = [{kw.arg: kw.value for kw in call.keywords} for call in _calls(tree, "Node")]
    rviz = [c for c in calls if isinstance(c["package"], ast.Constant) and c["package"].value == "rviz2"]
    assert len(rviz) == 1
    assert "use_sim_time" in ast.unparse(rviz[0]["parameters"])
    assert "'-d'" in ast.unparse(rviz[0]["arguments"]) and "'ocgs.rviz'" in ast.unparse(rviz[0]["arguments"])
    assert ast.unparse(rviz[0]["condition"]) == "IfCondition(LaunchConfiguration('rviz'))"
    assert (REPO / "config" / "ocgs.rviz").is_file()


def test_the_nodes_run_under_the_namespace_argument():
    tree = _tree()
    pushes = _calls(tree, "PushRosNamespace")
    assert len(pushes) == 1 and ast.unparse(pushes[0].args[0]) == "LaunchConfiguration('namespace')"
    group = _calls(tree, "GroupAction")
    assert len(group) == 1 and "PushRosNamespace" in ast.unparse(group[0].args[0]) \
        and "*nodes" in ast.unparse(group[0].args[0])


def test_launch_defaults_match_their_help():
    tree = _tree()
    defaults = next(n.value for n in ast.walk(tree) if isinstance(n, ast.Assign)
                    and any(_is_name(t, "defaults") for t in n.targets))
    overridden = {ast.literal_eval(k): ast.unparse(v) for k, v in zip(defaults.keys, defaults.values)}
    assert set(overridden) == {"config", "output"}
    assert "ocgs.yaml" in overridden["config"] and "config/ocgs.yaml" in bringup.LAUNCH_ARGUMENTS["config"][1]
    assert overridden["output"] == "default_output_dir()"
    assert "runs/<timestamp>" in bringup.LAUNCH_ARGUMENTS["output"][1]
    assert re.fullmatch(r"runs/\d{8}_\d{6}", bringup.default_output_dir())


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

    arguments, _, _ = bringup.parse_arguments(["bag:=2024_01_01", "use_sim_time:=true", "mapping:=false"])
    plan = bringup.plan_nodes(arguments, tmp_path)
    assert [p.executable for p in plan] == ["bag_play"]
    assert plan[0].overrides == {"use_sim_time": True, "bag": "2024_01_01", "publish_clock": True}

    arguments, _, _ = bringup.parse_arguments(["world:=driving", "mapping:=false", "bev:=true",
                                               "points_topic:=/velodyne_points", "namespace:=robot1"])
    plan = bringup.plan_nodes(arguments, tmp_path)
    assert [p.executable for p in plan] == ["sim_publisher", "bev_perception_node"]
    assert plan[1].remappings == [("/lidar/points", "/velodyne_points")]
    # the namespace as launch_ros passes it: a node-local __ns remap, before the topic remaps
    assert plan[1].cli_args() == ["--ros-args", "-r", "__ns:=/robot1", "-r", "/lidar/points:=/velodyne_points"]
    assert plan[0].cli_args() == ["--ros-args", "-r", "__ns:=/robot1"]

    for bad, message in ((["nonsense:=1"], "unknown launch argument 'nonsense'"), (["sim=true"], "key:=value"),
                         (["duration:=soon"], "duration must be a number"),
                         (["namespace:=robot 1"], "not a valid ROS namespace")):
        with pytest.raises(bringup.StartUpError, match=message):
            bringup.parse_arguments(bad)
    with pytest.raises(ValueError, match="true/false"):
        bringup.plan_nodes({**arguments, "bag": "", "sim": "maybe"}, tmp_path)
    with pytest.raises(bringup.StartUpError, match="rviz"):
        bringup.check_inputs({**arguments, "rviz": "perhaps"}, CONFIG)
    with pytest.raises(bringup.StartUpError, match="bag .* not found"):
        bringup.check_inputs({**arguments, "bag": str(tmp_path / "missing")}, CONFIG)
    with pytest.raises(bringup.StartUpError, match="parameter file .* not found"):
        bringup.check_inputs(arguments, tmp_path / "missing.yaml")


def test_perception_nodes_get_the_sensor_remaps_and_their_own_switches_in_the_launch_file():
    text = LAUNCH_FILE.read_text()
    calls = {ast.literal_eval(c["executable"]): c for c in _node_calls(_tree())}
    for executable, switch in (("object_mapping_node", "mapping"), ("bev_perception_node", "bev")):
        call = calls[executable]
        assert getattr(call["remappings"], "id", None) == "sensor_remaps"
        assert ast.unparse(call["condition"]) == f"IfCondition(LaunchConfiguration('{switch}'))"
    assert "for name, default in SENSOR_REMAPS.items()" in text
    assert set(bringup.SENSOR_REMAPS) <= set(bringup.LAUNCH_ARGUMENTS)
    assert {"mapping", "bev", "rviz"} <= set(bringup.LAUNCH_ARGUMENTS)


def _section_key(key: str) -> str:
    return str(key).rstrip("/").rsplit("/", 1)[-1]


def test_every_yaml_section_applies_under_any_namespace():
    """A bare node name matches only the root namespace: under PushRosNamespace('robot1') rcl
    would silently skip the section (test_bringup_errors.py checks a namespaced node reads it)."""
    document = yaml.safe_load(CONFIG.read_text())
    assert sorted(document) == sorted(f"/**/{name}" for name in bringup.NODE_CLASSES)


#: values config/ocgs.yaml deliberately sets away from the node's default (its comments say why)
DELIBERATE = {("bag_play", "start_delay_s"), ("bag_record", "topics")}


@pytest.mark.parametrize("executable", ["sim_publisher", "bag_play", "bag_record"])
def test_the_yaml_restates_the_source_nodes_defaults(executable):
    module_name, class_name = bringup.NODE_CLASSES[executable].split(":")
    (settings_cls,) = getattr(importlib.import_module(module_name), class_name).CONFIG_CLASSES
    assert dataclasses.is_dataclass(settings_cls)
    values = yaml.safe_load(CONFIG.read_text())[f"/**/{executable}"]["ros__parameters"]
    settings = {item.name: item for item in iter_settings(settings_cls)}
    assert set(values) <= set(settings), set(values) - set(settings)
    for name, value in values.items():
        default = settings[name].default
        default = list(default) if isinstance(default, tuple) else default
        if (executable, name) in DELIBERATE:
            assert value != default and (settings[name].check is None or settings[name].check(value) is None)
        else:
            assert value == default and type(value) is type(default), (name, value, default)
