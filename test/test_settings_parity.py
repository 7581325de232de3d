"""One source for every setting: the perception nodes declare exactly their config dataclasses'
settings, with the dataclasses' defaults and descriptions; config/ocgs.yaml is checked against the
dataclasses by value (the check users get too: ``ocgs_ros.ros.params.params_file_problems``)."""
from __future__ import annotations

import importlib

import pytest
import yaml
from conftest import REPO

from ocgs_ros.bringup import NODE_CLASSES
from ocgs_ros.ros.params import ROS_BUILTIN_PARAMETERS, params_file_problems
from ocgs_ros.mapping.config import MappingConfig
from ocgs_ros.settings import from_flat, iter_settings, parse_set_options

CONFIG = REPO / "config" / "ocgs.yaml"
PERCEPTION_NODES = ("object_mapping_node", "bev_perception_node")


def node_class(executable: str):
    module_name, class_name = NODE_CLASSES[executable].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def node_configs() -> dict:
    """{node name: its config classes, or None where a node declares none (not checked)}."""
    return {name: getattr(node_class(name), "CONFIG_CLASSES", None) or None for name in NODE_CLASSES}


def settings_of(executable: str) -> dict:
    return {item.name: item for cls in node_class(executable).CONFIG_CLASSES for item in iter_settings(cls)}


def section(document: dict, node_name: str) -> dict:
    """The node's section, whichever key form the file uses (bare name or ``/**/name``)."""
    keys = [key for key in document if str(key).rstrip("/").rsplit("/", 1)[-1] == node_name]
    assert len(keys) == 1, f"expected one section for {node_name}, found {keys}"
    return document[keys[0]]["ros__parameters"]


def section_lines(text: str, node_name: str) -> list[str]:
    """The lines of the node's section in the YAML text (up to the next top-level key)."""
    lines, inside = [], False
    for line in text.splitlines():
        if line and not line[0].isspace() and not line.startswith("#"):
            inside = line.split("#", 1)[0].strip().rstrip(":").rstrip("/").rsplit("/", 1)[-1] == node_name
        elif inside:
            lines.append(line)
    return lines


def flat(mapping: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in mapping.items():
        out.update(flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return out


@pytest.mark.parametrize("executable", PERCEPTION_NODES)
def test_declared_parameters_are_the_dataclass_settings_with_their_defaults(ros_context, executable):
    expected = settings_of(executable)
    node = node_class(executable)(context=ros_context)  # the shipped checkpoints, every default
    try:
        declared = set(node._parameters) - set(ROS_BUILTIN_PARAMETERS)
        assert declared == set(expected)
        for name, item in expected.items():
            value = node.get_parameter(name).value
            default = list(item.default) if isinstance(item.default, tuple) else item.default
            assert value == default and type(value) is type(default), (name, value, default)
            assert node.describe_parameter(name).description == item.description, name
    finally:
        node.destroy_node()


def test_the_yaml_passes_the_check_and_states_every_perception_setting_at_its_default():
    """The package YAML restates every perception setting with a comment, for users to edit; in the
    repository it must agree with the dataclass, or there would be two defaults."""
    assert params_file_problems(CONFIG, node_configs()) == []
    text = CONFIG.read_text()
    document = yaml.safe_load(text)
    for executable in PERCEPTION_NODES:
        values = flat(section(document, executable))
        lines = section_lines(text, executable)
        expected = settings_of(executable)
        assert set(values) == set(expected), executable
        for name, item in expected.items():
            default = list(item.default) if isinstance(item.default, tuple) else item.default
            assert values[name] == default, f"{executable} {name}: YAML {values[name]!r}, dataclass {default!r}"
            leaf = name.rsplit(".", 1)[-1]
            assert any(line.strip().startswith(f"{leaf}:") and "#" in line for line in lines), \
                f"{executable}.{name} has no comment in config/ocgs.yaml"


@pytest.mark.parametrize("name", ["tabletop", "outdoor"])
def test_the_scene_parameter_sets_pass_the_check(name):
    """config/tabletop.yaml and config/outdoor.yaml (object scales; test/test_outdoor_objects.py)."""
    assert params_file_problems(REPO / "config" / f"{name}.yaml", node_configs()) == []


def write(tmp_path, text: str):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("body, expected", [
    ("    view: {process_widht: 64}\n", "unknown parameter 'view.process_widht'"),
    ("    sync_slop_s: 0\n", "'sync_slop_s' must be of type float"),  # ROS refuses an int for a double
    ("    view: {process_width: abc}\n", "'view.process_width' must be of type int"),
    ("    mapper: {iterations_per_frame: 0}\n", "'mapper.iterations_per_frame' must be > 0"),
    ("    view: {process_width: 64, process_height: 0}\n", "set both process_width and process_height"),
    ("    publish_identity_image: 1\n", "'publish_identity_image' must be of type bool"),
    ("    use_sim_time: yes please\n", "'use_sim_time' must be of type bool"),
])
def test_a_bad_value_or_unknown_key_is_named(tmp_path, body, expected):
    for key in ("object_mapping_node", "/**/object_mapping_node"):
        problems = params_file_problems(write(tmp_path, f"{key}:\n  ros__parameters:\n{body}"), node_configs())
        assert len(problems) == 1 and expected in problems[0], problems


def test_sections_lists_and_wildcards(tmp_path):
    configs = node_configs()
    good = ("/**:\n  ros__parameters:\n    use_sim_time: true\n"
            "/robot1/bev_perception_node:\n  ros__parameters:\n"
            "    image_topics: [/a/image, /b/image]\n    camera_info_topics: [/a/info, /b/info]\n")
    assert params_file_problems(write(tmp_path, good), configs) == []
    bad = {
        "object_maping_node:\n  ros__parameters:\n    seed: 1\n": "no node named 'object_maping_node'",
        "object_mapping_node:\n  seed: 1\n": "ros__parameters",
        "bev_perception_node:\n  ros__parameters:\n    image_topics: [/a, /b]\n": "2 image_topics but 1",
        "bev_perception_node:\n  ros__parameters:\n    image_topics: []\n": "non-empty list of str",
        "/**:\n  ros__parameters:\n    sync_queue_size: 0\n": "'sync_queue_size' must be > 0",
        "not: [a, parameter, file": "cannot be read",
    }
    for text, expected in bad.items():
        problems = params_file_problems(write(tmp_path, text), configs)
        assert problems and all(expected in p for p in problems), (text, problems)


def test_nested_yaml_keys_reach_the_node_as_dotted_parameters(ros_context, tmp_path):
    """The real rcl parameter-file parser, a namespaced section key, the config the node builds."""
    from ocgs_ros.nodes.object_mapping_node import ObjectMappingNode

    path = write(tmp_path, "/**/object_mapping_node:\n  ros__parameters:\n    map_frame: world\n"
                           "    gocl: {checkpoint: none}\n    view: {process_width: 64, process_height: 48}\n"
                           "    objects:\n      link_radius: 0.05\n")
    assert params_file_problems(path, node_configs()) == []
    node = ObjectMappingNode(context=ros_context, cli_args=["--ros-args", "--params-file", str(path)])
    try:
        assert node.settings.map_frame == "world" and not node.pipeline.has_identity
        assert (node.config.view.process_width, node.config.view.process_height) == (64, 48)
        assert node.config.objects.link_radius == 0.05 and node.config.mapper.iterations_per_frame == 8
    finally:
        node.destroy_node()


def test_set_options_read_values_as_a_parameter_file_gives_them():
    assert parse_set_options(["mapper.live_init_opacity=0.3", "objects.unknown_objects=false", "seed=3",
                              "objects_period_s=1e-9", "gocl.checkpoint=shipped"]) == {
        "mapper.live_init_opacity": 0.3, "objects.unknown_objects": False, "seed": 3,
        "objects_period_s": 1e-9, "gocl.checkpoint": "shipped"}
    with pytest.raises(ValueError, match="expected NAME=VALUE"):
        parse_set_options(["mapper.live_init_opacity"])
    # nan and inf are no setting's value: they stay text, which the setting's type check refuses
    assert parse_set_options(["gocl.checkpoint=inf", "mapper.frame_budget_ms=nan"]) == {
        "gocl.checkpoint": "inf", "mapper.frame_budget_ms": "nan"}
    with pytest.raises((ValueError, TypeError)):
        from_flat(MappingConfig, parse_set_options(["mapper.frame_budget_ms=nan"]))
