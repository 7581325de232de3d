#!/usr/bin/env python3
"""Re-point the ROS 2 pip wheels' CMake exports at this environment's Python and numpy headers.

Why: the Kilted wheels are built in a manylinux container, and their
``*__rosidl_generator_pyExport.cmake`` files hard-code that container's include folders
(``/opt/python/cp311-cp311/...``). Any interface package built against them (ours, and the
``tf2_msgs`` compatibility package) then fails at configure time. Rewriting those paths to the
running interpreter's include folders fixes it. Idempotent: files already pointing here are left alone.
"""
from __future__ import annotations

import re
import sys
import sysconfig
from pathlib import Path

import numpy

WHEEL_BUILD_PREFIX = re.compile(r"/opt/python/cp3\d+-cp3\d+[^\s\";]*")


def replacement_for(path_in_wheel: str) -> str:
    if "numpy" in path_in_wheel:
        return numpy.get_include()
    if "/include/python" in path_in_wheel:
        return sysconfig.get_paths()["include"]
    raise ValueError(f"unexpected build path in a wheel cmake file: {path_in_wheel}")


def fix_tree(share_dir: Path) -> int:
    changed = 0
    for cmake_file in share_dir.rglob("*.cmake"):
        text = cmake_file.read_text()
        if "/opt/python/" not in text:
            continue
        fixed = WHEEL_BUILD_PREFIX.sub(lambda m: replacement_for(m.group(0)), text)
        if fixed != text:
            cmake_file.write_text(fixed)
            changed += 1
    return changed


def main() -> int:
    share_dir = Path(sys.prefix) / "share"
    if not share_dir.is_dir():
        print(f"fix_wheel_cmake: no {share_dir}; nothing to do")
        return 0
    changed = fix_tree(share_dir)
    print(f"fix_wheel_cmake: re-pointed {changed} cmake file(s) under {share_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
