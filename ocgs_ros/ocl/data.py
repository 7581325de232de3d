"""GOCL training/evaluation data: simulated tabletop views, or the user's own unlabelled recordings
(ocl/recordings.py, made by ``gocl_data --bag`` / ``--images``), held in memory as a torch ``Dataset``.

The GOCL scenes are an easier variant of the simulator's default tabletop (see
:func:`gocl_tabletop_config`): 2–5 objects, a closer camera with a narrower field of view, so that
at 48×48 pixels every object covers tens to hundreds of pixels. All 24 catalogue kinds stay in
play. Training data is dataset seed :data:`TRAIN_SEED` (0), held-out data seed
:data:`HELDOUT_SEED` (1): scene *i* of a dataset is world seed ``SeedSequence([seed, i])``, so no
held-out scene occurs in training.

Views are stored once as uint8 (an 8000-view 48×48 dataset is ~55 MB) and converted to float
``[3, H, W]`` in [0, 1] per item, which keeps memory small and loading fast.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from ..sim.dataset import TabletopDataset, write_tabletop_dataset
from ..sim.types import CameraConfig, TabletopConfig
from .recordings import RecordingDataset, is_recording_dataset

TRAIN_SEED = 0
HELDOUT_SEED = 1
DEFAULT_VIEWS_PER_SCENE = 4


def gocl_tabletop_config(width: int = 48, height: int = 48) -> TabletopConfig:
    """The tabletop world GOCL is trained and evaluated on.

    Why easier than the default world: at 48×48 the default camera (orbit 0.95 m, 60° FOV, up to
    12 objects) renders objects of 5–60 pixels, below what a CPU-sized slot model can separate.
    Here the camera orbits at 0.6 m with a 40° FOV, objects lie within 0.22 m of the table centre
    and a scene holds 2–5 of them, so each object covers roughly 40–150 pixels at 48×48 and fits
    the 5 object slots of the ``cpu`` preset. The catalogue (all 24 kinds) is unchanged.
    """
    return TabletopConfig(
        camera=CameraConfig(width=width, height=height, hfov_deg=40.0),
        min_objects=2, max_objects=5, placement_radius=0.22,
        orbit_radius=0.6, orbit_radius_variation=0.05,
        camera_height=0.45, camera_height_variation=0.04,
    )


def ensure_gocl_dataset(root: str | Path, num_scenes: int, seed: int, width: int = 48, height: int = 48,
                        views_per_scene: int = DEFAULT_VIEWS_PER_SCENE, progress: bool = True) -> Path:
    """Create (or complete — the writer resumes) the GOCL tabletop dataset at ``root``.

    A folder that already holds a dataset with other settings is refused by the writer.
    """
    if num_scenes <= 0 or views_per_scene <= 0:
        raise ValueError(f"num_scenes and views_per_scene must be > 0 (got {num_scenes}, {views_per_scene})")
    return write_tabletop_dataset(root, num_scenes, views_per_scene, width, height, seed=seed,
                                  config=gocl_tabletop_config(width, height), progress=progress)


def ensure_gocl_datasets(data_root: str | Path = "data", train_scenes: int = 2000, heldout_scenes: int = 200,
                         width: int = 48, height: int = 48, views_per_scene: int = DEFAULT_VIEWS_PER_SCENE,
                         progress: bool = True) -> tuple[Path, Path]:
    """``<data_root>/gocl_train`` (seed 0) and ``<data_root>/gocl_heldout`` (seed 1), made if missing."""
    data_root = Path(data_root)
    train = ensure_gocl_dataset(data_root / "gocl_train", train_scenes, TRAIN_SEED, width, height,
                                views_per_scene, progress)
    heldout = ensure_gocl_dataset(data_root / "gocl_heldout", heldout_scenes, HELDOUT_SEED, width, height,
                                  views_per_scene, progress)
    return train, heldout


def _resize_rgb(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize ``[V, H, W, 3]`` views to ``size`` = (H, W) with the area filter."""
    height, width = size
    return np.stack([cv2.resize(v, (width, height), interpolation=cv2.INTER_AREA) for v in rgb])


def _resize_views(rgb: np.ndarray, instance: np.ndarray, kind: np.ndarray, size: tuple[int, int]
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Resize ``[V, H, W, ...]`` views to ``size`` = (H, W): area filter for RGB, nearest for labels."""
    height, width = size
    rgb = _resize_rgb(rgb, size)
    instance = np.stack([cv2.resize(v, (width, height), interpolation=cv2.INTER_NEAREST) for v in instance])
    kind = np.stack([cv2.resize(v, (width, height), interpolation=cv2.INTER_NEAREST) for v in kind])
    return rgb, instance, kind


class GoclViewDataset(Dataset):
    """Every view of a :class:`~ocgs_ros.sim.dataset.TabletopDataset` or of a recording dataset
    (:class:`~ocgs_ros.ocl.recordings.RecordingDataset`), in memory.

    Items are dicts: ``image`` float32 ``[3, H, W]`` in [0, 1], ``instance`` int64 ``[H, W]``
    (0 = background), ``kind`` int64 ``[H, W]`` (-1 = background), ``scene`` and ``view`` (int).
    A recording has no labels: ``has_labels`` is False, ``instance``/``kind`` are None and its
    items carry no ``instance``/``kind`` keys (label metrics are skipped on it).
    ``size`` = (H, W) resizes views that differ (area filter for RGB, nearest for labels).
    ``hflip`` mirrors each item left-right with probability 1/2 (training augmentation; drawn
    from torch's global RNG, so a seeded run is reproducible).
    """

    def __init__(self, root: str | Path, size: tuple[int, int] | None = None, hflip: bool = False,
                 max_scenes: int | None = None, progress: bool = False):
        self.has_labels = not is_recording_dataset(root)
        self.source = TabletopDataset(root) if self.has_labels else RecordingDataset(root)
        if len(self.source) == 0:
            raise ValueError(f"{root}: dataset holds no complete scene")
        num_scenes = len(self.source) if max_scenes is None else min(int(max_scenes), len(self.source))
        if num_scenes <= 0:
            raise ValueError(f"max_scenes must be > 0 (got {max_scenes})")
        rgb, instance, kind, scene_index, view_index = [], [], [], [], []
        for s in tqdm(range(num_scenes), desc=f"loading {Path(root).name}", disable=not progress):
            scene = self.source.scene(s)
            views_rgb = scene["rgb"]
            resize = size is not None and tuple(views_rgb.shape[1:3]) != tuple(size)
            if self.has_labels:
                views_instance, views_kind = scene["instance"], scene["kind"]
                if resize:
                    views_rgb, views_instance, views_kind = _resize_views(views_rgb, views_instance, views_kind, size)
                instance.append(views_instance.astype(np.int32))
                kind.append(views_kind.astype(np.int32))
            elif resize:
                views_rgb = _resize_rgb(views_rgb, size)
            rgb.append(views_rgb)
            scene_index += [s] * len(views_rgb)
            view_index += list(range(len(views_rgb)))
        self.rgb = torch.from_numpy(np.ascontiguousarray(np.concatenate(rgb)))  # uint8 [N, H, W, 3]
        self.instance = torch.from_numpy(np.concatenate(instance)) if self.has_labels else None  # int32 [N, H, W]
        self.kind = torch.from_numpy(np.concatenate(kind)) if self.has_labels else None
        self.scene_index = torch.tensor(scene_index, dtype=torch.int64)
        self.view_index = torch.tensor(view_index, dtype=torch.int64)
        self.hflip = bool(hflip)
        self.num_scenes = num_scenes

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.rgb.shape[1]), int(self.rgb.shape[2])

    def __len__(self) -> int:
        return int(self.rgb.shape[0])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int]:
        image = self.rgb[index].permute(2, 0, 1).float().div_(255.0)
        flip = self.hflip and bool(torch.rand(()) < 0.5)
        item: dict[str, torch.Tensor | int] = {"image": image.flip(-1) if flip else image,
                                               "scene": int(self.scene_index[index]),
                                               "view": int(self.view_index[index])}
        if self.has_labels:
            instance, kind = self.instance[index].long(), self.kind[index].long()
            item.update(instance=instance.flip(-1) if flip else instance, kind=kind.flip(-1) if flip else kind)
        return item


def dataset_description(root: str | Path) -> dict:
    """Seed, scene count, image size (and, for recordings, kind and view count) recorded in a
    dataset's ``meta.json`` (for result files)."""
    meta = json.loads((Path(root) / "meta.json").read_text())
    keys = ("seed", "num_scenes", "views_per_scene", "width", "height")
    if meta.get("kind") == "recording":  # no seed, no views per scene: a storage chunk is no scene
        keys = ("kind", "num_scenes", "num_views", "width", "height")
    return {key: meta.get(key) for key in keys}


__all__ = ["GoclViewDataset", "HELDOUT_SEED", "TRAIN_SEED", "dataset_description", "ensure_gocl_dataset",
           "ensure_gocl_datasets", "gocl_tabletop_config"]


def main(argv: list[str] | None = None) -> None:
    """``python -m ocgs_ros.ocl.data --root data``: create the GOCL train/held-out datasets."""
    import argparse

    parser = argparse.ArgumentParser(prog="gocl_data", description=main.__doc__)
    parser.add_argument("--root", default="data", help="parent folder of gocl_train/ and gocl_heldout/")
    parser.add_argument("--train-scenes", type=int, default=2000)
    parser.add_argument("--heldout-scenes", type=int, default=200)
    parser.add_argument("--views", type=int, default=DEFAULT_VIEWS_PER_SCENE)
    parser.add_argument("--size", type=int, default=48, help="image width and height in pixels")
    args = parser.parse_args(argv)
    train, heldout = ensure_gocl_datasets(args.root, args.train_scenes, args.heldout_scenes, args.size,
                                          args.size, args.views)
    print(f"gocl_data: train {train}, held-out {heldout}")


if __name__ == "__main__":
    main()
