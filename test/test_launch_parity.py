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
    assert [p.executable for p in plan] == ["sim_publisher", "bag_record"]
    assert plan[1].overrides["output"] == str(tmp_path / "sensors_bag")

    arguments, _, _ = bringup.parse_arguments(["bag:=/data/x", "use_sim_time:=true"])
    plan = bringup.plan_nodes(arguments, tmp_path)
    assert [p.executable for p in plan] == ["bag_play"]
    assert plan[0].overrides == {"use_sim_time": True, "bag": "/data/x", "publish_clock": True}

    with pytest.raises(SystemExit):
        bringup.parse_arguments(["nonsense:=1"])
    with pytest.raises(SystemExit):
        bringup.parse_arguments(["sim=true"])
    with pytest.raises(ValueError, match="true/false"):
        bringup.plan_nodes({**arguments, "bag": "", "sim": "maybe"}, tmp_path)
