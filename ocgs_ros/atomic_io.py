"""Atomic writes: one file (temp file + rename) or a whole directory of files (symlink switch).

Why: a map, checkpoint or results file that a crash leaves half-written is worse than none; a
rename within one filesystem is atomic, so readers see the old file or the new one, never a mix.
Several files that belong together need one rename for all of them: :func:`atomic_directory`.
"""
from __future__ import annotations

import fcntl
import json
import os
import re
import secrets
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; it replaces ``path`` only if the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp creates 0600 files; give the result the permissions a plain open() would
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int = 2) -> None:
    atomic_write_text(path, json.dumps(obj, indent=indent, sort_keys=False) + "\n")


def atomic_save_figure(fig: Any, path: str | os.PathLike, dpi: int) -> None:
    """Write a matplotlib figure as PNG atomically and close it (frees its memory in loops)."""
    import matplotlib.pyplot as plt

    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi, format="png")
    finally:
        plt.close(fig)


def fsync_directory(path: str | os.PathLike) -> None:
    """Make the entries of a directory (creations, renames) durable, not only the files' contents."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_synced(path: str | os.PathLike, data: bytes) -> None:
    """Write a new file and fsync it (for files inside a directory that is switched in afterwards)."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


@contextmanager
def _directory_lock(directory: Path) -> Iterator[None]:
    # flock on the directory itself: no lock file to leave behind, and the kernel drops the lock
    # when its holder dies (even by SIGKILL), so whatever a dead writer left is stale for the next.
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _sibling_pattern(target: Path) -> re.Pattern:
    """Names of the versions and the pending links of ``target``: ``.<name>.v-<16 hex>``, ``.<name>.link-<16 hex>``.

    Exact, so that another target whose name merely starts alike (``map`` vs ``map.v-old``) is never touched."""
    return re.compile(rf"\.{re.escape(target.name)}\.(v|link)-[0-9a-f]{{16}}")


def switched_version(path: str | os.PathLike) -> Path | None:
    """The version directory ``path`` (made by :func:`atomic_directory`) points to; None if ``path`` does not exist.

    Raises ValueError if ``path`` exists but is something else (a real directory, a file, a foreign symlink)."""
    target = Path(path)
    if not os.path.lexists(target):
        return None
    if target.is_symlink():
        pointed = os.readlink(target)
        match = _sibling_pattern(target).fullmatch(pointed)
        if match and match.group(1) == "v":
            return target.parent / pointed
    raise ValueError(f"{target} exists and is not a directory written by a whole-directory save; "
                     f"choose another path or remove it")


def is_switched_directory(path: str | os.PathLike) -> bool:
    try:
        return switched_version(path) is not None
    except ValueError:
        return False


def _remove_stale(target: Path, keep: Path | None) -> None:
    """Remove every version and pending link of ``target`` except ``keep`` (left by killed or older saves)."""
    pattern = _sibling_pattern(target)
    for name in os.listdir(target.parent):
        if pattern.fullmatch(name) and (keep is None or name != keep.name):
            stale = target.parent / name
            if stale.is_symlink() or not stale.is_dir():
                stale.unlink(missing_ok=True)
            else:
                shutil.rmtree(stale, ignore_errors=True)


def _fsync_tree(root: Path) -> None:
    for directory, _, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(directory, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_directory(directory)


@contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a new empty directory to fill; when the block succeeds, ``path`` switches to it in one rename.

    ``path`` is a symlink to a versioned sibling directory ``.<name>.v-<token>``. The block writes the
    new version; its files and the directory are fsynced, then a new symlink to it is renamed over
    ``path`` with :func:`os.replace` — the only step that changes what ``path`` means, and an atomic
    one. A process killed at any moment leaves ``path`` naming the complete old version or the
    complete new one; what it left beside (a partial version, a pending link) is removed by the next
    save to ``path``, and the replaced version right after the switch.

    Why a symlink: rename(2) cannot replace a non-empty directory, and swapping two real directories
    takes two renames, between which ``path`` is missing. A ``current`` pointer file would also switch
    in one rename, but every file's path would then change with each save and every reader would
    have to read the pointer first; through the symlink ``path/<file>`` always names the current file
    (for viewers and for paths reported to users). Needs a filesystem with symlinks (POSIX).

    Saves to directories with the same parent are serialised by a lock on the parent. A reader
    should resolve ``path`` once (``Path(path).resolve()``) and read every file from the version it
    names; a save that completes meanwhile removes that version, so the reader then fails (and may
    retry) but never sees a mix. Raises ValueError if ``path`` exists and is not such a symlink.
    """
    target = Path(path)
    parent = target.parent
    parent.mkdir(parents=True, exist_ok=True)
    with _directory_lock(parent):
        previous = switched_version(target)
        _remove_stale(target, keep=previous)
        token = secrets.token_hex(8)
        version = parent / f".{target.name}.v-{token}"
        link = parent / f".{target.name}.link-{token}"
        os.mkdir(version)
        switched = False
        try:
            yield version
            _fsync_tree(version)
            os.symlink(version.name, link)  # relative: the pair stays valid when the parent moves
            os.replace(link, target)
            switched = True
            fsync_directory(parent)
        finally:
            if not switched:
                link.unlink(missing_ok=True)
                shutil.rmtree(version, ignore_errors=True)
        if previous is not None:
            shutil.rmtree(previous, ignore_errors=True)
