"""Node parameters from the config dataclasses (:mod:`ocgs_ros.settings`): declared with their
descriptions and checks, read back into the config, and parameter files checked against them by
value."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import yaml
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.exceptions import (InvalidParameterTypeException, InvalidParameterValueException,
                              ParameterUninitializedException)
from rclpy.node import Node
from rclpy.parameter import Parameter

from ocgs_ros.settings import from_flat, iter_settings


def declare_config(node: Node, config_cls, prefix: str = ""):
    """Declare every :func:`ocgs_ros.settings.setting` of ``config_cls`` (nested ones with dotted
    names, as ROS 2 names nested YAML keys) with its description, and return the config built
    from the parameter values.

    Raises ValueError with one line naming every bad parameter: a failed check, a value of the
    wrong type (``process_width:=abc``), or one the config itself refuses.
    """
    return declare_configs(node, config_cls, prefix=prefix)[0]


def declare_configs(node: Node, *config_classes, prefix: str = "") -> tuple:
    """:func:`declare_config` for several config classes of one node (their setting names must not
    overlap); one ValueError line names the bad parameters of all of them at once."""
    configs, errors = [], []
    for config_cls in config_classes:
        config, problems = _declare(node, config_cls, prefix)
        configs.append(config)
        errors += problems
    if errors:
        raise ValueError(f"{node.get_name()}: invalid parameters: " + "; ".join(errors))
    return tuple(configs)


def _declare(node: Node, config_cls, prefix: str) -> tuple[Any, list[str]]:
    values: dict[str, Any] = {}
    errors: list[str] = []
    for item in iter_settings(config_cls):
        name = f"{prefix}{item.name}"
        descriptor = ParameterDescriptor(description=item.description)
        try:
            if isinstance(item.default, (list, tuple)) and len(item.default) == 0:
                # ROS cannot infer an array type from []: an empty default is a list of names
                # (bag_play's topics), declared as a string array; unset means the default.
                node.declare_parameter(name, Parameter.Type.STRING_ARRAY, descriptor)
                try:
                    value = node.get_parameter(name).value
                except ParameterUninitializedException:
                    value = item.default
            else:
                value = node.declare_parameter(name, _ros_value(item.default), descriptor).value
        except InvalidParameterTypeException as exc:
            errors.append(f"parameter '{name}' must be of type {type(item.default).__name__}"
                          f" (default {item.default!r}): {exc}")
            continue
        except InvalidParameterValueException as exc:
            errors.append(f"parameter '{name}': {exc}")
            continue
        values[item.name] = value
    if errors:
        return None, errors
    try:
        return from_flat(config_cls, values), []
    except (ValueError, TypeError) as exc:
        return None, [str(exc)]


def _ros_value(default: Any) -> Any:
    """ROS parameter types have no tuple: declare tuples as lists."""
    return list(default) if isinstance(default, tuple) else default


# -- parameter files --------------------------------------------------------------------------
#: parameters rclpy declares on every node by itself
ROS_BUILTIN_PARAMETERS = {"use_sim_time": False, "start_type_description_service": True}
_WILDCARDS = ("/**", "**", "/*", "*")


def params_file_problems(path, node_configs: dict[str, Sequence[type] | None]) -> list[str]:
    """Error lines for a ROS 2 parameter file checked by value against the nodes' config classes.

    ``node_configs`` maps each node name the file may address to the config dataclasses the node
    declares (None: a known node whose parameters are not checked). Section keys may be the bare
    node name or a node path (``/**/object_mapping_node``, ``/robot1/object_mapping_node``); a
    wildcard section (``/**``) applies to every node. Reported: a section for no known node, a
    section without ``ros__parameters``, an unknown parameter, a value of another type than the
    node would declare (ROS refuses ``1`` for a double), a failed check, and a combination the
    config refuses (``view.process_width`` without ``view.process_height``).
    """
    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        return [f"{path}: cannot be read: {' '.join(str(exc).split())}"]
    if not isinstance(document, dict):
        return [f"{path}: not a parameter file (expected node sections at the top level)"]
    errors: list[str] = []
    for key, section in document.items():
        where = f"{path}: section {key!r}"
        if not isinstance(section, dict) or set(section) != {"ros__parameters"} \
                or not isinstance(section["ros__parameters"], dict):
            errors.append(f"{where}: expected exactly one key 'ros__parameters' holding a mapping")
            continue
        values = _flatten(section["ros__parameters"])
        if str(key).strip() in _WILDCARDS:
            errors += _wildcard_problems(where, values, node_configs)
            continue
        node_name = str(key).rstrip("/").rsplit("/", 1)[-1]
        if node_name not in node_configs:
            errors.append(f"{where}: no node named {node_name!r} (known: {sorted(node_configs)})")
            continue
        if node_configs[node_name] is not None:
            errors += [f"{where}: {problem}" for problem in _values_problems(values, node_configs[node_name])]
    return errors


def _flatten(mapping: dict, prefix: str = "") -> dict[str, Any]:
    """Nested YAML keys -> dotted parameter names, as rcl reads a parameter file."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _known_settings(config_classes: Sequence[type]) -> dict[str, tuple[type, Any]]:
    """{dotted name: (its config class, default)} over the classes one node declares."""
    return {item.name: (cls, item.default) for cls in config_classes for item in iter_settings(cls)}


def _values_problems(values: dict[str, Any], config_classes: Sequence[type], unknown_ok: bool = False) -> list[str]:
    known = _known_settings(config_classes)
    errors: list[str] = []
    by_class: dict[type, dict[str, Any]] = {cls: {} for cls in config_classes}
    for name, value in values.items():
        if name in ROS_BUILTIN_PARAMETERS:
            problem = _type_problem(ROS_BUILTIN_PARAMETERS[name], value)
            if problem:
                errors.append(f"parameter '{name}' {problem}")
            continue
        if name not in known:
            if not unknown_ok:
                errors.append(f"unknown parameter '{name}'")
            continue
        cls, default = known[name]
        problem = _type_problem(default, value)
        if problem:
            errors.append(f"parameter '{name}' {problem}")
            continue
        by_class[cls][name] = value
    if errors:  # checks and the configs' own rules only see values of the right type
        return errors
    for cls, class_values in by_class.items():
        try:
            from_flat(cls, class_values)
        except (ValueError, TypeError) as exc:
            errors.append(str(exc))
    return errors


def _wildcard_problems(where: str, values: dict[str, Any], node_configs) -> list[str]:
    """A ``/**`` section reaches every node; each checks the names it declares, and a name no node
    declares is unknown."""
    checked = [classes for classes in node_configs.values() if classes is not None]
    errors = [f"{where}: {problem}" for classes in checked for problem in _values_problems(values, classes, True)]
    known = set(ROS_BUILTIN_PARAMETERS).union(*(_known_settings(classes) for classes in checked))
    if all(classes is not None for classes in node_configs.values()):
        errors += [f"{where}: parameter '{name}' is declared by no node" for name in sorted(set(values) - known)]
    return errors


def _type_problem(default: Any, value: Any) -> str | None:
    """The type rule rcl applies to an override of a parameter declared with ``default``."""
    if isinstance(default, (list, tuple)) and not default:
        # declared as a string array (see _declare); rcl reads `[]` as unset, i.e. the default
        if not isinstance(value, list) or not all(_same_type(str, v) for v in value):
            return f"must be a list of str, got {value!r}"
        return None
    if isinstance(default, (list, tuple)):
        element = type(default[0])
        # rcl cannot type an empty YAML list: `[]` would leave the default in place unannounced
        if not isinstance(value, list) or not value or not all(_same_type(element, v) for v in value):
            return f"must be a non-empty list of {element.__name__}, got {value!r}"
        return None
    if not _same_type(type(default), value):
        return f"must be of type {type(default).__name__} (default {default!r}), got {value!r}"
    return None


def _same_type(expected: type, value: Any) -> bool:
    if expected is bool or isinstance(value, bool):
        return expected is bool and isinstance(value, bool)
    return type(value) is expected
