"""A map save is atomic as a whole (issue 15).

A process SIGKILLed anywhere inside ``save_map`` of map B over map A leaves the map directory
loading as the complete map A or the complete map B, never anything else, and the next save removes
what the killed one left behind. ``load_map`` refuses changed, missing, mixed or unfinished files
with a one-line ValueError.

The kill trials fork from one pre-started child ("zygote", the venv python with torch already
imported): a fresh interpreter per trial would spend seconds importing torch. In the forked saver,
every filesystem step of the save (mkdir, fsync, symlink, replace, rmtree) is wrapped to pause
briefly, so random kill times land in every gap between steps, and a "kill at step k" mode hits each
gap on purpose.
"""
from __future__ import annotations

import itertools
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_gaussian_objects import _add, _blob, _map  # noqa: E402

from ocgs_ros.atomic_io import atomic_directory, atomic_write_json  # noqa: E402
from ocgs_ros.gaussians.objects import ObjectConfig, ObjectTracker  # noqa: E402
from ocgs_ros.gaussians.persistence import load_map, map_paths, save_map  # noqa: E402
from ocgs_ros.gaussians.ply import save_ply  # noqa: E402

RANDOM_KILL_TRIALS = 50
STEP_PAUSE_S = 0.004  # per filesystem step in the killed saver: spreads kill times over every gap
WATCHDOG_S = 60.0  # a saver still running after this is killed and reported (the trial then fails)


def maps():
    """``((map A, tracker A), (map B, tracker B))``: B differs from A in every file of a save
    (Gaussian count, identity head, objects), so any mix of the two is told apart from both."""
    config = ObjectConfig(min_gaussians=20, link_radius=0.03)
    gmap_a = _map()
    tracker_a = ObjectTracker(config)
    tracker_a.update(gmap_a)
    gmap_b = _map()
    _add(gmap_b, _blob([0.3, -0.3, 0.05], 45, 9), channel=4)  # one more object
    with torch.no_grad():
        gmap_b.identity_head.bias[0] += 0.5
    tracker_b = ObjectTracker(config)
    tracker_b.update(gmap_b)
    assert gmap_a.num_gaussians != gmap_b.num_gaussians and len(tracker_a.objects) != len(tracker_b.objects)
    return (gmap_a, tracker_a), (gmap_b, tracker_b)


def _same(loaded, saved) -> bool:
    (gmap, tracker), (expected_map, expected_tracker) = loaded, saved
    if gmap.num_gaussians != expected_map.num_gaussians or (tracker is None) != (expected_tracker is None):
        return False
    head, expected_head = gmap.identity_head.state_dict(), expected_map.identity_head.state_dict()
    return (all(torch.equal(gmap.params[k], v.detach()) for k, v in expected_map.params.items())
            and all(torch.equal(head[k], v) for k, v in expected_head.items())
            and (tracker is None or tracker.to_json() == expected_tracker.to_json()))


def _which(loaded, map_a, map_b) -> str:
    return "A" if _same(loaded, map_a) else "B" if _same(loaded, map_b) else "neither"


@pytest.fixture(scope="module")
def two_maps():
    return maps()


# -- the killed saver ------------------------------------------------------------------------------
STEP_FUNCTIONS = ((os, "mkdir"), (os, "fsync"), (os, "symlink"), (os, "replace"), (shutil, "rmtree"))


def _install_step_hooks(trace_path: str, kill_at_step: int | None) -> None:
    """In the saver: log each filesystem step to ``trace_path``, pause, and SIGKILL itself at step ``kill_at_step``."""
    trace = os.open(trace_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND)
    counter = itertools.count()
    for module, name in STEP_FUNCTIONS:
        def hooked(*args, _original=getattr(module, name), _name=name, **kwargs):
            step = next(counter)
            if step == kill_at_step:
                os.kill(os.getpid(), signal.SIGKILL)
            os.write(trace, f"{step} {_name}\n".encode())
            time.sleep(STEP_PAUSE_S)
            return _original(*args, **kwargs)
        setattr(module, name, hooked)


def zygote_main(target: str, trace_path: str) -> None:
    """Serve kill trials: per stdin request ``{"delay_s", "kill_at_step"}`` fork a saver of map B over
    ``target``, SIGKILL it after ``delay_s`` if still running, and answer ``{"killed", "exit_code", "duration_s"}``."""
    torch.set_num_threads(1)  # no intra-op thread pool in the parent, so forked savers cannot deadlock
    _, (gmap_b, tracker_b) = maps()
    print("ready", flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            exit_code = 1
            try:
                _install_step_hooks(trace_path, request["kill_at_step"])
                save_map(target, gmap_b, tracker_b)
                exit_code = 0
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(exit_code)  # no atexit handlers or buffers of the zygote run twice
        started = time.monotonic()
        delay = request["delay_s"] if request["delay_s"] is not None else WATCHDOG_S
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done or time.monotonic() - started >= delay:
                break
            time.sleep(0.0005)
        if not done:
            os.kill(pid, signal.SIGKILL)  # the saver is not reaped yet, so its pid cannot be reused
            _, status = os.waitpid(pid, 0)
        print(json.dumps({"killed": os.WIFSIGNALED(status), "exit_code": os.waitstatus_to_exitcode(status),
                          "duration_s": time.monotonic() - started}), flush=True)


class Zygote:
    def __init__(self, target: Path, trace: Path):
        code = f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); " \
               f"import test_map_save_atomic as t; t.zygote_main(sys.argv[1], sys.argv[2])"
        self.trace = trace
        self.process = subprocess.Popen([sys.executable, "-c", code, str(target), str(trace)], text=True,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=Path(__file__).parents[1],
                                        env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert self.process.stdout.readline().strip() == "ready", "the zygote did not start"

    def trial(self, delay_s: float | None = None, kill_at_step: int | None = None) -> dict:
        self.process.stdin.write(json.dumps({"delay_s": delay_s, "kill_at_step": kill_at_step}) + "\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline()
        assert answer, f"the zygote died (exit code {self.process.poll()})"
        return json.loads(answer)

    def steps(self) -> list[str]:
        return [line.split()[1] for line in self.trace.read_text().splitlines()]

    def close(self):
        self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _entries(parent: Path) -> list[str]:
    return sorted(os.listdir(parent))


def _check_leftovers_never_load_as_a_mix(parent: Path, target: Path, map_a, map_b) -> None:
    """Any version directory beside the live one is refused, or is one complete map (a finished
    version killed before its switch, or the replaced one half removed)."""
    live = os.readlink(target)
    for name in _entries(parent):
        leftover = parent / name
        if name in (target.name, live) or not leftover.is_dir() or leftover.is_symlink():
            continue
        try:
            loaded = load_map(leftover)
        except ValueError:
            continue
        assert _which(loaded, map_a, map_b) != "neither", f"leftover {name} loaded as a mix"


def _save_a_and_check_clean(target: Path, map_a) -> None:
    save_map(target, *map_a)
    live = os.readlink(target)
    assert _entries(target.parent) == sorted([target.name, live]), "a stale temporary survived the next save"


def test_sigkill_anywhere_in_a_save_leaves_the_old_or_the_new_map(tmp_path, two_maps):
    map_a, map_b = two_maps
    parent = tmp_path / "maps"
    target = parent / "object_map"
    zygote = Zygote(target, tmp_path / "trace.txt")
    outcomes = []
    try:
        # one full save measures the duration and lists the steps
        _save_a_and_check_clean(target, map_a)
        full = zygote.trial()
        assert full["exit_code"] == 0 and _which(load_map(target), map_a, map_b) == "B"
        steps = zygote.steps()
        switch = steps.index("replace")

        # a kill before each step in turn: the map is A up to the switch (os.replace), B from then on
        for step in range(len(steps) + 1):
            _save_a_and_check_clean(target, map_a)
            result = zygote.trial(kill_at_step=step)
            assert result["killed"] == (step < len(steps))
            outcome = _which(load_map(target), map_a, map_b)
            killed_before = steps[step] if step < len(steps) else "none: the save finished"
            assert outcome == ("A" if step <= switch else "B"), f"killed before step {step} ({killed_before})"
            _check_leftovers_never_load_as_a_mix(parent, target, map_a, map_b)
            outcomes.append(outcome)

        # kills at random moments over the measured duration of a save
        rng = random.Random(15)
        for _ in range(RANDOM_KILL_TRIALS):
            _save_a_and_check_clean(target, map_a)
            zygote.trial(delay_s=rng.uniform(0.0, 1.2 * full["duration_s"]))
            try:
                outcome = _which(load_map(target), map_a, map_b)
            except ValueError as exc:
                outcome = f"refused: {exc}"
            assert outcome in ("A", "B"), outcome
            _check_leftovers_never_load_as_a_mix(parent, target, map_a, map_b)
            outcomes.append(outcome)
        _save_a_and_check_clean(target, map_a)
    finally:
        zygote.close()
    assert {"A", "B"} <= set(outcomes) and len(outcomes) >= RANDOM_KILL_TRIALS
    print(f"\n{len(outcomes)} killed saves: {outcomes.count('A')} old map, {outcomes.count('B')} new map, "
          f"{len(steps)} filesystem steps, full save {full['duration_s'] * 1e3:.0f} ms with pauses")


# -- what load_map accepts and refuses -------------------------------------------------------------
@pytest.fixture
def saved(tmp_path, two_maps):
    map_a, _ = two_maps
    return save_map(tmp_path / "m", *map_a)


def test_round_trip_is_exact_through_every_reported_path(saved, two_maps):
    map_a, map_b = two_maps
    for key in ("dir", "ply", "objects", "manifest"):
        assert _which(load_map(saved[key]), map_a, map_b) == "A", key
    assert _which(load_map(saved["dir"].parent / "m.ply"), map_a, map_b) == "A"  # the name the node strips


def test_a_map_without_objects_loads_without_a_tracker(tmp_path, two_maps):
    (gmap, _), _ = two_maps
    paths = save_map(tmp_path / "m", gmap)
    loaded, tracker = load_map(paths["dir"])
    assert tracker is None and loaded.num_gaussians == gmap.num_gaussians and not paths["objects"].exists()


@pytest.mark.parametrize("name", ["gaussians.ply", "identity.json", "objects.json"])
def test_a_changed_file_is_refused(saved, name):
    path = saved["dir"] / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="sha256") as refusal:
        load_map(saved["dir"])
    assert "\n" not in str(refusal.value)


def test_a_file_from_another_save_is_refused(tmp_path, saved, two_maps):
    _, map_b = two_maps
    other = save_map(tmp_path / "other", *map_b)
    for name in ("gaussians.ply", "objects.json"):  # the two mixes issue 15 saw after a kill
        shutil.copyfile(other["dir"] / name, saved["dir"] / name)
        with pytest.raises(ValueError, match="from another save"):
            load_map(saved["dir"])


@pytest.mark.parametrize("name", ["gaussians.ply", "identity.json", "objects.json", "manifest.json"])
def test_a_missing_file_is_refused(saved, name):
    (saved["dir"] / name).unlink()
    with pytest.raises(ValueError, match="missing|no manifest.json") as refusal:
        load_map(saved["dir"])
    assert "\n" not in str(refusal.value)


def test_a_manifest_of_another_format_version_is_refused(saved):
    manifest = json.loads(saved["manifest"].read_text())
    manifest["format_version"] = 2
    saved["manifest"].write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="format_version 2"):
        load_map(saved["dir"])


def test_an_unfinished_save_never_loads_and_changes_nothing(tmp_path, saved, two_maps):
    map_a, map_b = two_maps
    before = _entries(tmp_path)
    with pytest.raises(RuntimeError):
        with atomic_directory(saved["dir"]) as version:
            shutil.copyfile(saved["ply"], version / "gaussians.ply")
            with pytest.raises(ValueError, match="no manifest.json"):
                load_map(version)  # what a reader finds in a half-written version
            raise RuntimeError("disk full")
    assert _entries(tmp_path) == before and _which(load_map(saved["dir"]), map_a, map_b) == "A"


def test_stale_leftovers_are_removed_and_look_alike_names_kept(tmp_path, saved, two_maps):
    map_a, _ = two_maps
    (tmp_path / ".m.v-0123456789abcdef").mkdir()  # a version a killed save left
    (tmp_path / ".m.link-0123456789abcdef").symlink_to(".m.v-0123456789abcdef")  # its pending link
    keep = [".m.v-mine", ".mm.v-0123456789abcdef", "m.v-0123456789abcdef"]  # not this map's
    for name in keep:
        (tmp_path / name).mkdir()
    paths = save_map(tmp_path / "m", *map_a)
    assert _entries(tmp_path) == sorted(keep + ["m", os.readlink(paths["dir"])])


def test_a_save_never_replaces_what_it_did_not_write(tmp_path, saved, two_maps):
    map_a, map_b = two_maps
    copy = tmp_path / "copy"
    shutil.copytree(saved["dir"], copy)  # a real directory (e.g. a copied map) still loads ...
    assert _which(load_map(copy), map_a, map_b) == "A"
    with pytest.raises(ValueError, match="not a directory written by a whole-directory save"):
        save_map(copy, *map_b)  # ... but is never replaced: that cannot be one rename
    (tmp_path / "file").write_text("mine")
    with pytest.raises(ValueError, match="choose another path"):
        save_map(tmp_path / "file", *map_b)
    assert (tmp_path / "file").read_text() == "mine" and _which(load_map(copy), map_a, map_b) == "A"


def test_an_existing_plain_directory_gets_the_map_inside(tmp_path, two_maps):
    map_a, map_b = two_maps
    paths = save_map(tmp_path, *map_a)
    assert paths == map_paths(tmp_path) and paths["dir"] == tmp_path / "map"
    assert _which(load_map(tmp_path), map_a, map_b) == "A"
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no manifest.json"):
        load_map(tmp_path / "empty")  # a directory with neither a manifest nor a map


def test_nothing_saved_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_map(tmp_path / "never_saved")


def test_a_map_of_three_loose_files_from_earlier_versions_still_loads(tmp_path, two_maps):
    map_a, map_b = two_maps
    gmap, tracker = map_a
    save_ply(tmp_path / "old.ply", gmap)
    atomic_write_json(tmp_path / "old.objects.json", {**tracker.to_json(), "num_gaussians": gmap.num_gaussians})
    assert _which(load_map(tmp_path / "old"), map_a, map_b) == "A"
    assert _which(load_map(tmp_path / "old.ply"), map_a, map_b) == "A"
