"""Bad start-up through ``bringup`` and the standalone nodes (issue 15): a missing or truncated
checkpoint, an out-of-range or wrongly typed parameter, a missing bag or parameter file, an unknown
argument → exit 2 and exactly one line on stderr naming the problem, no traceback."""
from __future__ import annotations

import importlib
import os
import subprocess
import sys

import pytest
from conftest import REPO

from ocgs_ros import models
from ocgs_ros.bringup import NODE_CLASSES
from ocgs_ros.settings import iter_settings


def setting_name(executable: str, suffix: str) -> str:
    """The node's one parameter whose (dotted) name ends with ``suffix``, so the cases follow
    renames of the settings (``gocl.checkpoint``, ``map.max_gaussians``, ``view.process_width``)."""
    module_name, class_name = NODE_CLASSES[executable].split(":")
    node_class = getattr(importlib.import_module(module_name), class_name)
    names = [item.name for cls in node_class.CONFIG_CLASSES for item in iter_settings(cls)
             if item.name.endswith(suffix)]
    assert len(names) == 1, (executable, suffix, names)
    return names[0]


def truncated(source, tmp_path) -> str:
    """A checkpoint cut off mid-file, as an interrupted copy leaves it ('' without the shipped one)."""
    if not source.is_file():
        return ""
    path = tmp_path / f"truncated_{source.name}"
    path.write_bytes(source.read_bytes()[:4096])
    return str(path)


def run(args: list[str], cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ), cwd=cwd)


def assert_one_line_exit_2(done: subprocess.CompletedProcess, *expected: str) -> None:
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2, (done.returncode, done.stderr[-3000:])
    assert len(lines) == 1, done.stderr[-3000:]
    assert "Traceback" not in done.stderr + done.stdout
    for text in expected:
        assert text in lines[0], (text, lines[0])


MAPPING = ["sim:=true", "mapping:=true", "bev:=false"]
BEV = ["sim:=true", "mapping:=false", "bev:=true"]


def bringup_cases(tmp_path) -> dict[str, tuple[list[str], tuple[str, ...]]]:
    """case → (bringup arguments, texts the one stderr line must hold)."""
    gocl = setting_name("object_mapping_node", "checkpoint")
    bev = setting_name("bev_perception_node", "checkpoint")
    max_gaussians = setting_name("object_mapping_node", "max_gaussians")
    process_width = setting_name("object_mapping_node", "process_width")
    missing = str(tmp_path / "missing.pt")
    cut_gocl, cut_bev = truncated(models.GOCL_TABLETOP, tmp_path), truncated(models.BEV_DRIVING, tmp_path)
    return {
        "missing_gocl_checkpoint": (MAPPING + ["--ros-args", "-p", f"{gocl}:={missing}"], (gocl, missing)),
        "truncated_gocl_checkpoint": (MAPPING + ["--ros-args", "-p", f"{gocl}:={cut_gocl}"], (gocl, "truncated")),
        "missing_bev_checkpoint": (BEV + ["--ros-args", "-p", f"{bev}:={missing}"], (bev, missing)),
        "truncated_bev_checkpoint": (BEV + ["--ros-args", "-p", f"{bev}:={cut_bev}"], (bev, "truncated")),
        "max_gaussians_0": (MAPPING + ["--ros-args", "-p", f"{max_gaussians}:=0"], (max_gaussians, "> 0")),
        "process_width_abc": (MAPPING + ["--ros-args", "-p", f"{process_width}:=abc"], (process_width, "type int")),
        "missing_bag": (MAPPING + [f"bag:={tmp_path / 'no_bag'}"], ("no_bag", "not found")),
        "missing_config": (MAPPING + [f"config:={tmp_path / 'none.yaml'}"], ("none.yaml", "not found")),
        "unknown_argument": (["mapnig:=true"], ("mapnig",)),
        "bad_switch": (["bev:=maybe"], ("bev", "true/false")),
    }


CASES = ["missing_gocl_checkpoint", "truncated_gocl_checkpoint", "missing_bev_checkpoint", "truncated_bev_checkpoint",
         "max_gaussians_0", "process_width_abc", "missing_bag", "missing_config", "unknown_argument", "bad_switch"]


@pytest.mark.parametrize("case", CASES)
def test_bringup_refuses_a_bad_start_in_one_line(tmp_path, case):
    needs = {"gocl": models.GOCL_TABLETOP, "bev_checkpoint": models.BEV_DRIVING}
    if any(key in case and not path.is_file() for key, path in needs.items()):
        pytest.skip("shipped checkpoint not present")
    args, expected = bringup_cases(tmp_path)[case]
    done = run(["-m", "ocgs_ros.bringup", f"output:={tmp_path / 'run'}", *args], cwd=tmp_path)
    assert_one_line_exit_2(done, *expected)


@pytest.mark.parametrize("module, args, expected", [
    ("ocgs_ros.nodes.sim_publisher", ["-p", "image_width:=abc"], ("image_width", "type int")),
    ("ocgs_ros.nodes.bag_play", ["-p", "bag:=/nonexistent/bag"], ("/nonexistent/bag",)),
    ("ocgs_ros.nodes.bag_record", ["-p", "storage:=zip"], ("storage", "zip")),
    ("ocgs_ros.nodes.bag_play", ["--params-file", "/nonexistent/params.yaml"],
     ("/nonexistent/params.yaml", "not found")),
], ids=["sim_publisher_type", "bag_play_missing_bag", "bag_record_storage", "missing_params_file"])
def test_a_standalone_node_refuses_a_bad_start_in_one_line(tmp_path, module, args, expected):
    done = run(["-m", module, "--ros-args", *args], cwd=REPO)
    assert_one_line_exit_2(done, *expected)
