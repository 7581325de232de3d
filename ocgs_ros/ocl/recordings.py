"""Unlabelled GOCL training sets from the user's own images (no ROS here; bags: ocgs_ros/ros/gocl_data.py).

    python -m ocgs_ros.ocl.recordings --images photos/ --out data/my_robot [--size 128] [--seed 0]

The codebook is learned without labels, so a robot's own recordings are all it needs. A
recording dataset has the on-disk layout of the simulated ones (ocgs_ros/sim/dataset.py) minus
the labels: ``meta.json`` (``"kind": "recording"``, ``"labels": false``, image size, source),
``scene_XXXXX/frames.npz`` holding ``rgb`` uint8 ``[V, S, S, 3]`` and ``scene.json`` naming each
view's origin (file name, or topic and stamp), ``CHUNK_VIEWS`` views per scene folder (a "scene"
is only a storage chunk here), plus ``summary.json`` with the counts below.
:class:`ocgs_ros.ocl.data.GoclViewDataset` reads it, so ``gocl_train --data`` trains on it.

Each frame is, in order:

* **too soon** — with ``every_s`` > 0, dropped unless ``every_s`` seconds passed since the last kept
  frame (time subsampling, by the frames' own stamps);
* **centre-cropped to a square and resized** to ``size`` x ``size`` (area filter). Why crop, not
  squash: a squashed 16:9 frame teaches the codebook objects 1.8x wider than they are. Why no
  intrinsics: GOCL learns from the pixels only. The edges of a wide frame are lost;
* **a near-duplicate** — dropped when the mean absolute difference of its 16x16 grey thumbnail from
  the last kept frame's is below ``duplicate_threshold`` grey levels (0-255): a robot standing
  still records the same view hundreds of times, which would weigh the training set towards it;
* **kept** — or, with ``max_frames``, a uniform random sample of at most that many kept frames
  (reservoir sampling seeded with ``seed``, so the same recording gives the same set).

Bad frames (undecodable, wrong size) are counted per reason and skipped, never fatal.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from ..atomic_io import atomic_write_json

RECORDING_KIND = "recording"
FORMAT_VERSION = 1
CHUNK_VIEWS = 256
DEFAULT_SIZE = 128
THUMBNAIL_SIDE = 16
DEFAULT_DUPLICATE_THRESHOLD = 2.0
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
SUMMARY_NAME = "summary.json"


class RecordingError(ValueError):
    """The input or output of a recording dataset is unusable (one line for the user)."""


def centre_square(rgb: np.ndarray, size: int) -> np.ndarray:
    """uint8 ``[H, W, 3]`` -> the largest centred square, resized to ``[size, size, 3]`` (area filter)."""
    height, width = rgb.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = rgb[top:top + side, left:left + side]
    if side == size:
        return np.ascontiguousarray(square)
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return cv2.resize(square, (size, size), interpolation=interpolation)


def thumbnail(rgb: np.ndarray) -> np.ndarray:
    """16x16 grey float32 thumbnail (0-255) for near-duplicate tests."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return cv2.resize(grey, (THUMBNAIL_SIDE, THUMBNAIL_SIDE), interpolation=cv2.INTER_AREA).astype(np.float32)


@dataclass
class RecordingCounts:
    """What happened to the frames offered to a :class:`RecordingWriter`."""

    frames_read: int = 0
    kept: int = 0
    skipped_duplicates: int = 0
    skipped_too_soon: int = 0
    skipped_over_max: int = 0
    bad: int = 0
    bad_reasons: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {"frames_read": self.frames_read, "frames_kept": self.kept,
                "skipped_duplicates": self.skipped_duplicates, "skipped_too_soon": self.skipped_too_soon,
                "skipped_over_max_frames": self.skipped_over_max, "bad_frames": self.bad,
                "bad_reasons": dict(sorted(self.bad_reasons.items()))}


class RecordingWriter:
    """Turns a stream of RGB frames into a recording dataset at ``out`` (see the module docstring).

    ``out`` must not exist or be empty. Frames go in with :meth:`add` (or :meth:`add_bad` for a frame
    that could not be decoded); :meth:`close` writes the dataset and returns the summary.
    """

    def __init__(self, out: str | os.PathLike, size: int = DEFAULT_SIZE, every_s: float = 0.0,
                 duplicate_threshold: float = DEFAULT_DUPLICATE_THRESHOLD, max_frames: int | None = None,
                 seed: int = 0, source: dict[str, Any] | None = None):
        if size < 8:
            raise RecordingError(f"size must be >= 8 pixels (got {size})")
        if every_s < 0 or duplicate_threshold < 0:
            raise RecordingError(f"every_s and duplicate_threshold must be >= 0 (got {every_s}, {duplicate_threshold})")
        if max_frames is not None and max_frames < 1:
            raise RecordingError(f"max_frames must be >= 1 (got {max_frames})")
        self.out = Path(out)
        if self.out.exists() and (not self.out.is_dir() or any(self.out.iterdir())):
            raise RecordingError(f"{self.out} exists and is not an empty folder; choose a new --out")
        self.size, self.every_s, self.threshold = int(size), float(every_s), float(duplicate_threshold)
        self.max_frames, self.seed = max_frames, int(seed)
        self.source = dict(source or {})
        self.counts = RecordingCounts()
        self._rng = np.random.default_rng(self.seed)
        self._last_thumbnail: np.ndarray | None = None
        self._last_stamp_ns: int | None = None
        self._views: list[np.ndarray] = []  # current chunk (or the reservoir, with max_frames)
        self._origins: list[dict[str, Any]] = []
        self._scenes = 0
        # Written under a hidden staging folder and renamed at close: an interrupted run leaves no
        # folder that looks like a finished dataset.
        self._staging = self.out.with_name(f".{self.out.name}.partial")
        shutil.rmtree(self._staging, ignore_errors=True)
        self._staging.mkdir(parents=True)

    def add_bad(self, reason: str) -> None:
        self.counts.frames_read += 1
        self.counts.bad += 1
        self.counts.bad_reasons[reason] += 1

    def add(self, rgb: np.ndarray, origin: dict[str, Any], stamp_ns: int | None = None) -> str:
        """Offer one uint8 RGB ``[H, W, 3]`` frame; returns what became of it: ``"kept"``,
        ``"duplicate"``, ``"too_soon"`` or ``"bad"``."""
        rgb = np.asarray(rgb)
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3 or min(rgb.shape[:2]) < 1:
            self.add_bad("not_uint8_rgb")
            return "bad"
        self.counts.frames_read += 1
        if (self.every_s > 0 and stamp_ns is not None and self._last_stamp_ns is not None
                and stamp_ns - self._last_stamp_ns < self.every_s * 1e9):
            self.counts.skipped_too_soon += 1
            return "too_soon"
        square = centre_square(rgb, self.size)
        small = thumbnail(square)
        if self._last_thumbnail is not None and float(np.abs(small - self._last_thumbnail).mean()) < self.threshold:
            self.counts.skipped_duplicates += 1
            return "duplicate"
        self._last_thumbnail, self._last_stamp_ns = small, stamp_ns
        self.counts.kept += 1
        self._keep(square, {**origin, **({"stamp_ns": int(stamp_ns)} if stamp_ns is not None else {})})
        return "kept"

    def _keep(self, square: np.ndarray, origin: dict[str, Any]) -> None:
        if self.max_frames is None:
            self._views.append(square)
            self._origins.append(origin)
            if len(self._views) == CHUNK_VIEWS:
                self._flush()
            return
        # Reservoir sampling (algorithm R): every kept frame ends in the sample with equal chance.
        if len(self._views) < self.max_frames:
            self._views.append(square)
            self._origins.append(origin)
            return
        self.counts.skipped_over_max += 1
        slot = int(self._rng.integers(self.counts.kept))
        if slot < self.max_frames:
            self._views[slot], self._origins[slot] = square, origin

    def _flush(self) -> None:
        for first in range(0, len(self._views), CHUNK_VIEWS):
            folder = self._staging / f"scene_{self._scenes:05d}"
            folder.mkdir()
            np.savez_compressed(folder / "frames.npz", rgb=np.stack(self._views[first:first + CHUNK_VIEWS]))
            (folder / "scene.json").write_text(json.dumps(
                {"scene_index": self._scenes, "views": self._origins[first:first + CHUNK_VIEWS]}, indent=1))
            self._scenes += 1
        self._views, self._origins = [], []

    def close(self) -> dict[str, Any]:
        """Write the remaining views, ``meta.json`` and ``summary.json``; returns the summary."""
        if self.max_frames is not None:  # the sample in recording order
            order = sorted(range(len(self._views)), key=lambda i: self._origins[i].get("index", i))
            self._views = [self._views[i] for i in order]
            self._origins = [self._origins[i] for i in order]
        if self._views:
            self._flush()
        summary = {**self.counts.as_dict(), "frames_in_dataset": self.counts.kept - self.counts.skipped_over_max,
                   "size": self.size, "every_s": self.every_s, "duplicate_threshold": self.threshold,
                   "max_frames": self.max_frames, "seed": self.seed, "source": self.source}
        if summary["frames_in_dataset"] == 0:
            shutil.rmtree(self._staging, ignore_errors=True)
            raise RecordingError(f"no usable frame among {self.counts.frames_read} read "
                                 f"({self.counts.bad} bad: {dict(self.counts.bad_reasons)}); nothing written")
        meta = {"kind": RECORDING_KIND, "format_version": FORMAT_VERSION, "labels": False,
                "num_scenes": self._scenes, "num_views": summary["frames_in_dataset"], "width": self.size,
                "height": self.size, "crop": "centre square", "source": self.source}
        atomic_write_json(self._staging / "meta.json", meta)
        atomic_write_json(self._staging / SUMMARY_NAME, summary)
        if self.out.exists():
            self.out.rmdir()  # checked empty at start
        os.replace(self._staging, self.out)
        return summary

    def abort(self) -> None:
        shutil.rmtree(self._staging, ignore_errors=True)


class RecordingDataset:
    """Reads a recording dataset (same ``len`` / ``scene(i)["rgb"]`` interface as the simulated ones)."""

    kind = RECORDING_KIND

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        meta_path = self.root / "meta.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"{self.root} is not a dataset (no meta.json)")
        self.meta = json.loads(meta_path.read_text())
        if self.meta.get("kind") != RECORDING_KIND:
            raise ValueError(f"{self.root} holds a {self.meta.get('kind')!r} dataset, not {RECORDING_KIND!r}")
        self.scene_dirs = sorted(p for p in self.root.glob("scene_*") if (p / "frames.npz").is_file())

    def __len__(self) -> int:
        return len(self.scene_dirs)

    def scene(self, index: int) -> dict[str, Any]:
        with np.load(self.scene_dirs[index] / "frames.npz") as data:
            return {"rgb": data["rgb"]}


def is_recording_dataset(root: str | os.PathLike) -> bool:
    """Whether ``root`` holds a recording dataset (unlabelled), as opposed to a simulated one."""
    meta_path = Path(root) / "meta.json"
    if not meta_path.is_file():
        return False
    try:
        return json.loads(meta_path.read_text()).get("kind") == RECORDING_KIND
    except (ValueError, OSError):
        return False


def read_image_file(path: Path) -> np.ndarray | None:
    """uint8 RGB ``[H, W, 3]`` of an image file (grey and alpha converted; 16-bit scaled), or None."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        return None
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    if image.dtype != np.uint8:
        return None
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    codes = {3: cv2.COLOR_BGR2RGB, 4: cv2.COLOR_BGRA2RGB}
    return cv2.cvtColor(image, codes[image.shape[2]]) if image.shape[2] in codes else None


def image_files(folder: str | os.PathLike) -> list[Path]:
    """Image files under ``folder`` (recursively), in sorted path order (the "recording order")."""
    folder = Path(folder)
    if not folder.is_dir():
        raise RecordingError(f"--images {folder} is not a folder")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise RecordingError(f"--images {folder} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
    return files


def write_from_images(folder: str | os.PathLike, writer: RecordingWriter, progress: bool = True) -> dict[str, Any]:
    """Feed every image file of ``folder`` to ``writer`` and close it; returns the summary."""
    try:
        files = image_files(folder)
        for index, path in enumerate(tqdm(files, desc="images", unit="frame", disable=not progress)):
            rgb = read_image_file(path)
            if rgb is None:
                writer.add_bad("undecodable_file")
                continue
            writer.add(rgb, {"index": index, "file": str(path.relative_to(folder))})
    except BaseException:
        writer.abort()
        raise
    return writer.close()


def add_writer_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every recording source shares (images here, bags in ocgs_ros/ros/gocl_data.py)."""
    parser.add_argument("--out", required=True, help="dataset folder to create (must not exist or be empty)")
    parser.add_argument("--size", type=int, default=DEFAULT_SIZE,
                        help=f"side of the stored square frames in pixels (default {DEFAULT_SIZE}); the trainer "
                             "resizes to the model's input")
    parser.add_argument("--every-s", type=float, default=0.0,
                        help="keep at most one frame per this many seconds of recording time (0 = all; bags "
                             "only: image files have no stamps)")
    parser.add_argument("--duplicate-threshold", type=float, default=DEFAULT_DUPLICATE_THRESHOLD,
                        help="skip a frame whose 16x16 grey thumbnail differs from the last kept one by less "
                             f"than this mean absolute grey level (0-255; default {DEFAULT_DUPLICATE_THRESHOLD})")
    parser.add_argument("--max-frames", type=int, default=None,
                        help="keep a uniform random sample of at most this many frames (seeded by --seed)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the --max-frames sample")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def writer_from_arguments(args: argparse.Namespace, source: dict[str, Any]) -> RecordingWriter:
    return RecordingWriter(args.out, size=args.size, every_s=args.every_s,
                           duplicate_threshold=args.duplicate_threshold, max_frames=args.max_frames,
                           seed=args.seed, source=source)


def report(prog: str, summary: dict[str, Any], out: str) -> None:
    print(f"{prog}: {out}: {summary['frames_in_dataset']} frames kept of {summary['frames_read']} read "
          f"({summary['skipped_duplicates']} near-duplicates, {summary['skipped_too_soon']} too soon, "
          f"{summary['skipped_over_max_frames']} over --max-frames, {summary['bad_frames']} bad)")


def main(argv: list[str] | None = None) -> int:
    """``python -m ocgs_ros.ocl.recordings --images DIR --out DIR``: dataset from an image folder."""
    parser = argparse.ArgumentParser(prog="gocl_data", description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", required=True, help="folder of image files (searched recursively, sorted)")
    add_writer_arguments(parser)
    args = parser.parse_args(argv)
    try:
        writer = writer_from_arguments(args, {"images": str(Path(args.images).resolve())})
        summary = write_from_images(args.images, writer, progress=not args.no_progress)
    except RecordingError as exc:
        print(f"gocl_data: error: {exc}", file=sys.stderr)
        return 2
    report("gocl_data", summary, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
