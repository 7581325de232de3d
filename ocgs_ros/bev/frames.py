"""One driving frame in the model's terms, and its conversion to model inputs and targets.

Every data source (the simulator's on-disk dataset, a nuScenes-format folder, a live ROS node)
produces a :class:`FrameRecord` (numpy, ego frame, docs/conventions.md); :func:`record_to_sample`
turns it into tensors for a :class:`BevConfig`, and :func:`prepare_inputs` is the single place
that fits images to the model's input size (the project's crop/letterbox policy,
:mod:`ocgs_ros.image_fit`, adjusting ``K``) and validates sensor arrays, shared by training and
:class:`ocgs_ros.bev.inference.BevPredictor`. Images at the model's aspect ratio (the simulated
rigs the models are trained on) are a plain resize under either policy.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from ..camera import resize_image
from ..image_fit import DEFAULT_FIT, fit_image
from .config import BevConfig, GridSpec
from .model import BevInputs
from .targets import BOX_DIM, encode_targets


@dataclass
class FrameRecord:
    """Sensor data and ground truth of one frame, all in the ego frame.

    ``images`` uint8 ``[N, H, W, 3]`` RGB; ``intrinsics [N, 3, 3]``; ``T_ego_cam [N, 4, 4]``;
    ``points`` float32 ``[P, 4]`` (x, y, z, intensity); ``boxes [M, 9]``; ``labels [M]`` (index
    into ``BOX_CLASSES``); ``num_points [M]`` (LiDAR points on each box, -1 = unknown);
    ``map_layers`` bool ``[6, R, C]`` on ``map_grid`` (``None`` when the source has no map).
    """

    images: np.ndarray
    intrinsics: np.ndarray
    T_ego_cam: np.ndarray
    points: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    num_points: np.ndarray
    map_layers: np.ndarray | None
    map_grid: GridSpec | None
    token: str = ""


def resize_images(images: np.ndarray, intrinsics: np.ndarray, height: int, width: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Resize ``[N, H, W, 3]`` images to ``height x width`` and adjust ``K`` to match.

    With pixel centres at integer coordinates (docs/conventions.md) a scale ``s`` maps
    ``u -> (u + 0.5) s - 0.5``, so ``fx' = s fx`` and ``cx' = s (cx + 0.5) - 0.5``.
    """
    if tuple(images.shape[1:3]) == (height, width):
        return images, intrinsics.astype(np.float64)
    resized = [resize_image(img, k, width, height) for img, k in zip(images, intrinsics)]
    return np.stack([img for img, _ in resized]), np.stack([k for _, k in resized])


def fit_images(images: np.ndarray, intrinsics: np.ndarray, height: int, width: int, policy: str = DEFAULT_FIT
               ) -> tuple[np.ndarray, np.ndarray]:
    """Fit ``[N, H, W, 3]`` images to ``height x width`` by ``policy`` ("crop" or "letterbox",
    ``ocgs_ros.image_fit``) without distorting them, each ``K`` moved to match (float64)."""
    if tuple(images.shape[1:3]) == (height, width):
        return images, intrinsics.astype(np.float64)
    fitted = [fit_image(img, k, width, height, policy)[:2] for img, k in zip(images, intrinsics)]
    return np.stack([img for img, _ in fitted]), np.stack([k for _, k in fitted])


def check_sensor_arrays(images: np.ndarray, intrinsics: np.ndarray, T_ego_cam: np.ndarray, points: np.ndarray,
                        num_cameras: int) -> None:
    """Raise ``ValueError`` saying which array has the wrong shape/dtype or non-finite values."""
    images, intrinsics, T_ego_cam, points = (np.asarray(a) for a in (images, intrinsics, T_ego_cam, points))
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be uint8 [N, H, W, 3] RGB, got shape {images.shape}")
    if images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 RGB, got dtype {images.dtype}")
    if images.shape[0] != num_cameras:
        raise ValueError(f"got {images.shape[0]} camera images, the model expects {num_cameras}")
    if images.shape[1] < 2 or images.shape[2] < 2:
        raise ValueError(f"images are too small: {images.shape[1]}x{images.shape[2]}")
    n = images.shape[0]
    if intrinsics.shape != (n, 3, 3):
        raise ValueError(f"intrinsics must be [{n}, 3, 3], got {intrinsics.shape}")
    if T_ego_cam.shape != (n, 4, 4):
        raise ValueError(f"T_ego_cam must be [{n}, 4, 4], got {T_ego_cam.shape}")
    if points.ndim != 2 or points.shape[1] != 4:
        raise ValueError(f"points must be float32 [P, 4] (x, y, z, intensity), got shape {points.shape}")
    for name, arr in (("intrinsics", intrinsics), ("T_ego_cam", T_ego_cam), ("points", points)):
        if not np.issubdtype(arr.dtype, np.floating):
            raise ValueError(f"{name} must be a float array, got dtype {arr.dtype}")
        if not np.isfinite(arr).all():
            raise ValueError(f"{name} contains NaN or inf")
    if (np.abs(np.linalg.det(intrinsics[:, :2, :2])) < 1e-9).any() or (intrinsics[:, 2] != [0, 0, 1]).any():
        raise ValueError("intrinsics must be pinhole matrices [[fx, s, cx], [0, fy, cy], [0, 0, 1]] with fx, fy != 0")
    if not np.allclose(T_ego_cam[:, 3], [0, 0, 0, 1]):
        raise ValueError("T_ego_cam must be homogeneous transforms (last row 0 0 0 1)")


def prepare_inputs(images: np.ndarray, intrinsics: np.ndarray, T_ego_cam: np.ndarray, points: np.ndarray,
                   cfg: BevConfig, fit: str = DEFAULT_FIT
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Validated tensors of one frame, images fitted by ``fit``: images ``[N, 3, H, W]`` in [0, 1],
    K, T, points."""
    check_sensor_arrays(images, intrinsics, T_ego_cam, points, cfg.num_cameras)
    imgs, k = fit_images(np.asarray(images), np.asarray(intrinsics), cfg.image_height, cfg.image_width, fit)
    img_t = torch.from_numpy(np.ascontiguousarray(imgs)).permute(0, 3, 1, 2).float().div_(255.0)
    return (img_t, torch.as_tensor(k, dtype=torch.float32), torch.as_tensor(np.asarray(T_ego_cam), dtype=torch.float32),
            torch.as_tensor(np.asarray(points), dtype=torch.float32))


def crop_points(points: np.ndarray, cfg: BevConfig) -> np.ndarray:
    """Points inside the detection grid and z slab (the rest never reaches a pillar)."""
    g = cfg.det_grid
    keep = ((points[:, 0] >= g.x_min) & (points[:, 0] < g.x_max) & (points[:, 1] >= g.y_min)
            & (points[:, 1] < g.y_max) & (points[:, 2] >= cfg.z_min) & (points[:, 2] < cfg.z_max))
    return points[keep]


def resample_map_layers(layers: np.ndarray, source: GridSpec, target: GridSpec) -> np.ndarray:
    """Nearest-cell lookup of ``[K, R, C]`` layers at ``target``'s cell centres (False outside ``source``)."""
    if layers.ndim != 3 or layers.shape[1:] != source.shape:
        raise ValueError(f"map layers {layers.shape} do not fit their grid {source.shape}")
    if source == target:
        return layers.astype(bool)
    x = target.x_min + (np.arange(target.rows) + 0.5) * target.resolution
    y = target.y_min + (np.arange(target.cols) + 0.5) * target.resolution
    r = np.floor((x - source.x_min) / source.resolution).astype(np.int64)
    c = np.floor((y - source.y_min) / source.resolution).astype(np.int64)
    r_ok, c_ok = (r >= 0) & (r < source.rows), (c >= 0) & (c < source.cols)
    out = layers[:, np.clip(r, 0, source.rows - 1)][:, :, np.clip(c, 0, source.cols - 1)].astype(bool)
    out &= r_ok[None, :, None] & c_ok[None, None, :]
    return out


def ground_truth(record: FrameRecord, cfg: BevConfig, min_points: int = 1) -> dict[str, np.ndarray]:
    """Evaluation boxes: centre inside the detection grid and (when known) >= ``min_points``
    LiDAR points — nuScenes also drops annotations without a LiDAR or radar return."""
    g = cfg.det_grid
    b = np.asarray(record.boxes, dtype=np.float32).reshape(-1, BOX_DIM)
    keep = (b[:, 0] >= g.x_min) & (b[:, 0] < g.x_max) & (b[:, 1] >= g.y_min) & (b[:, 1] < g.y_max)
    known = record.num_points >= 0
    keep &= ~known | (record.num_points >= min_points)
    return {"boxes": b[keep], "labels": np.asarray(record.labels, dtype=np.int64)[keep]}


def record_to_sample(record: FrameRecord, cfg: BevConfig, min_points: int = 1) -> dict[str, Any]:
    """Tensors of one frame: inputs, CenterPoint targets, map target and evaluation boxes."""
    images, k, t, points = prepare_inputs(record.images, record.intrinsics, record.T_ego_cam,
                                          crop_points(np.asarray(record.points, dtype=np.float32), cfg), cfg)
    gt = ground_truth(record, cfg, min_points)
    sample: dict[str, Any] = {"images": images, "intrinsics": k, "cam_to_ego": t, "points": points,
                              "gt_boxes": gt["boxes"], "gt_labels": gt["labels"], "token": record.token}
    sample.update(encode_targets(gt["boxes"], gt["labels"], cfg))
    if record.map_layers is not None and record.map_grid is not None:
        sample["map"] = torch.from_numpy(resample_map_layers(record.map_layers, record.map_grid, cfg.map_grid)).float()
    return sample


def collate_samples(samples: Sequence[Mapping[str, Any]]) -> tuple[BevInputs, dict[str, torch.Tensor], list[dict]]:
    """``(BevInputs, batched targets, per-sample ground-truth dicts)`` for a list of samples."""
    if not samples:
        raise ValueError("collate_samples needs at least one sample")
    inputs = BevInputs(images=torch.stack([s["images"] for s in samples]),
                       intrinsics=torch.stack([s["intrinsics"] for s in samples]),
                       cam_to_ego=torch.stack([s["cam_to_ego"] for s in samples]),
                       points=[s["points"] for s in samples])
    keys = ["heatmap", "regression", "regression_mask"] + (["map"] if all("map" in s for s in samples) else [])
    targets = {key: torch.stack([s[key] for s in samples]) for key in keys}
    gts = [{"boxes": s["gt_boxes"], "labels": s["gt_labels"]} for s in samples]
    return inputs, targets, gts
