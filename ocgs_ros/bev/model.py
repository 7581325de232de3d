"""Compact BEVFusion-style camera+LiDAR multi-task model (detection + map segmentation).

camera branch (CNN + LSS) ─┐
                           ├─ fuser (conv over concat) ─ shared BEV decoder ─┬─ detection head
LiDAR branch (pillars) ────┘                                                 └─ map head

The fuser inputs (camera / LiDAR BEV features) and the decoder output (the shared feature) are
returned so the gradient calibrator can act on them; pass a ``GradientCalibrator`` to
``forward`` to route them through its junctions.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .camera_branch import CameraBranch
from .config import TASKS, BevConfig
from .heads import DetectionHead, MapHead
from .layers import conv_bn_relu
from .lidar_branch import LidarBranch

if TYPE_CHECKING:
    from .gradcal import GradientCalibrator

MODALITIES: tuple[str, ...] = ("camera", "lidar")


@dataclass
class BevInputs:
    """One batch of sensor data in the ego frame.

    ``images [B, N, 3, H, W]`` float32 in [0, 1]; ``intrinsics [B, N, 3, 3]``; ``cam_to_ego
    [B, N, 4, 4]`` (T_ego_cam, optical frame -> ego); ``points``: ``B`` tensors ``[N_i, 4]``
    (x, y, z, intensity) in the ego frame.
    """

    images: Tensor
    intrinsics: Tensor
    cam_to_ego: Tensor
    points: Sequence[Tensor]

    def validate(self, cfg: BevConfig) -> None:
        """Raise ``ValueError`` naming the first field that does not fit ``cfg``."""
        if self.images.ndim != 5 or self.images.shape[2] != 3:
            raise ValueError(f"images must be [B, N, 3, H, W], got {tuple(self.images.shape)}")
        batch, cams, _, height, width = self.images.shape
        if (height, width) != (cfg.image_height, cfg.image_width):
            raise ValueError(f"images are {height}x{width}, the config expects {cfg.image_height}x{cfg.image_width}")
        if cams != cfg.num_cameras:
            raise ValueError(f"batch has {cams} cameras, the config expects {cfg.num_cameras}")
        if tuple(self.intrinsics.shape) != (batch, cams, 3, 3):
            raise ValueError(f"intrinsics must be [{batch}, {cams}, 3, 3], got {tuple(self.intrinsics.shape)}")
        if tuple(self.cam_to_ego.shape) != (batch, cams, 4, 4):
            raise ValueError(f"cam_to_ego must be [{batch}, {cams}, 4, 4], got {tuple(self.cam_to_ego.shape)}")
        if len(self.points) != batch:
            raise ValueError(f"points has {len(self.points)} entries for a batch of {batch}")
        if self.images.dtype != torch.float32:
            raise ValueError(f"images must be float32 in [0, 1], got {self.images.dtype}")

    def to(self, device: torch.device | str) -> "BevInputs":
        return BevInputs(self.images.to(device), self.intrinsics.to(device), self.cam_to_ego.to(device),
                         [p.to(device) for p in self.points])


@dataclass
class BevOutputs:
    """Named intermediate tensors and head outputs of one forward pass.

    ``camera_bev`` / ``lidar_bev``: fuser inputs ``[B, C, rows, cols]`` (modality-level
    calibration point); ``shared``: decoder output ``[B, C_shared, rows, cols]`` (task-level
    calibration point); ``heatmap [B, K, rows, cols]`` logits; ``regression [B, 10, rows, cols]``;
    ``map_logits [B, 6, map_rows, map_cols]``.
    """

    camera_bev: Tensor
    lidar_bev: Tensor
    shared: Tensor
    heatmap: Tensor
    regression: Tensor
    map_logits: Tensor

    def __getitem__(self, key: str) -> Tensor:
        return getattr(self, key)

    def keys(self) -> tuple[str, ...]:
        return ("camera_bev", "lidar_bev", "shared", "heatmap", "regression", "map_logits")

    def __contains__(self, key: str) -> bool:
        return key in self.keys()

    def modality_features(self) -> dict[str, Tensor]:
        return {"camera": self.camera_bev, "lidar": self.lidar_bev}


class SharedDecoder(nn.Module):
    """Two-scale BEV decoder: full-resolution conv, a stride-2 block, upsample, merge.

    Most of the depth sits at half resolution (as in SECOND/BEVFusion decoders), which keeps the
    default preset inside the 100 ms CPU inference budget.
    """

    def __init__(self, in_channels: int, channels: int) -> None:
        super().__init__()
        self.full = conv_bn_relu(in_channels, channels)
        self.down = nn.Sequential(conv_bn_relu(channels, 2 * channels, stride=2), conv_bn_relu(2 * channels, 2 * channels))
        self.lateral = conv_bn_relu(2 * channels, channels, kernel=1)
        self.merge = conv_bn_relu(2 * channels, channels)

    def forward(self, x: Tensor) -> Tensor:
        full = self.full(x)
        coarse = self.lateral(self.down(full))
        coarse = F.interpolate(coarse, size=full.shape[-2:], mode="bilinear", align_corners=False)
        return self.merge(torch.cat([full, coarse], dim=1))


class BevFusionModel(nn.Module):
    """Camera + LiDAR BEV fusion with a shared decoder and detection / map-segmentation heads."""

    def __init__(self, cfg: BevConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.camera = CameraBranch(cfg)
        self.lidar = LidarBranch(cfg)
        self.fuser = conv_bn_relu(cfg.camera_bev_channels + cfg.lidar_bev_channels, cfg.fused_channels)
        self.decoder = SharedDecoder(cfg.fused_channels, cfg.shared_channels)
        self.detection_head = DetectionHead(cfg)
        self.map_head = MapHead(cfg)

    def forward(self, inputs: BevInputs, calibrator: "GradientCalibrator | None" = None) -> BevOutputs:
        """Run all branches; with a ``calibrator`` the fuser inputs and shared feature are routed
        through its junctions (identity in the forward pass)."""
        inputs.validate(self.cfg)
        camera_bev = self.camera(inputs.images, inputs.intrinsics, inputs.cam_to_ego)
        lidar_bev = self.lidar(inputs.points)
        fuser_in = {"camera": camera_bev, "lidar": lidar_bev}
        if calibrator is not None:
            fuser_in = calibrator.route_modalities(fuser_in)
        shared = self.decoder(self.fuser(torch.cat([fuser_in["camera"], fuser_in["lidar"]], dim=1)))
        head_in = {task: shared for task in TASKS}
        if calibrator is not None:
            head_in = calibrator.route_tasks(shared, TASKS)
        det = self.detection_head(head_in["detection"])
        return BevOutputs(
            camera_bev=camera_bev,
            lidar_bev=lidar_bev,
            shared=shared,
            heatmap=det["heatmap"],
            regression=det["regression"],
            map_logits=self.map_head(head_in["map"]),
        )

    def branch_parameters(self) -> dict[str, list[nn.Parameter]]:
        """Parameters grouped by part: camera, lidar, shared (fuser + decoder), detection, map."""
        return {
            "camera": list(self.camera.parameters()),
            "lidar": list(self.lidar.parameters()),
            "shared": list(self.fuser.parameters()) + list(self.decoder.parameters()),
            "detection": list(self.detection_head.parameters()),
            "map": list(self.map_head.parameters()),
        }
