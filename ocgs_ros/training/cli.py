"""The command-line edge of the trainers: argv <-> run config dataclass, derived from its fields.

Each field of the config (declared with :func:`ocgs_ros.training.options.option` / ``required``)
becomes one option: ``log_every`` -> ``--log-every`` with the field's description as help. The
type decides the form: ``bool`` (default False) a switch, ``bool | None`` a ``--x/--no-x`` pair,
``tuple[str, ...]`` a repeatable option, ``T | None`` an optional ``T``. Everything past parsing
works on the dataclass; :func:`config_to_argv` gives back a command line that parses to an equal
config (the provenance of runs started from code rather than a shell).
"""
from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any, Sequence, TypeVar

from .options import flag_of

Config = TypeVar("Config")


@dataclasses.dataclass(frozen=True)
class _Form:
    """How one field appears on the command line."""

    kind: str  # "switch" (store_true), "pair" (--x/--no-x), "repeat" (append), "value"
    value_type: type | None = None


def _form(hint: Any) -> _Form:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        inner = [a for a in args if a is not type(None)]
        if len(inner) != 1:
            raise TypeError(f"unsupported option type {hint}")
        return _Form("pair") if inner[0] is bool else _Form("value", inner[0])
    if hint is bool:
        return _Form("switch")
    if origin is tuple:
        return _Form("repeat", args[0])
    if hint in (int, float, str):
        return _Form("value", hint)
    raise TypeError(f"unsupported option type {hint}")


def _forms(config_cls: type) -> list[tuple[dataclasses.Field, _Form]]:
    hints = typing.get_type_hints(config_cls)
    return [(field, _form(hints[field.name])) for field in dataclasses.fields(config_cls)]


def build_parser(config_cls: type, prog: str, description: str) -> argparse.ArgumentParser:
    """An argparse parser with one option per field of ``config_cls``."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    for field, form in _forms(config_cls):
        meta = field.metadata
        has_default = field.default is not dataclasses.MISSING
        text = meta.get("description", "").replace("%", "%%")
        if has_default and field.default not in (None, False, ()):
            text += f" (default: {field.default})"
        kwargs: dict[str, Any] = {"dest": field.name, "help": text}
        if form.kind == "switch":
            if field.default is not False:
                raise TypeError(f"{config_cls.__name__}.{field.name}: a switch must default to False")
            kwargs.update(action="store_true")
        elif form.kind == "pair":
            kwargs.update(action=argparse.BooleanOptionalAction, default=field.default)
        elif form.kind == "repeat":
            kwargs.update(action="append", type=form.value_type, default=None, metavar=meta.get("metavar"))
        else:
            kwargs.update(type=form.value_type, metavar=meta.get("metavar"), choices=meta.get("choices"))
            if has_default:
                kwargs["default"] = field.default
            else:
                kwargs["required"] = True
        parser.add_argument(flag_of(field), **kwargs)
    return parser


def config_from_namespace(config_cls: type[Config], namespace: argparse.Namespace) -> Config:
    """The config from parsed options (raises ValueError from the config's own checks)."""
    values = {}
    for field, form in _forms(config_cls):
        value = getattr(namespace, field.name)
        values[field.name] = tuple(value or ()) if form.kind == "repeat" else value
    return config_cls(**values)


def parse_config(config_cls: type[Config], argv: Sequence[str], prog: str, description: str) -> Config:
    """``argv`` -> config; a bad option or value exits with status 2 and one line saying which."""
    parser = build_parser(config_cls, prog, description)
    namespace = parser.parse_args(list(argv))
    try:
        return config_from_namespace(config_cls, namespace)
    except ValueError as exc:
        parser.error(str(exc))
        raise  # unreachable: parser.error exits


def config_to_argv(config: Any) -> list[str]:
    """Options that :func:`parse_config` turns back into a config equal to ``config``."""
    argv: list[str] = []
    for field, form in _forms(type(config)):
        value, flag = getattr(config, field.name), flag_of(field)
        if form.kind == "switch":
            argv += [flag] if value else []
        elif form.kind == "pair":
            if value is not None:
                argv.append(flag if value else "--no-" + flag[2:])
        elif form.kind == "repeat":
            for item in value:
                argv += [flag, str(item)]
        elif value is not None and (field.default is dataclasses.MISSING or value != field.default):
            argv += [flag, str(value)]
    return argv
