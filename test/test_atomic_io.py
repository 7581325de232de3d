"""Atomic writes: all-or-nothing, and ordinary file permissions."""
from __future__ import annotations

import json
import os

import pytest

from ocgs_ros.atomic_io import atomic_path, atomic_write_json


def test_replaces_whole_file_with_normal_permissions(tmp_path):
    target = tmp_path / "r.json"
    atomic_write_json(target, {"a": 1})
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(target).st_mode & 0o777 == 0o666 & ~umask
    assert json.loads(target.read_text()) == {"a": 1}


def test_failure_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "r.json"
    atomic_write_json(target, {"old": True})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert json.loads(target.read_text()) == {"old": True}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_atomic_save_figure_writes_a_png_and_closes_the_figure(tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ocgs_ros.atomic_io import atomic_save_figure

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    target = tmp_path / "sub" / "figure.png"
    atomic_save_figure(fig, target, dpi=50)
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not plt.fignum_exists(fig.number)
    assert [p.name for p in target.parent.iterdir()] == ["figure.png"]  # no temporary left behind
