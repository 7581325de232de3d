"""Save/load a whole object map as one directory that a save switches in with one rename.

A saved map ``<dir>/`` holds

* ``gaussians.ply`` — the 3DGS PLY with identity fields (:mod:`.ply`),
* ``identity.json`` — the map config and identity head, which a PLY vertex list cannot hold,
* ``objects.json`` — the tracked objects, when a tracker was saved,
* ``manifest.json`` — format version, Gaussian count, and each file's size and sha256.

``<dir>`` is a symlink to a versioned sibling directory, replaced in one rename by
:func:`ocgs_ros.atomic_io.atomic_directory` (its docstring says why a symlink): a save killed at any
moment leaves ``<dir>`` naming the complete old map or the complete new one, and the next save
removes what the killed one left beside it. :func:`load_map` reads every file from one version and
checks it against the manifest, so files from two saves, a changed, truncated or missing file, or a
save that did not finish are refused with a one-line ValueError.

Where a ``path`` goes (:func:`map_dir`): ``.../name`` or ``.../name.ply`` → the map directory
``.../name``; an existing directory that is not a saved map, or a path ending in ``/`` →
``<that directory>/map``. Maps saved by earlier versions as three loose files (``name.ply``,
``name.identity.json``, ``name.objects.json``) still load, read-only; without a manifest only their
Gaussian counts are checked against each other.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from ocgs_ros.atomic_io import atomic_directory, is_switched_directory, write_synced
from ocgs_ros.gaussians.map import GaussianMap
from ocgs_ros.gaussians.objects import ObjectTracker
from ocgs_ros.gaussians.ply import (identity_sidecar, load_ply, map_from_vertices, map_to_vertices, parse_ply,
                                    ply_bytes, sidecar_path)

MAP_FORMAT = "ocgs_ros.object_map"
MAP_FORMAT_VERSION = 1
PLY_NAME, IDENTITY_NAME, OBJECTS_NAME = "gaussians.ply", "identity.json", "objects.json"
MANIFEST_NAME = "manifest.json"
_CONTENT_NAMES = (PLY_NAME, IDENTITY_NAME, OBJECTS_NAME)


def _is_saved_map(directory: Path) -> bool:
    return is_switched_directory(directory) or (directory / MANIFEST_NAME).is_file()


def map_dir(path) -> Path:
    """The map directory a save to ``path`` switches (see the module docstring)."""
    text = os.fspath(path)
    where = Path(text)
    if where.suffix == ".ply":
        where = where.with_suffix("")
    if _is_saved_map(where):
        return where
    if text.endswith(("/", os.sep)) or where.is_dir():
        return where / "map"
    return where


def map_paths(path) -> dict[str, Path]:
    """``{"dir", "ply", "identity", "objects", "manifest"}`` of a save to ``path``; the files' paths go
    through the ``dir`` symlink, so they always name the current save's files."""
    directory = map_dir(path)
    return {"dir": directory, "ply": directory / PLY_NAME, "identity": directory / IDENTITY_NAME,
            "objects": directory / OBJECTS_NAME, "manifest": directory / MANIFEST_NAME}


def _json_bytes(obj) -> bytes:
    return (json.dumps(obj, indent=1) + "\n").encode("utf-8")


def save_map(path, gmap: GaussianMap, tracker: ObjectTracker | None = None) -> dict[str, Path]:
    """Write the map and, if given, its objects as one directory switched in at once; returns :func:`map_paths`.

    ``paths["objects"]`` exists only when a tracker was given. ValueError if the target exists and
    is not a saved map (a real directory or file is never replaced)."""
    num_gaussians = gmap.num_gaussians
    contents = {PLY_NAME: ply_bytes(map_to_vertices(gmap)), IDENTITY_NAME: _json_bytes(identity_sidecar(gmap))}
    if tracker is not None:
        contents[OBJECTS_NAME] = _json_bytes({**tracker.to_json(), "num_gaussians": num_gaussians})
    manifest = {"format": MAP_FORMAT, "format_version": MAP_FORMAT_VERSION, "num_gaussians": num_gaussians,
                "files": {name: {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
                          for name, data in contents.items()}}
    target = map_dir(path)
    with atomic_directory(target) as version:
        for name, data in contents.items():
            write_synced(version / name, data)
        write_synced(version / MANIFEST_NAME, _json_bytes(manifest))  # last: a version without it is unfinished
    return map_paths(target)


def load_map(path) -> tuple[GaussianMap, ObjectTracker | None]:
    """Read a saved map: ``(map, tracker or None if it was saved without objects)``.

    ``path``: what was given to :func:`save_map`, the map directory, or a file in it (e.g. a
    reported ``ply_path``). FileNotFoundError if nothing was saved there; ValueError (one line) for
    anything that is not one complete save."""
    kind, where = _locate(path)
    return _load_legacy(where) if kind == "legacy" else _load_directory(where)


def _locate(path) -> tuple[str, Path]:
    """``("dir", map directory)`` or ``("legacy", PLY of a three-loose-files save)``."""
    given = Path(path)
    names_a_map_file = given.name in (*_CONTENT_NAMES, MANIFEST_NAME) and not sidecar_path(given).is_file()
    if names_a_map_file and (given.is_file() or (given.parent / MANIFEST_NAME).is_file()):
        return "dir", given.parent
    directory = map_dir(path)
    if directory.is_dir():
        return "dir", directory
    if os.path.lexists(directory):
        raise ValueError(f"load_map: {directory} is not a saved map (a dangling link or a plain file)")
    legacy_ply = directory.with_name(directory.name + ".ply")
    if legacy_ply.is_file():
        return "legacy", legacy_ply
    if given.is_dir():  # an existing directory with neither a manifest nor a map inside
        raise ValueError(f"load_map: {given} has no {MANIFEST_NAME}: not a saved map, or a save that did not finish")
    raise FileNotFoundError(f"load_map: no saved map at {directory}")


def _read(version: Path, name: str) -> bytes:
    try:
        return (version / name).read_bytes()
    except FileNotFoundError:
        if name == MANIFEST_NAME:
            raise ValueError(f"load_map: {version} has no {MANIFEST_NAME}: not a saved map, "
                             f"or a save that did not finish") from None
        raise ValueError(f"load_map: {version / name} is missing (removed by hand, or a newer save replaced "
                         f"this version while it was read)") from None
    except OSError as exc:
        raise ValueError(f"load_map: cannot read {version / name}: {exc.strerror}") from None


def _parse_json(data: bytes, where: Path) -> dict:
    try:
        obj = json.loads(data)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise ValueError(f"load_map: {where} is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ValueError(f"load_map: {where} must hold a JSON object")
    return obj


def _verified_files(version: Path) -> tuple[dict, dict[str, bytes]]:
    """``(manifest, {name: bytes})`` of ``version``: each file read once and checked against its size and sha256."""
    manifest_path = version / MANIFEST_NAME
    manifest = _parse_json(_read(version, MANIFEST_NAME), manifest_path)
    if manifest.get("format") != MAP_FORMAT:
        raise ValueError(f"load_map: {manifest_path}: format must be {MAP_FORMAT!r}, got {manifest.get('format')!r}")
    if manifest.get("format_version") != MAP_FORMAT_VERSION:
        raise ValueError(f"load_map: {manifest_path}: format_version {manifest.get('format_version')!r} is not "
                         f"the supported {MAP_FORMAT_VERSION}")
    files = manifest.get("files")
    if not isinstance(files, dict) or not {PLY_NAME, IDENTITY_NAME} <= files.keys() <= set(_CONTENT_NAMES):
        named = sorted(files) if isinstance(files, dict) else files
        raise ValueError(f"load_map: {manifest_path}: 'files' must name {PLY_NAME} and {IDENTITY_NAME} "
                         f"(and optionally {OBJECTS_NAME}), got {named!r}")
    blobs = {}
    for name, entry in files.items():
        data = _read(version, name)
        if not isinstance(entry, dict) or entry.get("bytes") != len(data) or \
                entry.get("sha256") != hashlib.sha256(data).hexdigest():
            raise ValueError(f"load_map: {version / name} does not match its size or sha256 in {MANIFEST_NAME} "
                             f"(changed, truncated or from another save)")
        blobs[name] = data
    return manifest, blobs


def _load_directory(directory: Path) -> tuple[GaussianMap, ObjectTracker | None]:
    version = directory.resolve()  # one version for every file, whatever a concurrent save switches meanwhile
    manifest, blobs = _verified_files(version)
    gmap = map_from_vertices(parse_ply(blobs[PLY_NAME], version / PLY_NAME),
                             _parse_json(blobs[IDENTITY_NAME], version / IDENTITY_NAME), version / PLY_NAME)
    if gmap.num_gaussians != manifest.get("num_gaussians"):
        raise ValueError(f"load_map: {version / PLY_NAME} has {gmap.num_gaussians} Gaussians, "
                         f"{MANIFEST_NAME} says {manifest.get('num_gaussians')!r}")
    if OBJECTS_NAME not in blobs:
        return gmap, None
    try:
        return gmap, ObjectTracker.from_json(_parse_json(blobs[OBJECTS_NAME], version / OBJECTS_NAME))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"load_map: {version / OBJECTS_NAME}: {exc}") from None


def _load_legacy(ply: Path) -> tuple[GaussianMap, ObjectTracker | None]:
    """A map saved as three loose files by earlier versions (no manifest: only the counts are checked)."""
    gmap = load_ply(ply)
    objects = ply.with_name(ply.stem + ".objects.json")
    if not objects.is_file():
        return gmap, None
    data = _parse_json(objects.read_bytes(), objects)
    saved_count = data.get("num_gaussians")
    if saved_count is not None and int(saved_count) != gmap.num_gaussians:
        raise ValueError(f"load_map: {objects.name} was saved with {saved_count} Gaussians but "
                         f"{ply.name} has {gmap.num_gaussians}: files from different saves")
    return gmap, ObjectTracker.from_json(data)
