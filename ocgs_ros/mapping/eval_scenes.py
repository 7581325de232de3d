"""What the map evaluations share: the evaluated scenes' sizes and sensors, which trajectory frames
are integrated and which held out, and frames and ground truth as the mapping node receives them
(:mod:`ocgs_ros.mapping.evaluate` on GOCL's tabletop world, :mod:`ocgs_ros.mapping.evaluate_novel` on
its novel-kind variant)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ocgs_ros.camera import scale_intrinsics
from ocgs_ros.evaluation.boxes import Box3D
from ocgs_ros.mapping.config import MappingConfig
from ocgs_ros.mapping.errors import FrameRejected
from ocgs_ros.mapping.pipeline import MappingFrame, MappingUpdate, ObjectMappingPipeline
from ocgs_ros.ocl.data import gocl_tabletop_config
from ocgs_ros.sim.tabletop import TabletopWorld


@dataclass(frozen=True)
class EvalConfig:
    dataset_seed: int = 7
    scenes: int = 6
    scene_pool: int = 60  # scene indices considered when picking scenes that share kinds
    frames: int = 24
    heldout: int = 6
    # the simulated sensors: sim_publisher's defaults (nodes/sim_publisher.py, config/ocgs.yaml)
    camera_width: int = 320
    camera_height: int = 240
    lidar_beams: int = 32
    lidar_azimuth_steps: int = 1024
    min_pixels: int = 20


def make_world_config(cfg: EvalConfig):
    """GOCL's tabletop world with the evaluation's camera size and LiDAR."""
    base = gocl_tabletop_config(cfg.camera_width, cfg.camera_height)
    return dataclasses.replace(base, lidar=dataclasses.replace(base.lidar, beams=cfg.lidar_beams,
                                                               azimuth_steps=cfg.lidar_azimuth_steps))


def frame_indices(cfg: EvalConfig, frames_per_orbit: int) -> tuple[list[int], list[int]]:
    step = frames_per_orbit / cfg.frames
    integrated = [int(round(k * step)) % frames_per_orbit for k in range(cfg.frames)]
    stride = cfg.frames / max(cfg.heldout, 1)
    heldout = [int(round((int(k * stride) + 0.5) * step)) % frames_per_orbit for k in range(cfg.heldout)]
    heldout = [h for h in dict.fromkeys(heldout) if h not in integrated]
    return integrated, heldout


def mapping_frame(world: TabletopWorld, index: int) -> MappingFrame:
    """Frame ``index`` of a simulated world as the mapping node receives it from sim_publisher: the
    camera image at its own resolution, the LiDAR sweep (float32, as in a PointCloud2) in the LiDAR
    frame, and the poses TF gives (map <- base <- sensor)."""
    f = world.frame(index)
    return MappingFrame(rgb=f.camera.rgb, K=np.asarray(f.camera.K, dtype=np.float64),
                        T_world_cam=f.T_world_base @ f.T_base_camera,
                        points=np.asarray(f.lidar.points, dtype=np.float32),
                        T_world_lidar=f.T_world_base @ f.T_base_lidar, stamp_ns=f.stamp_ns)


def build_scene_map(pipeline: ObjectMappingPipeline, frames: list[MappingFrame]) -> MappingUpdate | None:
    """Feed ``frames`` in order, as the node does (a rejected frame is dropped and counted in
    ``pipeline.stats()["rejected"]``); returns the last update (None if no frame was integrated)."""
    update = None
    for frame in frames:
        try:
            update = pipeline.process(frame)
        except FrameRejected:
            continue
    return update


@dataclass
class HeldOutView:
    index: int
    rgb: np.ndarray  # [h, w, 3] uint8 at the view size
    instance: np.ndarray
    kind: np.ndarray
    K: np.ndarray
    T_world_cam: np.ndarray


def held_out_view(world: TabletopWorld, index: int, config: MappingConfig) -> HeldOutView:
    """Ground truth of trajectory frame ``index`` rendered at the pipeline's view size."""
    cam = world.config.camera
    width, height = (config.view.process_width, config.view.process_height) if config.view.process_width \
        else (cam.width, cam.height)
    K = scale_intrinsics(world.K, width / cam.width, height / cam.height)
    T_world_cam = world.pose(index) @ world.T_base_camera
    truth = world.render_camera(T_world_cam, K, width, height)
    return HeldOutView(index, truth.rgb, truth.instance, truth.kind, K, T_world_cam)


def gt_box(obj) -> Box3D:
    return Box3D.from_yaw(obj.center, obj.size, obj.yaw)
