"""Torch datasets of BEV training samples from the simulator's driving datasets (docs/datasets.md).

``SimDrivingRecords`` reads ``ocgs_ros.sim.dataset.DrivingDataset`` frames as
:class:`~ocgs_ros.bev.frames.FrameRecord` (LiDAR moved from the LiDAR frame to the ego frame,
map layers on the simulator's BEV grid); ``BevSampleDataset`` turns any sequence of records
into model samples for a :class:`BevConfig` (resized images, cropped points, CenterPoint and map
targets); ``driving_dataset`` reads either a simulated folder or a nuScenes-format dataroot
(:mod:`ocgs_ros.bev.nuscenes`), what ``bev_train`` / ``bev_evaluate`` take. Samples are prepared
once and kept in memory: the simulated sets used here are small and training then costs no
decoding per step.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
from torch.utils.data import Dataset

from ..sim.dataset import DrivingDataset
from .config import BOX_CLASSES, MAP_CLASSES, BevConfig, GridSpec
from .frames import FrameRecord, record_to_sample
from .nuscenes import NuScenesRecords, nuscenes_versions


def lidar_to_ego(points: np.ndarray, T_ego_lidar: np.ndarray) -> np.ndarray:
    """``[P, 4]`` (x, y, z, intensity) from the LiDAR frame to the ego frame (float32)."""
    xyz = points[:, :3].astype(np.float64) @ T_ego_lidar[:3, :3].T + T_ego_lidar[:3, 3]
    return np.concatenate([xyz, points[:, 3:4]], axis=1).astype(np.float32)


class SimDrivingRecords(Sequence[FrameRecord]):
    """Every frame of a simulated driving dataset folder as a :class:`FrameRecord`."""

    def __init__(self, root: str | Path, max_scenes: int | None = None) -> None:
        self.dataset = DrivingDataset(root)
        meta = self.dataset.meta
        if tuple(meta.get("map_classes", ())) != MAP_CLASSES or tuple(meta.get("box_classes", ())) != BOX_CLASSES:
            raise ValueError(f"{root}: class lists {meta.get('map_classes')} / {meta.get('box_classes')} differ "
                             f"from the BEV model's {MAP_CLASSES} / {BOX_CLASSES}")
        g = meta["config"]["bev_grid"]
        self.map_grid = GridSpec(g["x_min"], g["x_max"], g["y_min"], g["y_max"], g["resolution"])
        scenes = len(self.dataset) if max_scenes is None else min(max_scenes, len(self.dataset))
        if scenes == 0:
            raise ValueError(f"{root}: dataset has no complete scenes")
        self.index = [(s, v) for s in range(scenes) for v in range(int(meta["frames_per_scene"]))]
        self._cache: tuple[int, dict] | None = None

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> FrameRecord:  # type: ignore[override]
        scene_index, view = self.index[i]
        if self._cache is None or self._cache[0] != scene_index:
            self._cache = (scene_index, self.dataset.scene(scene_index))
        f = self.dataset.frame(scene_index, view, self._cache[1])
        return FrameRecord(
            images=f["images"], intrinsics=f["camera_K"], T_ego_cam=f["T_ego_cam"],
            points=lidar_to_ego(f["lidar_points"], f["T_ego_lidar"]), boxes=f["boxes"],
            labels=f["box_classes"].astype(np.int64), num_points=f["box_num_points"].astype(np.int64),
            map_layers=f["map_layers"], map_grid=self.map_grid, token=f"scene{scene_index:05d}_frame{view:03d}")

    def __iter__(self) -> Iterator[FrameRecord]:
        return (self[i] for i in range(len(self)))


class BevSampleDataset(Dataset):
    """Model samples (see ``frames.record_to_sample``) of a sequence of frame records, in memory."""

    def __init__(self, records: Sequence[FrameRecord], cfg: BevConfig, min_points: int = 1) -> None:
        self.cfg = cfg
        self.samples = [record_to_sample(r, cfg, min_points) for r in records]
        if not self.samples:
            raise ValueError("BevSampleDataset: no frames")
        self.has_map = all("map" in s for s in self.samples)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.samples[i]


def sim_dataset(root: str | Path, cfg: BevConfig, max_scenes: int | None = None) -> BevSampleDataset:
    """Samples of a simulated driving dataset folder for ``cfg``."""
    return BevSampleDataset(SimDrivingRecords(root, max_scenes), cfg)


def driving_dataset(root: str | Path, cfg: BevConfig, max_scenes: int | None = None,
                    nuscenes_version: str | None = None) -> BevSampleDataset:
    """Samples of a simulated dataset folder or of a nuScenes-format dataroot (one with a
    ``<version>/sample.json``; ``nuscenes_version`` picks one where there are several; all key
    frames are read, ``max_scenes`` applies to simulated folders)."""
    versions = nuscenes_versions(root)
    if nuscenes_version is None and not versions:
        return sim_dataset(root, cfg, max_scenes)
    if nuscenes_version is None and len(versions) > 1:
        raise ValueError(f"{root}: several nuScenes versions {versions}; choose one with --nuscenes-version")
    return BevSampleDataset(NuScenesRecords(root, nuscenes_version or versions[0]), cfg)
