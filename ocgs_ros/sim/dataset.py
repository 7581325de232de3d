"""On-disk datasets of simulated scenes for offline training (layout in docs/datasets.md).

One folder per scene (``scene_00000/``) with ``scene.json`` (ground truth, poses, intrinsics) and
``frames.npz`` (stacked arrays). Every scene is seeded from (dataset seed, scene index), so scenes
are independent and any subset reproduces; each is written to a temporary folder and renamed into
place, so an interrupted run resumes by skipping the scenes already complete.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path
from typing import Iterator

import numpy as np
from tqdm import tqdm

from .classes import BOX_CLASSES, MAP_CLASSES
from .driving import DrivingWorld
from .tabletop import TabletopWorld
from .types import DrivingConfig, TabletopConfig

FORMAT_VERSION = 1


def scene_seed(dataset_seed: int, scene_index: int) -> int:
    """The world seed of one scene: independent streams per (dataset seed, scene index)."""
    return int(np.random.SeedSequence([int(dataset_seed), int(scene_index)]).generate_state(1)[0])


def _scene_dir(root: Path, index: int) -> Path:
    return root / f"scene_{index:05d}"


def _write_scene(root: Path, index: int, arrays: dict, meta: dict) -> None:
    final = _scene_dir(root, index)
    staging = root / f".{final.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    np.savez_compressed(staging / "frames.npz", **arrays)
    (staging / "scene.json").write_text(json.dumps(meta, indent=1))
    if final.exists():
        shutil.rmtree(final)
    os.replace(staging, final)


def _write_meta(root: Path, meta: dict) -> None:
    root.mkdir(parents=True, exist_ok=True)
    existing = root / "meta.json"
    if existing.exists():
        old = json.loads(existing.read_text())
        new = json.loads(json.dumps(meta))  # compare as stored (tuples become lists)
        if {k: v for k, v in old.items() if k != "num_scenes"} != {k: v for k, v in new.items() if k != "num_scenes"}:
            raise ValueError(f"{root} holds a dataset made with other settings; use a new folder")
    tmp = root / ".meta.json.tmp"
    tmp.write_text(json.dumps(meta, indent=1))
    os.replace(tmp, existing)


def _pending(root: Path, num_scenes: int) -> list[int]:
    return [i for i in range(num_scenes) if not (_scene_dir(root, i) / "scene.json").exists()]


def write_tabletop_dataset(root, num_scenes: int, views_per_scene: int, width: int, height: int, seed: int = 0,
                           config: TabletopConfig | None = None, with_lidar: bool = False,
                           progress: bool = True) -> Path:
    """Tabletop scenes seen from ``views_per_scene`` orbit poses each (evenly spread, random phase)."""
    root = Path(root)
    config = dataclasses.replace(config or TabletopConfig(),
                                 camera=dataclasses.replace((config or TabletopConfig()).camera, width=width, height=height))
    world0 = TabletopWorld(config, seed=0)
    _write_meta(root, {
        "kind": "tabletop", "format_version": FORMAT_VERSION, "seed": seed, "num_scenes": num_scenes,
        "views_per_scene": views_per_scene, "width": width, "height": height, "with_lidar": with_lidar,
        "config": dataclasses.asdict(config),
        "catalogue": [dataclasses.asdict(k) for k in world0.catalogue],
    })
    for index in tqdm(_pending(root, num_scenes), desc="tabletop scenes", disable=not progress):
        world = TabletopWorld(config, seed=scene_seed(seed, index))
        rng = np.random.default_rng(scene_seed(seed, index) + 1)
        step = config.frames_per_orbit / views_per_scene
        frame_ids = [int(round(k * step + rng.uniform(0, step))) % config.frames_per_orbit
                     for k in range(views_per_scene)]
        frames = [world.frame(i) for i in frame_ids]
        arrays = {
            "rgb": np.stack([f.camera.rgb for f in frames]),
            "depth": np.stack([f.camera.depth for f in frames]),
            "instance": np.stack([f.camera.instance for f in frames]),
            "kind": np.stack([f.camera.kind for f in frames]),
        }
        if with_lidar:
            arrays["lidar_points"] = np.concatenate([f.lidar.points for f in frames])
            arrays["lidar_instance"] = np.concatenate([f.lidar.instance for f in frames])
            arrays["lidar_counts"] = np.array([len(f.lidar.points) for f in frames], dtype=np.int64)
        meta = {
            "scene_index": index, "world_seed": scene_seed(seed, index),
            "objects": [{**{k: (v.tolist() if isinstance(v, np.ndarray) else v)
                            for k, v in dataclasses.asdict(o).items()}} for o in world.objects],
            "frames": [{"frame_index": f.index, "stamp_ns": f.stamp_ns, "K": f.camera.K.tolist(),
                        "T_world_cam": f.camera.T_world_cam.tolist(), "T_world_base": f.T_world_base.tolist(),
                        "T_base_lidar": f.T_base_lidar.tolist()} for f in frames],
        }
        _write_scene(root, index, arrays, meta)
    return root


def write_driving_dataset(root, num_scenes: int, frames_per_scene: int, seed: int = 0,
                          config: DrivingConfig | None = None, frame_stride: int = 5,
                          progress: bool = True) -> Path:
    """Driving scenes: ``frames_per_scene`` frames ``frame_stride`` apart along the ego's drive."""
    root = Path(root)
    config = config or DrivingConfig()
    _write_meta(root, {
        "kind": "driving", "format_version": FORMAT_VERSION, "seed": seed, "num_scenes": num_scenes,
        "frames_per_scene": frames_per_scene, "frame_stride": frame_stride, "config": dataclasses.asdict(config),
        "map_classes": list(MAP_CLASSES), "box_classes": list(BOX_CLASSES),
    })
    for index in tqdm(_pending(root, num_scenes), desc="driving scenes", disable=not progress):
        world = DrivingWorld(config, seed=scene_seed(seed, index))
        frames = [world.frame(i * frame_stride) for i in range(frames_per_scene)]
        lidar = [np.concatenate([f.lidar.points, f.lidar.intensity[:, None]], axis=1) for f in frames]
        arrays = {
            "images": np.stack([np.stack([c.rgb for c in f.cameras]) for f in frames]),  # [V, C, H, W, 3]
            "camera_K": np.stack([c.K for c in frames[0].cameras]),
            "T_ego_cam": np.stack([c.T_ego_cam for c in frames[0].cameras]),
            "T_ego_lidar": frames[0].lidar.T_ego_lidar,
            "lidar_points": np.concatenate(lidar).astype(np.float32),  # x y z intensity, LiDAR frame
            "lidar_counts": np.array([len(p) for p in lidar], dtype=np.int64),
            "boxes": np.concatenate([f.boxes for f in frames]).astype(np.float32),
            "box_classes": np.concatenate([f.box_classes for f in frames]).astype(np.int32),
            "box_num_points": np.concatenate([f.box_num_points for f in frames]).astype(np.int32),
            "box_counts": np.array([len(f.boxes) for f in frames], dtype=np.int64),
            "map_layers": np.stack([f.map_layers for f in frames]),
            "T_world_ego": np.stack([f.T_world_ego for f in frames]),
            "stamps_ns": np.array([f.stamp_ns for f in frames], dtype=np.int64),
        }
        meta = {"scene_index": index, "world_seed": scene_seed(seed, index),
                "frame_indices": [f.index for f in frames]}
        _write_scene(root, index, arrays, meta)
    return root


class _SceneFolderDataset:
    kind = ""

    def __init__(self, root):
        self.root = Path(root)
        meta_path = self.root / "meta.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"{self.root} is not a dataset (no meta.json)")
        self.meta = json.loads(meta_path.read_text())
        if self.meta.get("kind") != self.kind:
            raise ValueError(f"{self.root} holds a {self.meta.get('kind')!r} dataset, not {self.kind!r}")
        self.scene_dirs = sorted(p for p in self.root.glob("scene_*") if (p / "scene.json").is_file())

    def __len__(self) -> int:
        return len(self.scene_dirs)

    def scene(self, index: int) -> dict:
        folder = self.scene_dirs[index]
        with np.load(folder / "frames.npz") as data:
            arrays = {k: data[k] for k in data.files}
        arrays["meta"] = json.loads((folder / "scene.json").read_text())
        return arrays


class TabletopDataset(_SceneFolderDataset):
    kind = "tabletop"

    def iter_views(self) -> Iterator[dict]:
        """Every view: ``rgb``, ``depth``, ``instance``, ``kind`` arrays plus scene/view indices."""
        for s in range(len(self)):
            scene = self.scene(s)
            for v in range(len(scene["rgb"])):
                yield {"scene": s, "view": v, **{k: scene[k][v] for k in ("rgb", "depth", "instance", "kind")}}


class DrivingDataset(_SceneFolderDataset):
    kind = "driving"

    def frame(self, scene_index: int, view: int, scene: dict | None = None) -> dict:
        """One frame: images [C,H,W,3], K, T_ego_cam, LiDAR points [N,4] (LiDAR frame), boxes, classes,
        map layers, ego pose."""
        scene = scene if scene is not None else self.scene(scene_index)
        p0, p1 = np.concatenate([[0], np.cumsum(scene["lidar_counts"])])[view:view + 2]
        b0, b1 = np.concatenate([[0], np.cumsum(scene["box_counts"])])[view:view + 2]
        return {
            "images": scene["images"][view], "camera_K": scene["camera_K"], "T_ego_cam": scene["T_ego_cam"],
            "T_ego_lidar": scene["T_ego_lidar"], "lidar_points": scene["lidar_points"][p0:p1],
            "boxes": scene["boxes"][b0:b1], "box_classes": scene["box_classes"][b0:b1],
            "box_num_points": scene["box_num_points"][b0:b1], "map_layers": scene["map_layers"][view],
            "T_world_ego": scene["T_world_ego"][view], "stamp_ns": int(scene["stamps_ns"][view]),
        }
