"""ObjectMappingPipeline: posed camera + LiDAR frames -> the object-aware Gaussian map and its objects.

Per frame (:meth:`ObjectMappingPipeline.process`): the image is fitted to the view size by the
``view.fit`` policy (centre-crop or letterbox, :mod:`ocgs_ros.image_fit`; K scaled and shifted with
it, so no aspect ratio is distorted), the LiDAR returns are cropped to the camera view *before* the
per-frame point budget (or most of a 360-degree sweep's budget is spent behind the camera),
subsampled with the seeded generator and moved to the map frame; a registered depth image follows
the image's fit; the identity source (GOCL, fitting the view to its own input by the same policy)
labels the pixels; the mapper integrates the frame and the tracker re-extracts the objects, of
which those at or above ``min_object_confidence`` are the map's objects. Live frames (the node:
``process(frame, live=True)``) are scheduled for a sensor that does not wait: the optimisation gets
the time budget ``mapper.frame_budget_ms``, new background Gaussians start decoded as background
(``mapper.grow_background_margin``), and with ``objects_period_s`` > 0 the objects are re-extracted
in the background at that period instead of after every frame (docs/mapping_speed.md); offline
frames get exactly ``mapper.iterations_per_frame`` and a fresh extraction each. Everything numerical lives
in :mod:`ocgs_ros.gaussians` and :mod:`ocgs_ros.ocl`; this module decides what reaches them, in which
order, under which lock.

Seeds: the map is a function of ``seed`` and the frames. The mapper draws from torch's generator
(the identity head's initial weights, densification's split samples), so the pipeline keeps a
torch generator state of its own and swaps it in around map work; other torch users in the
process (a second pipeline, the BEV model) neither disturb it nor are disturbed.

Threads: one lock serialises :meth:`process` calls (the generator, the identity source), another
guards the map state, so queries, snapshots and renders wait for an integration step but never for
GOCL or the input preparation.
"""
from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from ocgs_ros.gaussians.map import GaussianMap, entries_from_logits
from ocgs_ros.gaussians.mapper import OnlineMapper
from ocgs_ros.gaussians.objects import MapObject, ObjectTracker, render_instance_mask
from ocgs_ros.gaussians.persistence import load_map, save_map
from ocgs_ros.image_fit import LETTERBOX, ImageFit, plan_fit, plan_resize
from ocgs_ros.mapping.config import MappingConfig, ViewConfig
from ocgs_ros.mapping.errors import FrameRejected
from ocgs_ros.mapping.frames import in_view, subsample_points, transform_points
from ocgs_ros.mapping.identity import identity_from_config
from ocgs_ros.mapping.palette import codebook_color

# A seed stream of its own for snapshot subsets: publishing a snapshot must not change which
# LiDAR points later frames keep (the map would depend on when snapshots were taken).
_SNAPSHOT_STREAM = 1


@dataclass
class MappingFrame:
    rgb: np.ndarray  # [H, W, 3] uint8 at the camera's own resolution
    K: np.ndarray  # [3, 3] intrinsics of rgb (project convention: pixel centres at integers)
    T_world_cam: np.ndarray  # [4, 4] map <- camera (optical frame)
    points: np.ndarray  # [N, 3+] LiDAR returns in the LiDAR frame (extra columns ignored)
    T_world_lidar: np.ndarray  # [4, 4] map <- LiDAR
    stamp_ns: int = 0
    depth: np.ndarray | None = None  # [H, W] metres registered to rgb (same K); 0/NaN = no return


@dataclass
class MappingUpdate:
    objects: list[MapObject]  # the map's objects after this frame (confidence filter applied)
    num_gaussians: int
    frames_integrated: int
    rgb: np.ndarray  # the processed view: [h, w, 3] uint8 at the view size
    K: np.ndarray  # [3, 3] intrinsics of that view
    objects_updated: bool = True  # re-extracted after this frame (live frames: every objects_period_s)


@dataclass
class GaussianSnapshot:
    means: np.ndarray  # [N, 3] float32, map frame
    colors: np.ndarray  # [N, 3] float32 RGB in [0, 1]
    opacity: np.ndarray  # [N] float32
    scale: np.ndarray  # [N] float32: largest axis (m)
    instance: np.ndarray  # [N] uint32: object id, 0 = none

    def __len__(self) -> int:
        return len(self.means)


class ObjectMappingPipeline:
    def __init__(self, config: MappingConfig = MappingConfig(), identity=None):
        """``identity``: None builds it from ``config.gocl`` (GOCL from the checkpoint, or no
        identities for ``checkpoint: none``; a bad checkpoint raises ValueError with one line
        naming it); else any object with ``num_entries`` and ``pixel_logits(rgb) -> [M+1, H, W]``."""
        self.config = config
        self.identity = identity_from_config(config.gocl, config.view.fit) if identity is None else identity
        self.num_entries = (int(self.identity.num_entries) if self.identity is not None
                            else config.gocl.num_codebook_entries)
        self._map_config = dataclasses.replace(config.map, num_codebook_entries=self.num_entries)
        self._mapper_config = dataclasses.replace(config.mapper, seed=config.seed)
        self._process_lock = threading.Lock()  # one frame at a time: generator + identity source
        self._map_lock = threading.RLock()  # mapper + tracker + objects: process vs queries
        self._tracker_lock = threading.Lock()  # tracker updates: the live background one vs the rest
        self._generation = 0
        self._new_state()

    def _new_state(self) -> None:
        self._rng = np.random.default_rng(self.config.seed)
        self._snapshot_rng = np.random.default_rng([self.config.seed, _SNAPSHOT_STREAM])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.config.seed)
            self._mapper = OnlineMapper(self._map_config, self._mapper_config)  # draws the identity head
            self._torch_rng_state = torch.get_rng_state()
        self._tracker = ObjectTracker(self.config.objects)
        self._objects: list[MapObject] = []
        self._objects_frame = -1  # frames_integrated of the map the objects were extracted from (-1: none)
        self._objects_extracted_s = -float("inf")  # time.monotonic() when the last extraction ended
        self._extraction_duration_s = 0.0
        self._pending_evidence: list[np.ndarray] = []  # frames' points not yet given to the tracker
        self._background: threading.Thread | None = None  # live extraction, until its result is taken
        # (generation, frame, objects, error, finished_s, duration_s): written by that thread as it ends
        self._background_result: tuple | None = None
        self._generation += 1  # a background extraction of an older state is dropped
        self.frames_integrated = 0
        self.rejected: dict[str, int] = {}

    @property
    def has_identity(self) -> bool:
        """Whether pixels get codebook identities (False: GOCL off, ``checkpoint: none``)."""
        return self.identity is not None

    # -- state for tests and tools ------------------------------------------------------------
    @property
    def mapper(self) -> OnlineMapper:
        return self._mapper

    @property
    def map(self):
        return self._mapper.map

    @property
    def tracker(self) -> ObjectTracker:
        return self._tracker

    # -- frames -------------------------------------------------------------------------------
    def process(self, frame: MappingFrame, live: bool = False) -> MappingUpdate:
        """Integrate one frame; raises :class:`FrameRejected` for data the map cannot use (counted
        in ``stats()["rejected"]``), the map unchanged. Reasons, named as the ROS adapters name
        theirs: ``empty_cloud`` (no LiDAR return inside the camera view), ``image_shape``,
        ``camera_info_k``, ``tf_non_finite``, ``pointcloud_shape``, ``depth_size_mismatch``.

        ``live``: a sensor stream that does not wait (the node). Its frames get the time budget
        ``mapper.frame_budget_ms``, the background margin of new Gaussians, and objects extracted in
        the background every ``objects_period_s`` (0, the default: after every frame, within it); offline
        frames (the default: evaluator, tests) exactly ``mapper.iterations_per_frame`` iterations
        and a fresh extraction each, so the map and objects depend only on the frames and seed."""
        started_s = time.perf_counter()
        with self._process_lock:
            try:
                rgb, K, T_world_cam, points_world, depth = self._prepare(frame)
            except FrameRejected as exc:
                with self._map_lock:
                    self.rejected[exc.reason] = self.rejected.get(exc.reason, 0) + 1
                raise
            logits = None if self.identity is None else self.identity.pixel_logits(rgb)
            with self._map_lock:
                with torch.random.fork_rng(devices=[]):
                    torch.set_rng_state(self._torch_rng_state)
                    self._mapper.integrate(rgb, K, T_world_cam, points_world, logits, depth=depth,
                                           deadline_s=self._deadline(started_s, live), live=live)
                    self._torch_rng_state = torch.get_rng_state()
                self._pending_evidence.append(points_world)  # the tracker gets every frame's, in order
                self.frames_integrated += 1
                if live and self.config.objects_period_s > 0:
                    updated = self._adopt_background_objects()
                    if self._objects_due():
                        self._start_background_extraction()
                else:
                    self._extract_objects(live)
                    updated = True
                return MappingUpdate(list(self._objects), self._mapper.map.num_gaussians, self.frames_integrated,
                                     rgb, K, objects_updated=updated)

    def _deadline(self, started_s: float, live: bool) -> float | None:
        """When a live frame's optimisation must end: the budget covers the frame up to its objects,
        so with extraction in the frame (``objects_period_s`` 0) the last extraction's duration is
        kept for it. Extraction grows with the map and its objects (40 ms of a 184 ms frame in the
        node's world, docs/mapping_speed.md): left out, a bigger map would cost latency, not
        iterations."""
        budget_ms = self.config.mapper.frame_budget_ms
        if not live or budget_ms <= 0:
            return None
        extraction_s = self._extraction_duration_s if self.config.objects_period_s <= 0 else 0.0
        return started_s + budget_ms / 1e3 - extraction_s

    # -- object extraction: offline after every frame; live in a background thread -------------
    # Live, extraction must not hold up the next frame (its cost grows with the objects and the map,
    # docs/mapping_speed.md): every objects_period_s a frozen copy of the map goes to a background
    # thread, and the first frame integrated after it finished publishes its objects. The thread
    # touches only the copy and the tracker (under _tracker_lock), never the live map; its result is
    # read only once it has ended (_adopt_background_objects).
    def _objects_due(self) -> bool:
        """No extraction pending, and since the last one ended at least objects_period_s and at
        least its own duration have passed: extraction never takes more than half the time."""
        gap_s = max(self.config.objects_period_s, self._extraction_duration_s)
        return self._background is None and (self._objects_frame < 0
                                             or time.monotonic() - self._objects_extracted_s >= gap_s)

    def _start_background_extraction(self) -> None:
        with torch.random.fork_rng(devices=[]):  # the copy's fresh identity head draws from torch's generator
            frozen = GaussianMap.from_dict(self._mapper.map.to_dict())
        evidence, self._pending_evidence = self._pending_evidence, []
        self._background = threading.Thread(target=self._extract_in_background, name="object_extraction",
                                            args=(self._generation, self._tracker, frozen, evidence,
                                                  self.frames_integrated), daemon=True)
        self._background.start()

    def _extract_in_background(self, generation: int, tracker: ObjectTracker, frozen: GaussianMap,
                               evidence: list[np.ndarray], frame: int) -> None:
        started_s = time.monotonic()
        objects = error = None
        try:
            objects = self._update_tracker(tracker, frozen, evidence, True)
        except Exception as exc:  # noqa: BLE001 - handed to the next frame, which raises it
            error = exc
        finished_s = time.monotonic()
        self._background_result = (generation, frame, objects, error, finished_s, finished_s - started_s)

    def _update_tracker(self, tracker: ObjectTracker, gmap: GaussianMap, evidence: list[np.ndarray],
                        live: bool) -> list:
        """The confident objects of ``gmap``, the tracker first given the frames' returns ``evidence``
        in order (one tracker update at a time: the live background one and the rest); ``live``:
        the support plane starts from the last live update's (ObjectTracker.update)."""
        with self._tracker_lock:
            for points in evidence:
                tracker.add_evidence(points)
            return self._confident(tracker.update(gmap, live=live))

    def _adopt_background_objects(self) -> bool:
        """Take a finished background extraction's objects (True if there were new ones); its
        exception, if it failed, is raised here, in the frame that reports it."""
        if self._background is None or self._background.is_alive():
            return False
        result, self._background_result, self._background = self._background_result, None, None
        if result is None or result[0] != self._generation:
            return False
        _, frame, objects, error, self._objects_extracted_s, self._extraction_duration_s = result
        if error is not None:
            raise RuntimeError(f"object extraction failed: {error}") from error
        self._objects, self._objects_frame = objects, frame
        return True

    def _objects_of_this_map(self) -> None:
        """Extract now if frames were integrated since the objects' map: whatever pairs objects with
        Gaussian indices (instance renders, saved maps) needs the current indices, which
        densification and pruning change. Waits for a background extraction first."""
        if self._background is not None:
            self._background.join()
            self._adopt_background_objects()
        if self._objects_frame != self.frames_integrated:
            self._extract_objects()

    def _extract_objects(self, live: bool = False) -> None:
        evidence, self._pending_evidence = self._pending_evidence, []
        started_s = time.monotonic()
        self._objects = self._update_tracker(self._tracker, self._mapper.map, evidence, live)
        self._objects_frame = self.frames_integrated
        self._objects_extracted_s = time.monotonic()
        self._extraction_duration_s = self._objects_extracted_s - started_s

    def _prepare(self, frame: MappingFrame):
        """(rgb, K at the view size, T_world_cam, LiDAR points in view in the map frame, depth or None)."""
        rgb = np.asarray(frame.rgb)
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3 or min(rgb.shape[:2]) == 0:
            raise FrameRejected("image_shape", f"image must be uint8 [H>0, W>0, 3], got {rgb.dtype} {list(rgb.shape)}")
        K = _finite_matrix(frame.K, (3, 3), "camera_info_k", "K")
        T_world_cam = _finite_matrix(frame.T_world_cam, (4, 4), "tf_non_finite", "T_world_cam")
        T_world_lidar = _finite_matrix(frame.T_world_lidar, (4, 4), "tf_non_finite", "T_world_lidar")
        points = np.asarray(frame.points)
        if points.ndim != 2 or points.shape[1] < 3 or not np.issubdtype(points.dtype, np.number):
            raise FrameRejected("pointcloud_shape", f"points must be [N, 3+], got shape {list(points.shape)}")
        # float32 xyz, what a PointCloud2 carries: every caller maps the same numbers
        points = np.ascontiguousarray(points[:, :3], dtype=np.float32)
        points = points[np.isfinite(points).all(axis=1)]
        camera_height, camera_width = rgb.shape[:2]
        depth = None if frame.depth is None else np.asarray(frame.depth, dtype=np.float32)
        if depth is not None and depth.shape != (camera_height, camera_width):
            raise FrameRejected("depth_size_mismatch", f"depth image is {list(depth.shape)} but the colour "
                                                       f"image is [{camera_height}, {camera_width}]")
        view = self.config.view
        fit = view_fit((camera_height, camera_width), view)
        rgb, K = np.ascontiguousarray(fit.apply(rgb)), fit.move_intrinsics(K)
        height, width = rgb.shape[:2]
        T_cam_lidar = np.linalg.inv(T_world_cam) @ T_world_lidar
        points = points[in_view(transform_points(T_cam_lidar, points), K, width, height)]
        if len(points) == 0:
            raise FrameRejected("empty_cloud", "no LiDAR return falls inside the camera image")
        # every rejection is above this line: a rejected frame leaves the generator where it was
        points = subsample_points(points, view.max_points, self._rng)
        if depth is not None:
            # nearest neighbour (at pixel centres, as K moves): interpolating across a depth edge
            # would invent surfaces
            depth = fit.apply(depth, interpolation=cv2.INTER_NEAREST_EXACT, fill=0.0)
        return rgb, K, T_world_cam, transform_points(T_world_lidar, points), depth

    def _confident(self, objects: list[MapObject]) -> list[MapObject]:
        return [o for o in objects if o.confidence >= self.config.min_object_confidence]

    # -- objects ------------------------------------------------------------------------------
    def objects(self) -> list[MapObject]:
        with self._map_lock:
            return list(self._objects)

    def query_by_codebook(self, entry: int) -> list[MapObject]:
        """Objects of codebook entry ``entry``."""
        with self._map_lock:
            return self._confident(self._tracker.query_by_codebook(int(entry)))

    def query_by_point(self, point, radius: float) -> list[MapObject]:
        """Objects whose box comes within ``radius`` (m) of ``point`` (map frame), nearest first."""
        with self._map_lock:
            return self._confident(self._tracker.query_by_point(point, float(radius)))

    def query_by_box(self, center, size, rotation=None) -> list[MapObject]:
        """Objects whose centroid lies in the box ``center``, ``size`` (full extents), ``rotation``."""
        with self._map_lock:
            return self._confident(self._tracker.query_by_box(center, size, rotation))

    # -- map views ----------------------------------------------------------------------------
    def snapshot(self, max_points: int | None = None) -> GaussianSnapshot:
        """The Gaussians with their object ids; a random subset (seeded) of ``max_points`` if capped.
        Between live extractions (objects of an earlier map, whose Gaussian indices have moved) a
        Gaussian's id is that of the object whose box contains its centre: a snapshot must not wait
        for an extraction."""
        with self._map_lock, torch.no_grad():
            gmap = self._mapper.map
            n = gmap.num_gaussians
            means = gmap.params["means"].detach().numpy().copy()
            instance = np.zeros(n, dtype=np.uint32)
            current = self._objects_frame == self.frames_integrated
            for obj in self._objects:
                if current:
                    idx = np.asarray(obj.gaussian_indices, dtype=np.int64)
                    instance[idx[(idx >= 0) & (idx < n)]] = int(obj.id)
                else:
                    instance[obj.contains(means) & (instance == 0)] = int(obj.id)
            colors = gmap.colors().numpy().copy()
            opacity = gmap.opacities_act().numpy().copy()
            scale = gmap.scales_act().amax(dim=1).numpy().copy()
            if max_points is not None and n > max_points:
                keep = np.sort(self._snapshot_rng.choice(n, max_points, replace=False))
                means, colors, opacity, scale, instance = (means[keep], colors[keep], opacity[keep], scale[keep],
                                                           instance[keep])
        return GaussianSnapshot(means, colors, opacity, scale, instance)

    def render(self, K, T_world_cam, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
        """(rgb float [H, W, 3] in [0, 1], codebook entry per pixel [H, W] int64, -1 = background)."""
        viewmat = torch.as_tensor(np.linalg.inv(np.asarray(T_world_cam, dtype=np.float64)), dtype=torch.float32)
        with self._map_lock, torch.no_grad():
            rgb, _, logits, _ = self._mapper.render(viewmat, torch.as_tensor(np.asarray(K), dtype=torch.float32),
                                                    width, height)
        return rgb.clamp(0, 1).numpy(), entries_from_logits(logits).numpy()

    def render_instances(self, K, T_world_cam, width: int, height: int) -> np.ndarray:
        """Object id per pixel ``int32 [H, W]`` (0 = background) of the map's objects."""
        viewmat = np.linalg.inv(np.asarray(T_world_cam, dtype=np.float64))
        with self._map_lock:
            self._objects_of_this_map()
            return render_instance_mask(self._mapper, self._objects, viewmat, K, width, height)

    def render_identity(self, K, T_world_cam, width: int, height: int) -> np.ndarray:
        """The objects seen from a camera, each in its codebook entry's colour: uint8 [H, W, 3]."""
        with self._map_lock:
            mask = self.render_instances(K, T_world_cam, width, height)
            objects = list(self._objects)
        rgb = np.zeros((height, width, 3), np.uint8)
        for obj in objects:
            rgb[mask == int(obj.id)] = np.rint(codebook_color(int(obj.codebook_entry)) * 255).astype(np.uint8)
        return rgb

    def locked(self):
        """Context manager holding the map still across several calls (a report that saves,
        renders and scores one state); calls made inside it do not wait."""
        return self._map_lock

    # -- persistence and lifetime ---------------------------------------------------------------
    def save(self, path):
        """Write the map and its objects (``gaussians.persistence.save_map``); returns its paths."""
        with self._map_lock:
            self._objects_of_this_map()
            return save_map(path, self._mapper.map, self._tracker)

    def load(self, path) -> None:
        """Continue from a saved map (fresh optimiser state and keyframes; objects as saved, ids
        continuing). Raises ValueError when its codebook size differs from this pipeline's."""
        gmap, tracker = load_map(path)
        if gmap.config.num_codebook_entries != self.num_entries:
            raise ValueError(f"load: {path} has {gmap.config.num_codebook_entries} codebook entries, this "
                             f"pipeline's identity source {self.num_entries}")
        if tracker is None:
            tracker = ObjectTracker(self.config.objects)
        tracker.config = self.config.objects  # this pipeline's extraction rules from now on
        with self._process_lock, self._map_lock:
            self._mapper = OnlineMapper.from_map(gmap, self._mapper_config)
            self._tracker = tracker
            self._objects = self._confident(tracker.objects)
            self._objects_frame = self.frames_integrated
            self._generation += 1  # a background extraction of the replaced map is dropped
            self._background = self._background_result = None
            self._pending_evidence = []

    def reset(self) -> None:
        """An empty map, as a new pipeline with the same configuration and identity source."""
        with self._process_lock, self._map_lock:
            self._new_state()

    def close(self, timeout_s: float) -> bool:
        """Wait at most ``timeout_s`` for a live background extraction to end (returns whether none
        is left running). A process that exits with one still inside torch or scipy can abort in
        interpreter finalisation; the node calls this as it is destroyed."""
        background = self._background
        if background is not None:
            background.join(timeout_s)
        return background is None or not background.is_alive()

    def stats(self) -> dict:
        with self._map_lock:
            mapper = self._mapper
            return {"frames_integrated": self.frames_integrated, "gaussians": mapper.map.num_gaussians,
                    "objects": len(self._objects), "keyframes": len(mapper.keyframes),
                    "iterations": mapper.iterations, "keyframes_dropped": mapper.keyframes_dropped,
                    "refused_by_cap": mapper.map.refused_by_cap, "non_finite_pruned": mapper.non_finite_pruned,
                    "rejected": dict(self.rejected)}


def view_fit(camera_size: tuple[int, int], view: ViewConfig) -> ImageFit:
    """How a ``camera_size`` ``(height, width)`` image becomes the view the map is built from: the
    view size by ``view.fit`` (camera resolution when it is 0). A letterboxed view is the scaled
    image alone, without bars (see ``ViewConfig.fit``)."""
    if not view.process_width:
        return plan_resize(camera_size, camera_size)
    fit = plan_fit(camera_size, (view.process_height, view.process_width), view.fit)
    if view.fit == LETTERBOX:
        fit = plan_resize(camera_size, (fit.target_box.height, fit.target_box.width))
    return fit


def view_image(rgb: np.ndarray, K: np.ndarray, view: ViewConfig) -> tuple[np.ndarray, np.ndarray]:
    """The image and intrinsics (float64) the map is built from (:func:`view_fit`)."""
    fit = view_fit(rgb.shape[:2], view)
    return np.ascontiguousarray(fit.apply(rgb)), fit.move_intrinsics(K)


def _finite_matrix(value, shape: tuple[int, int], reason: str, what: str) -> np.ndarray:
    try:
        matrix = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise FrameRejected(reason, f"{what} is not a numeric matrix: {exc}") from exc
    if matrix.shape != shape or not np.isfinite(matrix).all():
        raise FrameRejected(reason, f"{what} must be a finite {shape[0]}x{shape[1]} matrix, got shape "
                                    f"{list(matrix.shape)}")
    return matrix
