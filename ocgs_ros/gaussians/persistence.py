"""Save/load a whole object map: the 3DGS PLY (+ identity sidecar, :mod:`.ply`) and the objects JSON.

Layout for ``path``:

* ``.../name.ply`` or a prefix ``.../name`` → ``name.ply``, ``name.identity.json``, ``name.objects.json``;
* an existing directory (or a path ending in ``/``) → ``map.ply``, ``map.identity.json``,
  ``map.objects.json`` inside it.

Every file is written atomically (temp file + rename). The objects JSON is written last, so a reader
that finds it also finds the map its ``gaussian_indices`` refer to; each save records the Gaussian
count and :func:`load_map` refuses a pair that does not fit together.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from ocgs_ros.atomic_io import atomic_write_json
from ocgs_ros.gaussians.map import GaussianMap
from ocgs_ros.gaussians.objects import ObjectTracker
from ocgs_ros.gaussians.ply import load_ply, save_ply, sidecar_path


def map_paths(path) -> dict[str, Path]:
    """``{"ply", "identity", "objects"}`` paths a save to ``path`` writes (see module docstring)."""
    text = os.fspath(path)
    p = Path(text)
    if p.is_dir() or text.endswith(("/", os.sep)):
        prefix = p / "map"
    elif p.suffix == ".ply":
        prefix = p.with_suffix("")
    else:
        prefix = p
    ply = prefix.with_name(prefix.name + ".ply")
    return {"ply": ply, "identity": sidecar_path(ply), "objects": prefix.with_name(prefix.name + ".objects.json")}


def save_map(path, gmap: GaussianMap, tracker: ObjectTracker | None = None) -> dict[str, Path]:
    """Write the map (PLY + identity sidecar) and, if given, its objects; returns the paths."""
    paths = map_paths(path)
    paths["ply"].parent.mkdir(parents=True, exist_ok=True)
    save_ply(paths["ply"], gmap)
    if tracker is not None:
        atomic_write_json(paths["objects"], {**tracker.to_json(), "num_gaussians": gmap.num_gaussians})
    return paths


def load_map(path) -> tuple[GaussianMap, ObjectTracker | None]:
    """Read what :func:`save_map` wrote: ``(map, tracker or None if no objects JSON exists)``."""
    paths = map_paths(path)
    if not paths["ply"].is_file():
        raise FileNotFoundError(f"load_map: {paths['ply']} does not exist")
    gmap = load_ply(paths["ply"])
    if not paths["objects"].is_file():
        return gmap, None
    data = json.loads(paths["objects"].read_text())
    saved_count = data.get("num_gaussians")
    if saved_count is not None and int(saved_count) != gmap.num_gaussians:
        raise ValueError(f"load_map: {paths['objects'].name} was saved with {saved_count} Gaussians but "
                         f"{paths['ply'].name} has {gmap.num_gaussians}: files from different saves")
    return gmap, ObjectTracker.from_json(data)
