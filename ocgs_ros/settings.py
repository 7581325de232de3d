"""One source for every setting: config dataclass fields carry their default, description and check.

A config dataclass declares a user-facing setting with :func:`setting`; nested config dataclasses
(``field(default_factory=MapperConfig)``) give dotted names (``mapper.window``), exactly the names
ROS 2 gives nested YAML keys under ``ros__parameters``. ROS parameters (:mod:`ocgs_ros.ros.params`),
the YAML check and the command-line options are all derived from these fields, so a default lives
in one place. Fields declared without :func:`setting` are internal (documented by their comment,
not exposed as parameters).

No ROS import here: core libraries use this module.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import yaml

Check = Callable[[Any], "str | None"]


def setting(default: Any, description: str, check: Check | None = None) -> Any:
    """A dataclass field that is a user-facing setting (a ROS parameter, a YAML key)."""
    return dataclasses.field(default=default, metadata={"description": description, "check": check})


# -- checks: return an error text, or None when the value is fine --------------------------------
def positive(value) -> str | None:
    return None if value > 0 else f"must be > 0, got {value}"


def non_negative(value) -> str | None:
    return None if value >= 0 else f"must be >= 0, got {value}"


def unit_interval(value) -> str | None:
    return None if 0.0 <= value <= 1.0 else f"must be in [0, 1], got {value}"


def one_of(*choices: str) -> Check:
    def check(value) -> str | None:
        return None if value in choices else f"must be one of {list(choices)}, got {value!r}"

    return check


@dataclass(frozen=True)
class Setting:
    """One user-facing setting found on a config dataclass."""

    name: str  # dotted: "mapper.window"
    default: Any
    description: str
    check: Check | None


def _default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return field.default_factory()  # type: ignore[misc]
    raise TypeError(f"field {field.name!r} has no default")


def iter_settings(config_cls, prefix: str = "") -> Iterator[Setting]:
    """Every :func:`setting` of ``config_cls`` and of its nested config dataclasses, in field order."""
    for field in dataclasses.fields(config_cls):
        name = f"{prefix}{field.name}"
        default = _default(field)
        if dataclasses.is_dataclass(default):
            yield from iter_settings(type(default), prefix=f"{name}.")
        elif "description" in field.metadata:
            yield Setting(name, default, field.metadata["description"], field.metadata.get("check"))


def to_flat(config) -> dict[str, Any]:
    """{dotted name: value} of every setting of a config instance."""
    flat = {}
    for item in iter_settings(type(config)):
        value = config
        for part in item.name.split("."):
            value = getattr(value, part)
        flat[item.name] = value
    return flat


def problems(config_cls, values: dict[str, Any]) -> list[str]:
    """Error texts for unknown names and failed checks in ``values`` ({dotted name: value})."""
    known = {item.name: item for item in iter_settings(config_cls)}
    errors = [f"unknown setting '{name}'" for name in sorted(set(values) - set(known))]
    for name, value in values.items():
        item = known.get(name)
        if item is None or item.check is None or value is None:
            continue
        problem = item.check(value)
        if problem:
            errors.append(f"'{name}' {problem}")
    return errors


def from_flat(config_cls, values: dict[str, Any]):
    """A ``config_cls`` with the dotted ``values`` applied over its defaults.

    Raises ValueError naming every unknown setting and failed check at once.
    """
    errors = problems(config_cls, values)
    if errors:
        raise ValueError(f"{config_cls.__name__}: " + "; ".join(errors))
    return _build(config_cls, values, "")


def _build(config_cls, values: dict[str, Any], prefix: str):
    kwargs = {}
    for field in dataclasses.fields(config_cls):
        name = f"{prefix}{field.name}"
        if name in values:
            kwargs[field.name] = _like(_default(field), values[name])
            continue
        default = _default(field)
        if dataclasses.is_dataclass(default) and any(key.startswith(f"{name}.") for key in values):
            kwargs[field.name] = _build(type(default), values, f"{name}.")
    return config_cls(**kwargs)


def _like(default: Any, value: Any) -> Any:
    """``value`` in the type of ``default`` where ROS/YAML give a near type (list for tuple, int for float)."""
    if isinstance(default, tuple) and isinstance(value, (list, tuple)):
        return tuple(value)
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def parse_set_options(items: list[str]) -> dict[str, Any]:
    """The offline commands' ``--set NAME=VALUE`` options as ``{dotted name: value}``. Values are
    read as YAML scalars, as a parameter file gives them, and a number YAML 1.1 leaves a string
    (``1e-9``) as a number, but not ``nan`` or ``inf``: no setting takes them, and a path or name
    spelt so stays the text it is; raises ValueError naming an item without ``=``."""
    values = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep:
            raise ValueError(f"--set {item!r}: expected NAME=VALUE")
        value = yaml.safe_load(text)
        if isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                number = math.nan
            value = number if math.isfinite(number) else value
        values[name.strip()] = value
    return values
