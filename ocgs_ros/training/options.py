"""Fields of a training run's config dataclass: default, description and check in one place.

A run config is a frozen dataclass whose fields are declared with :func:`option` (a default) or
:func:`required` (none). The metadata is what :mod:`ocgs_ros.training.cli` turns into command-line
options and what :func:`option_problems` checks, so a trainer states each of its settings once.
Metadata keys match :func:`ocgs_ros.settings.setting` (``description``, ``check``).

``--set key=value`` model-config overrides are typed here as well (:func:`typed_overrides`), by the
type of the field they replace.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Callable, Iterable, Sequence

Check = Callable[[Any], "str | None"]


def option(default: Any, description: str, check: Check | None = None, *, choices: Sequence[str] | None = None,
           flag: str | None = None, metavar: str | None = None) -> Any:
    """A setting with a default. ``flag`` replaces the derived ``--field-name`` on the command line."""
    return dataclasses.field(default=default, metadata=_metadata(description, check, choices, flag, metavar))


def required(description: str, check: Check | None = None, *, metavar: str | None = None) -> Any:
    """A setting without default (a required command-line option)."""
    return dataclasses.field(metadata=_metadata(description, check, None, None, metavar))


def redefault(config_cls: type, name: str, default: Any) -> Any:
    """``config_cls``'s field ``name`` (description, check) with this trainer's ``default``."""
    base = {f.name: f for f in dataclasses.fields(config_cls)}[name]
    return dataclasses.field(default=default, metadata=base.metadata)


def _metadata(description: str, check: Check | None, choices: Sequence[str] | None, flag: str | None,
              metavar: str | None) -> dict[str, Any]:
    return {"description": description, "check": check, "choices": tuple(choices) if choices else None,
            "flag": flag, "metavar": metavar}


def flag_of(field: dataclasses.Field) -> str:
    """The command-line name of a field: ``log_every`` -> ``--log-every`` unless it names its own."""
    return field.metadata.get("flag") or "--" + field.name.replace("_", "-")


def option_problems(config: Any) -> list[str]:
    """One text per field whose value has the wrong type, is not among its choices or fails its check."""
    errors = []
    hints = typing.get_type_hints(type(config))
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        choices, check = field.metadata.get("choices"), field.metadata.get("check")
        expected = _type_problem(value, hints[field.name])
        if expected:
            errors.append(f"{flag_of(field)} must be {expected}, got {value!r}")
        elif value is None:
            continue
        elif choices and value not in choices:
            errors.append(f"{flag_of(field)} must be one of {list(choices)}, got {value!r}")
        elif check is not None and (problem := check(value)):
            errors.append(f"{flag_of(field)} {problem}")
    return errors


def _type_problem(value: Any, hint: Any) -> str | None:
    """What ``value`` should be when it does not fit ``hint`` (the types run configs use), else None.
    A run config is saved in checkpoints that load with ``weights_only``: a Path or a numpy number
    in it would make them unreadable, so near types are refused rather than converted."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        hint = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is tuple:
        fits = isinstance(value, tuple) and all(_type_problem(v, args[0]) is None for v in value)
        return None if fits else f"a tuple of {args[0].__name__}"
    if hint is float:
        fits = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif hint is int:
        fits = isinstance(value, int) and not isinstance(value, bool)
    else:
        fits = isinstance(value, hint)
    return None if fits else f"of type {hint.__name__}"


def options_to_dict(config: Any) -> dict[str, Any]:
    """Plain values only (tuples as lists): JSON- and ``weights_only``-safe, compared by value."""
    return {f.name: list(v) if isinstance(v := getattr(config, f.name), tuple) else v
            for f in dataclasses.fields(config)}


# ----- --set key=value overrides of a model config ---------------------------------------------
def typed_overrides(base: Any, pairs: Iterable[str]) -> dict[str, Any]:
    """``["lr_encoder=2e-4", "encoder_channels=32,32"]`` -> ``{field: value}`` typed like ``base``'s
    fields (``base``: a model-config dataclass instance, e.g. the preset the overrides apply to).

    Raises ValueError naming unknown keys, malformed pairs and values that do not fit the field.
    """
    current = {f.name: getattr(base, f.name) for f in dataclasses.fields(base)}
    raw: dict[str, str] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ValueError(f"--set expects key=value, got {pair!r}")
        key, value = pair.split("=", 1)
        raw[key.strip()] = value
    unknown = sorted(set(raw) - set(current))
    if unknown:
        raise ValueError(f"--set: unknown {type(base).__name__} keys {unknown}")
    typed = {}
    for key, text in raw.items():
        try:
            typed[key] = _typed_like(current[key], text)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"--set {key}={text}: {exc}") from None
    return typed


def _typed_like(default: Any, text: str) -> Any:
    items = [v for v in text.split(",") if v]
    if dataclasses.is_dataclass(default):  # e.g. a grid: its fields in order, comma-separated
        fields = dataclasses.fields(default)
        if len(items) != len(fields):
            raise ValueError(f"needs {len(fields)} comma-separated values ({', '.join(f.name for f in fields)})")
        return type(default)(*(_scalar_like(getattr(default, f.name), v) for f, v in zip(fields, items)))
    if isinstance(default, tuple):
        kind = default[0] if default else 0.0
        return tuple(_scalar_like(kind, v) for v in items)
    return _scalar_like(default, text)


def _scalar_like(default: Any, text: str) -> Any:
    if isinstance(default, bool):
        if text.lower() not in ("true", "false"):
            raise ValueError(f"expected true or false, got {text!r}")
        return text.lower() == "true"
    if isinstance(default, int):
        number = float(text)  # "1e3" is a fine integer on a command line; "2.5" is not
        if not number.is_integer():
            raise ValueError(f"expected an integer, got {text!r}")
        return int(number)
    if isinstance(default, float):
        return float(text)
    if isinstance(default, str):
        return text
    raise TypeError(f"cannot set a field of type {type(default).__name__} from the command line")
