"""Save/load the Gaussian map as a standard 3DGS PLY (+ identity fields), atomically.

Vertex properties, in the order the original 3DGS code writes them (and viewers expect):
``x y z nx ny nz f_dc_0..2 f_rest_0..(3(K-1)-1) opacity scale_0..2 rot_0..3`` — raw, pre-activation
values (opacity logit, log-scales, quaternion wxyz), ``f_rest`` channel-major (all R coefficients,
then G, then B). Our additions come after and are ignored by viewers: ``identity_0..F-1`` and
``codebook_entry`` (``map.entries_from_logits``, -1 = background). The identity head and map config, which a
PLY vertex list cannot hold, go to a sidecar ``<name>.identity.json`` next to it. The bytes-level
pieces (:func:`ply_bytes`, :func:`parse_ply`, :func:`identity_sidecar`, :func:`map_from_vertices`)
let ``persistence`` hash exactly the bytes it writes and parses.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ocgs_ros.atomic_io import atomic_write_bytes, atomic_write_json
from ocgs_ros.gaussians.map import GaussianMap, GaussianMapConfig, entries_from_logits

_PLY_TYPES = {"float": "f4", "float32": "f4", "double": "f8", "float64": "f8", "int": "i4", "int32": "i4",
              "uint": "u4", "uint32": "u4", "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
              "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1"}
_NUMPY_TO_PLY = {"f4": "float", "f8": "double", "i4": "int", "u4": "uint", "i2": "short", "u2": "ushort",
                 "i1": "char", "u1": "uchar"}

_REQUIRED_FIELDS = ("x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2",
                    "rot_0", "rot_1", "rot_2", "rot_3")


def sidecar_path(ply_path) -> Path:
    ply_path = Path(ply_path)
    return ply_path.with_name(ply_path.stem + ".identity.json")


def map_to_vertices(gmap: GaussianMap) -> np.ndarray:
    p = {k: v.detach().cpu().numpy().astype(np.float32) for k, v in gmap.params.items()}
    n, k_rest = gmap.num_gaussians, p["shN"].shape[1]
    names = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    names += [f"f_rest_{i}" for i in range(3 * k_rest)]
    names += ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    names += [f"identity_{i}" for i in range(p["identity"].shape[1])]
    dtype = [(name, "<f4") for name in names] + [("codebook_entry", "<i4")]
    v = np.zeros(n, dtype=dtype)
    columns = np.concatenate([
        p["means"], np.zeros((n, 3), np.float32), p["sh0"].reshape(n, 3),
        p["shN"].transpose(0, 2, 1).reshape(n, 3 * k_rest),  # channel-major, as 3DGS
        p["opacities"][:, None], p["scales"], p["quats"], p["identity"]], axis=1)
    for i, name in enumerate(names):
        v[name] = columns[:, i]
    with torch.no_grad():
        v["codebook_entry"] = entries_from_logits(gmap.identity_logits(), dim=1).cpu().numpy() if n else []
    return v


def ply_bytes(vertices: np.ndarray) -> bytes:
    """A binary little-endian PLY (header + vertex list) of a structured array."""
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {len(vertices)}"]
    for name in vertices.dtype.names:
        header.append(f"property {_NUMPY_TO_PLY[vertices.dtype[name].str[1:]]} {name}")
    header.append("end_header")
    body = vertices.astype(vertices.dtype.newbyteorder("<"), copy=False).tobytes()
    return ("\n".join(header) + "\n").encode("ascii") + body


def write_ply(path, vertices: np.ndarray) -> None:
    atomic_write_bytes(path, ply_bytes(vertices))


def read_ply(path) -> np.ndarray:
    """Vertices of a binary little-endian PLY as a structured array (ValueError naming any problem)."""
    return parse_ply(Path(path).read_bytes(), path)


def parse_ply(data: bytes, path="PLY") -> np.ndarray:
    """:func:`read_ply` on bytes already read; ``path`` only names the source in errors."""
    end = data.find(b"end_header\n")
    if not data.startswith(b"ply\n") or end < 0:
        raise ValueError(f"{path}: not a PLY file (no 'ply' magic or no end_header)")
    lines = data[:end].decode("ascii", errors="replace").splitlines()
    if "format binary_little_endian 1.0" not in lines:
        raise ValueError(f"{path}: only binary_little_endian PLY is supported")
    count, fields, in_vertex = None, [], False
    for line in lines:
        parts = line.split()
        if parts[:2] == ["element", "vertex"]:
            count, in_vertex = int(parts[2]), True
        elif parts and parts[0] == "element":
            in_vertex = False
        elif parts and parts[0] == "property" and in_vertex:
            if parts[1] not in _PLY_TYPES:
                raise ValueError(f"{path}: unsupported property type {parts[1]!r}")
            fields.append((parts[2], "<" + _PLY_TYPES[parts[1]]))
    if count is None:
        raise ValueError(f"{path}: no vertex element")
    dtype = np.dtype(fields)
    body = data[end + len(b"end_header\n"):]
    if len(body) < count * dtype.itemsize:
        raise ValueError(f"{path}: truncated: {len(body)} bytes for {count} vertices of {dtype.itemsize} bytes")
    return np.frombuffer(body, dtype=dtype, count=count)


def identity_sidecar(gmap: GaussianMap) -> dict:
    """What a PLY vertex list cannot hold: the map config and the identity head's weights."""
    head = {k: v.detach().cpu().tolist() for k, v in gmap.identity_head.state_dict().items()}
    return {"config": gmap.to_dict()["config"], "identity_head": head}


def save_ply(path, gmap: GaussianMap) -> Path:
    """Write ``path`` (3DGS PLY) and its identity sidecar, each atomically (sidecar first).

    Two renames, so not atomic as a pair: a whole map goes through ``persistence.save_map``."""
    path = Path(path)
    atomic_write_json(sidecar_path(path), identity_sidecar(gmap))
    write_ply(path, map_to_vertices(gmap))
    return path


def load_ply(path) -> GaussianMap:
    path = Path(path)
    vertices = read_ply(path)
    side = sidecar_path(path)
    if not side.is_file():
        raise ValueError(f"{path}: identity sidecar {side.name} is missing")
    return map_from_vertices(vertices, json.loads(side.read_text()), path)


def map_from_vertices(vertices: np.ndarray, meta: dict, path="PLY") -> GaussianMap:
    """The map from PLY vertices and their identity sidecar (:func:`identity_sidecar`); ValueError if they disagree."""
    if not isinstance(meta, dict) or not {"config", "identity_head"} <= meta.keys():
        raise ValueError(f"{path}: the identity sidecar needs 'config' and 'identity_head'")
    config = GaussianMapConfig.from_dict(meta["config"])
    names = vertices.dtype.names
    missing = [n for n in _REQUIRED_FIELDS if n not in names]
    if missing:
        raise ValueError(f"{path}: not a 3DGS PLY: no vertex field(s) {', '.join(missing)}")
    k_rest = sum(1 for n in names if n.startswith("f_rest_")) // 3
    id_dim = sum(1 for n in names if n.startswith("identity_"))
    if k_rest != config.num_sh_rest or id_dim != config.identity_dim:
        raise ValueError(f"{path}: {k_rest} SH rest / {id_dim} identity fields do not match the sidecar config")

    def cols(prefix, count):
        return np.stack([vertices[f"{prefix}{i}"] for i in range(count)], axis=1) if count else \
            np.zeros((len(vertices), 0), np.float32)

    n = len(vertices)
    params = {
        "means": np.stack([vertices["x"], vertices["y"], vertices["z"]], 1),
        "quats": cols("rot_", 4), "scales": cols("scale_", 3), "opacities": np.asarray(vertices["opacity"]),
        "sh0": cols("f_dc_", 3).reshape(n, 1, 3),
        "shN": cols("f_rest_", 3 * k_rest).reshape(n, 3, k_rest).transpose(0, 2, 1),
        "identity": cols("identity_", id_dim),
    }
    head = {k: torch.tensor(v, dtype=torch.float32) for k, v in meta["identity_head"].items()}
    return GaussianMap.from_dict({"config": meta["config"],
                                  "params": {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32))
                                             for k, v in params.items()},
                                  "identity_head": head})
