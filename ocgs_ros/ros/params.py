"""Declaring node parameters with descriptions, defaults and validation in one place."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.exceptions import (InvalidParameterTypeException, InvalidParameterValueException,
                              ParameterUninitializedException)
from rclpy.node import Node
from rclpy.parameter import Parameter

from ocgs_ros.settings import from_flat, iter_settings


@dataclass(frozen=True)
class Param:
    """One node parameter: its default, what it means, and an optional check of its value.

    ``check`` returns an error text (or None when the value is fine); the node refuses to start
    with that text, naming the parameter.
    """

    default: Any
    description: str
    check: Callable[[Any], str | None] | None = None
    #: declare with this type when the default is None or an empty list (ROS infers types from defaults)
    type: Parameter.Type | None = None


def positive(value) -> str | None:
    return None if value > 0 else f"must be > 0, got {value}"


def non_negative(value) -> str | None:
    return None if value >= 0 else f"must be >= 0, got {value}"


def one_of(*choices: str) -> Callable[[Any], str | None]:
    def check(value) -> str | None:
        return None if value in choices else f"must be one of {list(choices)}, got {value!r}"

    return check


def declare_and_read(node: Node, spec: dict[str, Param]) -> dict[str, Any]:
    """Declare every parameter in ``spec`` (with its description) and return the validated values.

    Raises ValueError naming every invalid parameter, so a node fails at start-up with one clear
    message instead of misbehaving later.
    """
    values: dict[str, Any] = {}
    errors: list[str] = []
    for name, param in spec.items():
        descriptor = ParameterDescriptor(description=param.description)
        if param.type is not None and (param.default is None or param.default == []):
            # Declared by type (ROS cannot infer a type from None or []); unset means the default.
            node.declare_parameter(name, param.type, descriptor)
            try:
                value = node.get_parameter(name).value
            except ParameterUninitializedException:
                value = param.default
        else:
            value = node.declare_parameter(name, param.default, descriptor).value
        if param.check is not None and value is not None:
            problem = param.check(value)
            if problem:
                errors.append(f"parameter '{name}' {problem}")
        values[name] = value
    if errors:
        raise ValueError(f"{node.get_name()}: invalid parameters: " + "; ".join(errors))
    return values


def declare_config(node: Node, config_cls, prefix: str = ""):
    """Declare every :func:`ocgs_ros.settings.setting` of ``config_cls`` (nested ones with dotted
    names, as ROS 2 names nested YAML keys) with its description, and return the config built
    from the parameter values.

    Raises ValueError with one line naming every bad parameter: a failed check, a value of the
    wrong type (``process_width:=abc``), or one the config itself refuses.
    """
    values: dict[str, Any] = {}
    errors: list[str] = []
    for item in iter_settings(config_cls):
        name = f"{prefix}{item.name}"
        descriptor = ParameterDescriptor(description=item.description)
        try:
            if isinstance(item.default, (list, tuple)) and len(item.default) == 0:
                raise TypeError(f"setting {name!r}: an empty sequence default has no ROS parameter type")
            value = node.declare_parameter(name, _ros_value(item.default), descriptor).value
        except InvalidParameterTypeException as exc:
            errors.append(f"parameter '{name}' must be of type {type(item.default).__name__}"
                          f" (default {item.default!r}): {exc}")
            continue
        except InvalidParameterValueException as exc:
            errors.append(f"parameter '{name}': {exc}")
            continue
        values[item.name] = value
    if not errors:
        try:
            return from_flat(config_cls, values)
        except (ValueError, TypeError) as exc:
            errors.append(str(exc))
    raise ValueError(f"{node.get_name()}: invalid parameters: " + "; ".join(errors))


def _ros_value(default: Any) -> Any:
    """ROS parameter types have no tuple: declare tuples as lists."""
    return list(default) if isinstance(default, tuple) else default
