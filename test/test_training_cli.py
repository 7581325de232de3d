"""The trainers' command line is derived from their config dataclasses; documented commands still parse."""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

from ocgs_ros.bev.train import BevTrainConfig
from ocgs_ros.ocl.train import GoclTrainConfig
from ocgs_ros.settings import positive
from ocgs_ros.training import RunConfig
from ocgs_ros.training.cli import build_parser, config_to_argv, parse_config
from ocgs_ros.training.options import option, redefault, typed_overrides

REPO = Path(__file__).resolve().parent.parent
TRAINERS = {"ocgs_ros.ocl.train": GoclTrainConfig, "ocgs_ros.bev.train": BevTrainConfig}


def documented_commands() -> list[tuple[str, str, list[str]]]:
    """(file, module, argv) of every complete trainer command quoted in the README and docs."""
    found = []
    for path in [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]:
        text = path.read_text().replace("\\\n", " ")  # join shell continuation lines
        for module in TRAINERS:
            for match in re.finditer(r"python -m " + re.escape(module) + r" ([^`#\n]*)", text):
                if "..." not in match.group(1) and "--" in match.group(1):
                    found.append((path.name, module, shlex.split(match.group(1))))
    return found


def test_every_documented_trainer_command_still_parses():
    commands = documented_commands()
    assert {module for _, module, _ in commands} == set(TRAINERS)  # both trainers are quoted
    for name, module, argv in commands:
        config = parse_config(TRAINERS[module], argv, module, "")
        assert parse_config(TRAINERS[module], config_to_argv(config), module, "") == config, (name, argv)


@dataclass(frozen=True, kw_only=True)
class _Example(RunConfig):
    ratio: float = option(0.5, "a float", positive)
    flag: bool | None = option(None, "three-way switch")
    names: tuple[str, ...] = option((), "repeatable", flag="--name")
    batch: int = redefault(RunConfig, "batch", 3)
    threads: int = redefault(RunConfig, "threads", 0)
    log_every: int = redefault(RunConfig, "log_every", 1)
    checkpoint_every: int = redefault(RunConfig, "checkpoint_every", 10)


def test_option_forms_follow_the_field_types():
    config = parse_config(_Example, ["--data", "d", "--out", "o", "--steps", "4", "--no-flag", "--name", "a",
                                     "--name", "b", "--ratio", "0.25", "--resume"], "x", "")
    assert (config.flag, config.names, config.ratio, config.resume, config.batch) == (False, ("a", "b"), 0.25, True, 3)
    assert config_to_argv(config) == ["--data", "d", "--out", "o", "--steps", "4", "--resume", "--ratio", "0.25",
                                      "--no-flag", "--name", "a", "--name", "b"]
    assert "(default: 3)" in build_parser(_Example, "x", "").format_help()
    with pytest.raises(SystemExit):
        parse_config(_Example, ["--data", "d", "--out", "o"], "x", "")  # --steps is required
    with pytest.raises(ValueError, match="--ratio must be > 0"):
        _Example(data="d", out="o", steps=1, ratio=0.0)


def test_set_overrides_are_typed_like_the_field_they_replace():
    base = GoclTrainConfig(data="d", out="o", steps=1, preset="tiny").model_config()
    typed = typed_overrides(base, ["encoder_channels=8,8,8", "use_codebook=false", "lr_encoder=1e-3",
                                   "tau_anneal_steps=1e3"])
    assert typed == {"encoder_channels": (8, 8, 8), "use_codebook": False, "lr_encoder": 1e-3, "tau_anneal_steps": 1000}
    for pair, message in (("use_codebook=1", "expected true or false"), ("tau_anneal_steps=2.5", "expected an integer"),
                          ("lr_encoder", "expects key=value"), ("nope=1", "unknown GoclConfig keys")):
        with pytest.raises(ValueError, match=message):
            typed_overrides(base, [pair])
