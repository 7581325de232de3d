"""nuScenes-format adapter (no ``nuscenes-devkit`` needed) and a writer of simulated scenes in that format.

Reader — :class:`NuScenesRecords(dataroot, version)` yields one
:class:`~ocgs_ros.bev.frames.FrameRecord` per key-frame sample, in scene order:

* tables ``<dataroot>/<version>/{scene,sample,sample_data,calibrated_sensor,sensor,ego_pose,
  sample_annotation,instance,category}.json`` (the standard v1.0 schema);
* camera key frames ``samples/CAM_*/*.jpg`` (RGB after reading), ``K`` from
  ``calibrated_sensor.camera_intrinsic``; ``T_ego_cam`` is expressed in the ego frame *at the
  LiDAR time* (``inv(ego_pose_lidar) @ ego_pose_cam @ calibrated_sensor_cam``) like BEVFusion;
* LiDAR ``samples/LIDAR_TOP/*.pcd.bin`` float32 ``[P, 5]`` (x, y, z, intensity, ring) in the
  sensor frame, moved to the ego frame; ``lidar_sweeps > 1`` also adds the previous non-key
  sweeps (``sweeps/LIDAR_TOP``, following ``prev`` links) through the global frame;
  ``intensity_scale`` rescales intensity (nuScenes stores 0..255, our simulator 0..1);
* boxes from ``sample_annotation`` (global ``translation``, ``size`` = **w, l, h**, ``rotation``
  quaternion w x y z) to ego ``[x, y, z, l, w, h, yaw, vx, vy]``; velocity as the devkit's
  ``box_velocity`` (central difference over prev/next annotations, one-sided at the ends, NaN
  beyond 1.5 s (3 s centred) -> we store 0); categories mapped by :data:`CATEGORY_TO_BOX`,
  others dropped; ``num_lidar_pts`` kept for the evaluation filter.
* map layers: nuScenes has vector maps (map expansion) rather than rasters. The reader takes
  ego-frame rasters from a side file per sample, ``maps/ocgs_bev/<sample_token>.npz`` with
  ``layers`` bool ``[6, R, C]`` (MAP_CLASSES order, row = x bin), ``grid`` ``[x_min, x_max,
  y_min, y_max, resolution]``; users with nuScenes produce them once from the map expansion
  (e.g. devkit ``NuScenesMap.get_map_mask`` in the LiDAR-time ego frame). Without the file a
  record has ``map_layers=None`` (detection-only).

Writer — :func:`export_simulated_scenes` renders driving-world frames and writes exactly that
layout (tables, jpg/pcd.bin files, the map side files), so the reader is tested on data whose
ground truth we know (test/test_bev_data.py). Every camera of the simulated rig is written under
its nuScenes channel name (all six of the surround rig, ``sim.driving.SURROUND_RIG``); with
staggered cameras each image has its own timestamp and ego pose, as in nuScenes. From the shell:

    python -m ocgs_ros.bev.nuscenes --out data/nuscenes_surround --scenes 40 --frames 8 --seed 0 \\
        --cameras surround --width 256 --height 144 [--staggered-cameras]
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
from pathlib import Path
from typing import Iterator, Sequence

import cv2
import numpy as np
from scipy.spatial.transform import Rotation

from ..atomic_io import atomic_write_bytes, atomic_write_text
from ..sim.dataset import scene_seed
from ..sim.driving import SURROUND_RIG, DrivingWorld, camera_mounts, surround_config
from ..sim.types import CameraConfig, DrivingConfig, DrivingFrame
from .config import BOX_CLASSES, MAP_CLASSES, GridSpec
from .frames import FrameRecord

CATEGORY_TO_BOX: dict[str, str] = {
    "vehicle.car": "car", "vehicle.truck": "truck", "vehicle.bus.bendy": "truck", "vehicle.bus.rigid": "truck",
    "vehicle.trailer": "truck", "vehicle.construction": "truck", "human.pedestrian.adult": "pedestrian",
    "human.pedestrian.child": "pedestrian", "human.pedestrian.construction_worker": "pedestrian",
    "human.pedestrian.police_officer": "pedestrian", "vehicle.bicycle": "cyclist", "vehicle.motorcycle": "cyclist",
}
BOX_TO_CATEGORY: dict[str, str] = {"car": "vehicle.car", "truck": "vehicle.truck",
                                   "pedestrian": "human.pedestrian.adult", "cyclist": "vehicle.bicycle"}
#: the six nuScenes cameras counter-clockwise from forward: the simulator's surround rig order
CAMERA_CHANNELS_6 = tuple(mount.name for mount in SURROUND_RIG)
LIDAR_CHANNEL = "LIDAR_TOP"
MAP_SIDE_DIR = "maps/ocgs_bev"
VELOCITY_MAX_TIME_DIFF_S = 1.5
TABLES = ("scene", "sample", "sample_data", "calibrated_sensor", "sensor", "ego_pose", "sample_annotation",
          "instance", "category")


# ----- geometry helpers ---------------------------------------------------------------------
def pose_matrix(translation: Sequence[float], rotation_wxyz: Sequence[float]) -> np.ndarray:
    """4x4 pose from a nuScenes translation + scalar-first quaternion."""
    w, x, y, z = rotation_wxyz
    T = np.eye(4)
    T[:3, :3] = Rotation.from_quat([x, y, z, w]).as_matrix()
    T[:3, 3] = translation
    return T


def matrix_to_wxyz(R: np.ndarray) -> list[float]:
    x, y, z, w = Rotation.from_matrix(R).as_quat()
    return [float(w), float(x), float(y), float(z)]


def camera_channels(num_cameras: int) -> tuple[str, ...]:
    """nuScenes channel names of the simulator's rig of ``num_cameras`` cameras (``sim.driving.camera_mounts``)."""
    return tuple(mount.name for mount in camera_mounts([CameraConfig()] * num_cameras))


def nuscenes_versions(dataroot: str | Path) -> list[str]:
    """The table versions (``v1.0-mini``, ...) of a nuScenes-format dataroot; [] for any other folder."""
    root = Path(dataroot)
    return sorted(p.parent.name for p in root.glob("*/sample.json")) if root.is_dir() else []


def _token(*parts: object) -> str:
    return hashlib.md5("/".join(map(str, parts)).encode()).hexdigest()


# ----- reader -------------------------------------------------------------------------------
class NuScenesRecords(Sequence[FrameRecord]):
    """Key-frame samples of a nuScenes-format dataroot as frame records (see module docstring)."""

    def __init__(self, dataroot: str | Path, version: str = "v1.0-mini", cameras: Sequence[str] | None = None,
                 lidar_sweeps: int = 1, intensity_scale: float = 1.0) -> None:
        self.root = Path(dataroot)
        table_dir = self.root / version
        if not table_dir.is_dir():
            raise FileNotFoundError(f"{table_dir}: no nuScenes tables for version {version!r}")
        if lidar_sweeps < 1:
            raise ValueError(f"lidar_sweeps must be >= 1, got {lidar_sweeps}")
        self.lidar_sweeps, self.intensity_scale = lidar_sweeps, intensity_scale
        self.tables: dict[str, dict[str, dict]] = {}
        for name in TABLES:
            path = table_dir / f"{name}.json"
            if not path.is_file():
                raise FileNotFoundError(f"{path}: missing nuScenes table {name!r}")
            rows = json.loads(path.read_text())
            self.tables[name] = {row["token"]: row for row in rows}
        sensors = self.tables["sensor"]
        self._channel_of_calib = {t: sensors[c["sensor_token"]]["channel"]
                                  for t, c in self.tables["calibrated_sensor"].items()}
        # key-frame sample_data per (sample, channel)
        self._key_data: dict[tuple[str, str], dict] = {}
        for sd in self.tables["sample_data"].values():
            if sd["is_key_frame"]:
                self._key_data[(sd["sample_token"], self._channel_of_calib[sd["calibrated_sensor_token"]])] = sd
        all_cams = sorted({ch for (_, ch) in self._key_data if ch.startswith("CAM")})
        self.cameras = tuple(cameras) if cameras is not None else tuple(c for c in CAMERA_CHANNELS_6 if c in all_cams) \
            or tuple(all_cams)
        self.samples: list[str] = []
        for scene in self.tables["scene"].values():
            token = scene["first_sample_token"]
            while token:
                self.samples.append(token)
                token = self.tables["sample"][token]["next"]
        self._instance_category = {t: self.tables["category"][i["category_token"]]["name"]
                                   for t, i in self.tables["instance"].items()}
        self._annotations: dict[str, list[dict]] = {}
        for ann in self.tables["sample_annotation"].values():
            self._annotations.setdefault(ann["sample_token"], []).append(ann)

    def __len__(self) -> int:
        return len(self.samples)

    def __iter__(self) -> Iterator[FrameRecord]:
        return (self[i] for i in range(len(self)))

    def _pose(self, sd: dict) -> tuple[np.ndarray, np.ndarray]:
        """``(T_global_ego, T_ego_sensor)`` of one sample_data."""
        ego = self.tables["ego_pose"][sd["ego_pose_token"]]
        calib = self.tables["calibrated_sensor"][sd["calibrated_sensor_token"]]
        return pose_matrix(ego["translation"], ego["rotation"]), pose_matrix(calib["translation"], calib["rotation"])

    def _key(self, sample: str, channel: str) -> dict:
        sd = self._key_data.get((sample, channel))
        if sd is None:
            raise ValueError(f"sample {sample}: no key-frame {channel} data")
        return sd

    def _lidar_points(self, sd: dict, T_global_ego: np.ndarray) -> np.ndarray:
        clouds = []
        current = sd
        for _ in range(self.lidar_sweeps):
            path = self.root / current["filename"]
            raw = np.fromfile(path, dtype=np.float32)
            if raw.size % 5:
                raise ValueError(f"{path}: size is not a multiple of 5 float32 (x, y, z, intensity, ring)")
            pts = raw.reshape(-1, 5)
            g_ego, ego_sensor = self._pose(current)
            to_key = np.linalg.inv(T_global_ego) @ g_ego @ ego_sensor
            xyz = pts[:, :3].astype(np.float64) @ to_key[:3, :3].T + to_key[:3, 3]
            clouds.append(np.concatenate([xyz, pts[:, 3:4] * self.intensity_scale], axis=1))
            if not current["prev"]:
                break
            current = self.tables["sample_data"][current["prev"]]
        return np.concatenate(clouds).astype(np.float32)

    def _velocity(self, ann: dict) -> np.ndarray:
        """Global xy velocity like the devkit's ``box_velocity`` (NaN when undefined)."""
        anns, samples = self.tables["sample_annotation"], self.tables["sample"]
        has_prev, has_next = bool(ann["prev"]), bool(ann["next"])
        if not has_prev and not has_next:
            return np.full(2, np.nan)
        first = anns[ann["prev"]] if has_prev else ann
        last = anns[ann["next"]] if has_next else ann
        dt = (samples[last["sample_token"]]["timestamp"] - samples[first["sample_token"]]["timestamp"]) * 1e-6
        limit = VELOCITY_MAX_TIME_DIFF_S * (2 if has_prev and has_next else 1)
        if dt <= 0 or dt > limit:
            return np.full(2, np.nan)
        return (np.asarray(last["translation"][:2]) - np.asarray(first["translation"][:2])) / dt

    def __getitem__(self, index: int) -> FrameRecord:  # type: ignore[override]
        sample = self.samples[index]
        lidar_sd = self._key(sample, LIDAR_CHANNEL)
        T_global_ego, _ = self._pose(lidar_sd)
        T_ego_global = np.linalg.inv(T_global_ego)
        images, ks, cams = [], [], []
        for channel in self.cameras:
            sd = self._key(sample, channel)
            bgr = cv2.imread(str(self.root / sd["filename"]), cv2.IMREAD_COLOR)
            if bgr is None:
                raise ValueError(f"{self.root / sd['filename']}: cannot read image")
            images.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            calib = self.tables["calibrated_sensor"][sd["calibrated_sensor_token"]]
            ks.append(np.asarray(calib["camera_intrinsic"], dtype=np.float64))
            g_ego, ego_cam = self._pose(sd)
            cams.append(T_ego_global @ g_ego @ ego_cam)
        boxes, labels, counts = [], [], []
        for ann in self._annotations.get(sample, []):
            name = CATEGORY_TO_BOX.get(self._instance_category[ann["instance_token"]])
            if name is None:
                continue
            box_global = pose_matrix(ann["translation"], ann["rotation"])
            box_ego = T_ego_global @ box_global
            w, l, h = ann["size"]
            yaw = math.atan2(box_ego[1, 0], box_ego[0, 0])
            vel = T_ego_global[:2, :2] @ self._velocity(ann)
            vel = np.where(np.isfinite(vel), vel, 0.0)
            boxes.append([*box_ego[:3, 3], l, w, h, yaw, *vel])
            labels.append(BOX_CLASSES.index(name))
            counts.append(int(ann.get("num_lidar_pts", -1)))
        layers, grid = None, None
        side = self.root / MAP_SIDE_DIR / f"{sample}.npz"
        if side.is_file():
            with np.load(side) as data:
                if tuple(str(c) for c in data["classes"]) != MAP_CLASSES:
                    raise ValueError(f"{side}: map classes {list(data['classes'])} differ from {MAP_CLASSES}")
                layers, grid = data["layers"].astype(bool), GridSpec(*map(float, data["grid"]))
        return FrameRecord(images=np.stack(images), intrinsics=np.stack(ks), T_ego_cam=np.stack(cams),
                           points=self._lidar_points(lidar_sd, T_global_ego),
                           boxes=np.asarray(boxes, dtype=np.float32).reshape(-1, 9),
                           labels=np.asarray(labels, dtype=np.int64), num_points=np.asarray(counts, dtype=np.int64),
                           map_layers=layers, map_grid=grid, token=sample)


# ----- writer -------------------------------------------------------------------------------
def _ring_from_elevation(points: np.ndarray, beams: int, fov_down: float, fov_up: float) -> np.ndarray:
    elev = np.degrees(np.arctan2(points[:, 2], np.hypot(points[:, 0], points[:, 1])))
    return np.clip(np.round((elev - fov_down) / (fov_up - fov_down) * (beams - 1)), 0, beams - 1)


def export_simulated_scenes(root: str | Path, num_scenes: int, frames_per_scene: int, seed: int = 0,
                            config: DrivingConfig | None = None, frame_stride: int = 5, version: str = "v1.0-mini",
                            sweeps_per_sample: int = 0, staggered_cameras: bool = False) -> Path:
    """Render simulated driving scenes and write them as a nuScenes-format dataroot.

    Key frames are ``frame_stride`` simulator frames apart; ``sweeps_per_sample`` non-key LiDAR
    sweeps are written between consecutive key frames (``sweeps/LIDAR_TOP``). The ego-frame map
    rasters go to the side files described in the module docstring. Every camera of the
    ``config``'s rig is written; ``staggered_cameras`` gives each image its own timestamp and ego pose.
    """
    root = Path(root)
    config = config or DrivingConfig()
    t: dict[str, list[dict]] = {name: [] for name in TABLES + ("log",)}
    t["sensor"] = [{"token": _token("sensor", ch), "channel": ch, "modality": "camera"}
                   for ch in camera_channels(len(config.cameras))]
    t["sensor"].append({"token": _token("sensor", LIDAR_CHANNEL), "channel": LIDAR_CHANNEL, "modality": "lidar"})
    t["category"] = [{"token": _token("category", c), "name": c, "description": ""} for c in BOX_TO_CATEGORY.values()]
    channels = camera_channels(len(config.cameras))
    for s in range(num_scenes):
        world = DrivingWorld(config, seed=scene_seed(seed, s), staggered_cameras=staggered_cameras)
        scene_token, log_token = _token("scene", seed, s), _token("log", seed, s)
        t["log"].append({"token": log_token, "logfile": f"ocgs_sim_{seed}_{s}", "vehicle": "sim",
                         "date_captured": "2026-01-01", "location": "ocgs-sim"})
        calib = {}
        for k, ch in enumerate(channels):
            calib[ch] = _token("calib", seed, s, ch)
            T = world.T_ego_cams[k]
            t["calibrated_sensor"].append({"token": calib[ch], "sensor_token": _token("sensor", ch),
                                           "translation": T[:3, 3].tolist(), "rotation": matrix_to_wxyz(T[:3, :3]),
                                           "camera_intrinsic": np.asarray(world.Ks[k]).tolist()})
        calib[LIDAR_CHANNEL] = _token("calib", seed, s, LIDAR_CHANNEL)
        t["calibrated_sensor"].append({"token": calib[LIDAR_CHANNEL], "sensor_token": _token("sensor", LIDAR_CHANNEL),
                                       "translation": world.T_ego_lidar[:3, 3].tolist(),
                                       "rotation": matrix_to_wxyz(world.T_ego_lidar[:3, :3]), "camera_intrinsic": []})
        sample_tokens = [_token("sample", seed, s, i) for i in range(frames_per_scene)]
        last_data: dict[str, str] = {}
        instance_anns: dict[int, list[dict]] = {}
        instance_cls: dict[int, int] = {}
        for i in range(frames_per_scene):
            for j in range(sweeps_per_sample if i > 0 else 0):  # non-key sweeps before this key frame
                sim_index = (i - 1) * frame_stride + (j + 1) * frame_stride // (sweeps_per_sample + 1)
                _write_lidar_sweep(root, t, world, config, sim_index, seed, s, sample_tokens[i], None, calib, last_data)
            frame = world.frame(i * frame_stride)
            stamp_us = frame.stamp_ns // 1000
            t["sample"].append({"token": sample_tokens[i], "timestamp": stamp_us, "scene_token": scene_token,
                                "prev": sample_tokens[i - 1] if i else "",
                                "next": sample_tokens[i + 1] if i + 1 < frames_per_scene else ""})
            ego_token = _token("ego", seed, s, frame.index)
            t["ego_pose"].append({"token": ego_token, "timestamp": stamp_us,
                                  "translation": frame.T_world_ego[:3, 3].tolist(),
                                  "rotation": matrix_to_wxyz(frame.T_world_ego[:3, :3])})
            for k, (ch, cam) in enumerate(zip(channels, frame.cameras)):
                cam_us, cam_ego_token = cam.stamp_ns // 1000, ego_token
                if cam.stamp_ns != frame.stamp_ns:  # a staggered camera: the ego pose at its own exposure
                    cam_ego_token = _token("ego", seed, s, frame.index, ch)
                    T_world_ego_cam = cam.T_world_cam @ np.linalg.inv(world.T_ego_cams[k])
                    t["ego_pose"].append({"token": cam_ego_token, "timestamp": cam_us,
                                          "translation": T_world_ego_cam[:3, 3].tolist(),
                                          "rotation": matrix_to_wxyz(T_world_ego_cam[:3, :3])})
                name = f"samples/{ch}/sim{seed}-{s}__{ch}__{cam_us}.jpg"
                ok, jpg = cv2.imencode(".jpg", cv2.cvtColor(cam.rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
                if not ok:
                    raise RuntimeError(f"JPEG encoding failed for {name}")
                atomic_write_bytes(root / name, jpg.tobytes())
                _add_sample_data(t, last_data, ch, _token("sd", seed, s, ch, frame.index), sample_tokens[i],
                                 cam_ego_token, calib[ch], cam_us, "jpg", True, cam.rgb.shape[0], cam.rgb.shape[1],
                                 name)
            _write_lidar_sweep(root, t, world, config, frame.index, seed, s, sample_tokens[i], frame, calib, last_data)
            for box, cls, inst, npts in zip(frame.boxes, frame.box_classes, frame.box_instance_ids, frame.box_num_points):
                centre = frame.T_world_ego @ np.array([*box[:3], 1.0])
                c, si = math.cos(box[6]), math.sin(box[6])
                R = frame.T_world_ego[:3, :3] @ np.array([[c, -si, 0], [si, c, 0], [0, 0, 1.0]])
                ann = {"token": _token("ann", seed, s, i, inst), "sample_token": sample_tokens[i],
                       "instance_token": _token("instance", seed, s, inst), "visibility_token": "4",
                       "attribute_tokens": [], "translation": centre[:3].tolist(),
                       "size": [float(box[4]), float(box[3]), float(box[5])], "rotation": matrix_to_wxyz(R),
                       "prev": "", "next": "", "num_lidar_pts": int(npts), "num_radar_pts": 0}
                instance_anns.setdefault(int(inst), []).append(ann)
                instance_cls[int(inst)] = int(cls)
            layers = frame.map_layers
            g = frame.bev_grid
            buf = _npz_bytes(layers=layers.astype(bool), grid=np.array([g.x_min, g.x_max, g.y_min, g.y_max, g.resolution]),
                             classes=np.array(MAP_CLASSES))
            atomic_write_bytes(root / MAP_SIDE_DIR / f"{sample_tokens[i]}.npz", buf)
        for inst, anns in instance_anns.items():
            # consecutive appearances only are linked (an agent leaving and re-entering starts a new track)
            for a, b in zip(anns, anns[1:]):
                if sample_tokens.index(b["sample_token"]) == sample_tokens.index(a["sample_token"]) + 1:
                    a["next"], b["prev"] = b["token"], a["token"]
            t["sample_annotation"] += anns
            t["instance"].append({"token": _token("instance", seed, s, inst),
                                  "category_token": _token("category", BOX_TO_CATEGORY[BOX_CLASSES[instance_cls[inst]]]),
                                  "nbr_annotations": len(anns), "first_annotation_token": anns[0]["token"],
                                  "last_annotation_token": anns[-1]["token"]})
        t["scene"].append({"token": scene_token, "log_token": log_token, "nbr_samples": frames_per_scene,
                           "first_sample_token": sample_tokens[0], "last_sample_token": sample_tokens[-1],
                           "name": f"sim-{seed}-{s:04d}", "description": "ocgs_ros simulated driving scene"})
    t["attribute"], t["visibility"] = [], [{"token": "4", "level": "v80-100", "description": "simulated"}]
    t["map"] = []
    for name, rows in t.items():
        atomic_write_text(root / version / f"{name}.json", json.dumps(rows, indent=0))
    return root


def _npz_bytes(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def _add_sample_data(t: dict, last: dict, channel: str, token: str, sample_token: str, ego_token: str,
                     calib_token: str, stamp_us: int, fmt: str, key: bool, height: int, width: int, name: str) -> None:
    prev = last.get(channel, "")
    t["sample_data"].append({"token": token, "sample_token": sample_token, "ego_pose_token": ego_token,
                             "calibrated_sensor_token": calib_token, "timestamp": stamp_us, "fileformat": fmt,
                             "is_key_frame": key, "height": height, "width": width, "filename": name,
                             "prev": prev, "next": ""})
    if prev:
        next(sd for sd in reversed(t["sample_data"]) if sd["token"] == prev)["next"] = token
    last[channel] = token


def _write_lidar_sweep(root: Path, t: dict, world: DrivingWorld, config: DrivingConfig, sim_index: int, seed: int,
                       scene: int, sample_token: str, key: DrivingFrame | None, calib: dict, last: dict) -> None:
    """One LIDAR_TOP sweep file + sample_data (+ ego_pose for non-key sweeps, which belong to the
    next key frame's sample as in nuScenes)."""
    if key is not None:
        sweep = key.lidar
        folder = "samples"
    else:
        T_world_ego = world.ego_pose(sim_index)
        world._set_scene(sim_index)  # agents at this time (what DrivingWorld.frame does before scanning)
        stamp_ns = int(round(world._time(sim_index) * 1e9))
        sweep = world.scan_lidar(T_world_ego @ world.T_ego_lidar, config.lidar, stamp_ns,
                                 rng=np.random.default_rng([world.seed, sim_index]))
        folder = "sweeps"
    stamp_us = sweep.stamp_ns // 1000
    ego_token = _token("ego", seed, scene, sim_index)
    if key is None:
        t["ego_pose"].append({"token": ego_token, "timestamp": stamp_us, "translation": T_world_ego[:3, 3].tolist(),
                              "rotation": matrix_to_wxyz(T_world_ego[:3, :3])})
    ring = sweep.ring.astype(np.float32) if sweep.ring is not None else _ring_from_elevation(
        sweep.points, config.lidar.beams, config.lidar.fov_down_deg, config.lidar.fov_up_deg)
    data = np.concatenate([sweep.points, sweep.intensity[:, None], ring[:, None]], axis=1).astype(np.float32)
    name = f"{folder}/{LIDAR_CHANNEL}/sim{seed}-{scene}__{LIDAR_CHANNEL}__{stamp_us}.pcd.bin"
    atomic_write_bytes(root / name, data.tobytes())
    _add_sample_data(t, last, LIDAR_CHANNEL, _token("sd", seed, scene, LIDAR_CHANNEL, sim_index), sample_token,
                     ego_token, calib[LIDAR_CHANNEL], stamp_us, "pcd", key is not None, 0, 0, name)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ocgs_ros.bev.nuscenes",
                                     description="Write simulated driving scenes as a nuScenes-format dataroot.")
    parser.add_argument("--out", required=True, help="dataroot to write")
    parser.add_argument("--scenes", type=int, required=True)
    parser.add_argument("--frames", type=int, default=8, help="key frames per scene")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--frame-stride", type=int, default=5, help="simulator frames between key frames")
    parser.add_argument("--cameras", choices=("front", "surround"), default="surround",
                        help="one forward camera or the six-camera surround rig")
    parser.add_argument("--width", type=int, default=256, help="camera image width")
    parser.add_argument("--height", type=int, default=144, help="camera image height")
    parser.add_argument("--staggered-cameras", action="store_true", help="each camera at its own timestamp")
    parser.add_argument("--version", default="v1.0-mini")
    a = parser.parse_args(argv)
    if a.scenes <= 0 or a.frames <= 0:
        parser.error("--scenes and --frames must be positive")
    config = (surround_config(a.width, a.height) if a.cameras == "surround"
              else DrivingConfig(cameras=[CameraConfig(width=a.width, height=a.height)]))
    root = export_simulated_scenes(a.out, a.scenes, a.frames, a.seed, config, a.frame_stride, a.version,
                                   staggered_cameras=a.staggered_cameras)
    print(f"nuscenes export: {a.scenes} scenes x {a.frames} frames, {len(config.cameras)} camera(s) -> {root}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
