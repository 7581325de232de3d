"""Online object-aware Gaussian mapping: integrate posed camera + LiDAR frames with GOCL identity
targets into a :class:`GaussianMap`.

Per frame: (1) grow — LiDAR points (world frame), and the back-projected pixels of a depth image
where the camera has one, that project where the current map is still transparent become new
Gaussians, coloured from the image; (2) keyframe — if the camera moved
enough; (3) optimise ``iterations_per_frame`` iterations (fewer if a live frame's deadline comes
first) over the keyframe window plus sampled older keyframes, with L1 + D-SSIM, LiDAR depth and
confidence-weighted identity cross-entropy, densifying and pruning with gsplat's strategy under
the hard cap (:mod:`.densify`); (4) prune Gaussians that became transparent. Poses come from the
input (TF/odometry).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, fields

import numpy as np
import torch
from gsplat.cuda._torch_impl import _spherical_harmonics

from ocgs_ros.camera import backproject_depth
from ocgs_ros.gaussians.densify import DensifyConfig, DensifyController
from ocgs_ros.gaussians.keyframes import KeyframeSelector, KeyframeWindow, most_redundant_keyframe
from ocgs_ros.gaussians.losses import (depth_loss, hard_targets, identity_loss, identity_loss_soft,
                                      photometric_loss)
from ocgs_ros.gaussians.map import GaussianMap, GaussianMapConfig
from ocgs_ros.gaussians.raster import DEFAULT_EPS2D, gsplat_intrinsics, rasterize
from ocgs_ros.settings import non_negative, positive, setting


@dataclass(frozen=True)
class MapperConfig:
    iterations_per_frame: int = setting(8, "Map optimisation iterations per integrated frame (live frames with "
                                           "mapper.frame_budget_ms: at most this many).", positive)
    # Live frames only (the node; ObjectMappingPipeline.process(live=True)): a frame stops optimising
    # once its budget is spent (at least 1 iteration, at most iterations_per_frame), so a slower CPU
    # or a bigger map costs iterations, not latency. Offline callers (the evaluator, tests) and 0 run
    # exactly iterations_per_frame: a map that depends only on the frames and the seed. 120 ms: two
    # stride-3 iterations a frame in node_bench's world (the quality needs two: live_quality.py) since
    # the growth gate (live_grow_covered_sigma) made the live map smaller; the node's frame follows the
    # budget, and at 130 it integrated 3.0x the frames of the pre-issue-16 path, at the target's edge
    # (docs/mapping_speed.md). 120 and 130 gave the same 7-seed live quality side by side.
    frame_budget_ms: float = setting(120.0, "Live frames: time budget of one frame (ms, from the start of its "
                                            "processing to its objects: the last object extraction's time is "
                                            "kept for them); optimisation stops before an iteration that would "
                                            "exceed it (at least 1, at most mapper.iterations_per_frame). 0 = off: "
                                            "exactly mapper.iterations_per_frame (deterministic).", non_negative)
    # same images and gradients either way (test_raster_gradients); false measures the old path
    fused_compositing: bool = setting(True, "Composite with the fused C++ CPU kernel when it builds "
                                            "(false: the vectorised torch path; same results, ~3x slower).")
    window: int = setting(4, "Recent keyframes optimised together.", positive)
    old_samples: int = 2
    min_translation_m: float = 0.05
    min_rotation_deg: float = 5.0
    # memory bound on the keyframe list (a 320x240 keyframe with 33 identity channels is ~10 MB);
    # beyond it the most redundant older keyframe is dropped (keyframes.most_redundant_keyframe)
    max_keyframes: int = setting(48, "Keyframes kept at most (memory bound; the most redundant older one is "
                                     "dropped beyond it). Must exceed mapper.window.", positive)
    ssim_weight: float = 0.2
    depth_weight: float = 0.1
    identity_weight: float = 0.3
    # "soft": CE against GOCL's full per-pixel distribution (losses.identity_loss_soft; kept per
    # keyframe, (M+1) x 4 bytes per pixel); "hard": confidence-weighted CE on GOCL's
    # per-pixel argmax class, pixels below 0.3 confidence dropped — with GOCL's soft codebook
    # assignment that drops most object pixels (docs/gaussian_map.md)
    identity_targets: str = "soft"
    grow_alpha_threshold: float = 0.5  # a LiDAR point seeds a Gaussian where the render is more transparent
    # ... or where the point lies in front of the rendered surface by more than
    # max(grow_depth_tolerance, grow_depth_tolerance_rel * depth): the unseen side of an object seen
    # from behind renders its (now farther) front side, which would otherwise block all growth there.
    # One-sided: a point *behind* the render means floaters in front, which growth cannot fix.
    grow_depth_tolerance: float = 0.02
    grow_depth_tolerance_rel: float = 0.05
    grow_max_points: int = setting(2000, "New Gaussians per frame at most.", positive)
    # The growth test (is the render transparent, or behind the LiDAR point, at the point's pixel?)
    # renders at this fraction of the view: a LiDAR sweep samples a view far more sparsely than its
    # pixels, and at 128x128 the full-size depth render was a fifth of a live frame (docs/mapping_speed.md).
    grow_render_scale: float = setting(0.5, "Growth tests the LiDAR points against a render at this fraction of "
                                            "the view size (1 = full size, as before issue 16).", positive)
    # logits, live frames only (the node's; ObjectMappingPipeline.process(live=True)): a new Gaussian
    # grown from a background pixel starts with background this far above every object entry, so it
    # decodes as background under the two-level rule (P >= 1/2 against all M entries together) from
    # its first frame. The head's unit row gives P ~ 1/(M+1): at the one to four iterations a live
    # frame gets, the map decoded its whole table as object entries and published tens of table
    # patches as objects. Offline maps (the evaluator: 8 iterations a frame) learn it anyway, and
    # there the margin cost identity mIoU 0.69 -> 0.58 and novel-kind recall 0.88 -> 0.82 (test seed 7:
    # a background label grown at an object's edge is held longer), so they keep the unit row. Object
    # pixels always keep it: their soft start lets later views' labels reach a consensus (the margin
    # for every class halved identity mIoU on dev scenes). 0: the unit row always, as before issue 16.
    grow_background_margin: float = setting(3.0, "Live frames (the node's): new Gaussians from background "
                                                 "pixels start with background this many logits above every object "
                                                 "entry (0: the identity head's unit row, as before issue 16).",
                                            non_negative)
    # Live frames only: at the one or two iterations a live frame gets, Gaussians grown at the map's
    # 0.1 keep the render transparent where they stand, so the next frames' growth tests
    # (alpha < grow_alpha_threshold) grow there again. The live map held 7-14k Gaussians, and a frame
    # costs in proportion to them. Starting them more opaque gives 2.3x fewer Gaussians at the same
    # object recall on the demo world's dev seeds (docs/mapping_speed.md). Offline maps keep 0.1:
    # with 8 iterations a frame, two mapper quality tests (photometric gain, depth-camera benefit)
    # fail at 0.3. 0 = map.init_opacity, as offline.
    live_init_opacity: float = setting(0.3, "Live frames (the node's): opacity new Gaussians start at (0 = "
                                            "map.init_opacity, as offline frames).", non_negative)
    # Live frames only: each live iteration renders and fits one of the stride x stride pixel lattices
    # of its keyframe (offsets cycled over iterations, so every pixel is fitted in turn): a render's
    # cost is its pixel-Gaussian pairs, so stride 2 costs about a quarter of a full one at the same
    # Gaussians and the same full-resolution targets (docs/mapping_speed.md). 3 rather than 2: at the
    # node's budget, two stride-3 iterations a frame map better than one stride-2 iteration (7-seed
    # live_quality screen: instance IoU 0.64 against 0.29, recall 1.0 against 0.89). Offline frames
    # always fit every pixel. 1 = every pixel, as before.
    live_pixel_stride: int = setting(3, "Live frames (the node's): each optimisation iteration fits every "
                                        "stride-th pixel of its keyframe in each direction, the lattice offset "
                                        "cycling over iterations (1 = every pixel, as offline frames).", positive)
    # Live frames only: an iteration's keyframe is taken in turn from the training batch (older samples +
    # window) across frames. The offline rule restarts at the batch's first entry every frame, which at
    # the one or two iterations a live frame gets means a sampled *older* keyframe, almost never the
    # newest views. false = the offline rule.
    live_keyframe_rotation: bool = setting(True, "Live frames (the node's): take each iteration's keyframe in "
                                                 "turn from the training batch across frames (false: from its "
                                                 "first entry every frame, as offline frames).")
    # Live frames only: gsplat's rules refine every densify_every iterations for as long as the map
    # is optimised, and an online map never ends training: on a scene the robot keeps looking at,
    # one or two iterations a frame never converge the views, gradients stay above the threshold,
    # and the map grew to its 60k cap in 27 min of a 10 Hz soak, a frame slowing in proportion
    # (docs/mapping_speed.md, "Long runs"). As gsplat stops refining at refine_stop_iter, a lineage
    # here (a Gaussian seeded from the sensors, with its duplicates and splits) refines for this
    # many iterations after its seeding; a newly seen region is seeded afresh and refines again.
    live_densify_window: int = setting(1000, "Live frames (the node's): a Gaussian's lineage (seeded from the "
                                             "sensors, with its duplicates and splits) may densify for this many "
                                             "iterations after its seeding (0 = for ever, as offline).", non_negative)
    # Live frames only: densification grows the map only as far as the frame budget still affords
    # this many iterations. A frame's iterations cost in proportion to its Gaussians, and the budget
    # turns a bigger map into fewer iterations, down to the one every frame gets; below that it
    # turns into latency. In a 30 min soak at 10 Hz (the node beside the BEV node on two cores, 160x120)
    # refinement grew the map 8.5k -> 28k in its first 5 min, the budget's iterations fell to one
    # and the frame to ~500 ms, latency ~600 ms (docs/mapping_speed.md, "Long runs"). The room is
    # measured, not configured: the last live frame's time per iteration, so a GPU or a faster CPU
    # affords a bigger map and a loaded one a smaller. 2: the live path's quality needs two
    # iterations a frame (live_quality.py). Growth from the sensors (a newly seen surface) is not
    # limited by it. 0 = off (the cap and the lineage window only).
    live_densify_min_iterations: int = setting(2, "Live frames (the node's): densification adds Gaussians only as "
                                                  "far as the frame budget still affords this many iterations at "
                                                  "the last frame's time per Gaussian (0 = off).", non_negative)
    # Live frames only: a sensor return that lies within this many standard deviations (along its
    # largest axis) of an existing Gaussian's centre is already in the map, even where the render is
    # transparent or behind it: the optimisation owns that Gaussian's opacity and place, and a new one
    # there only duplicates it. Without the test a static scene kept seeding 2-3 Gaussians a frame
    # at edges and faint spots for as long as the robot looked at it (docs/mapping_speed.md, "Long
    # runs"). A return near nothing (a new surface, an object put down) is seeded as before. Offline
    # maps are bounded by their frames and keep the plain test. 0 = off.
    live_grow_covered_sigma: float = setting(2.0, "Live frames (the node's): a LiDAR/depth return within this "
                                                  "many standard deviations (largest axis) of an existing "
                                                  "Gaussian seeds none (0 = off, as offline frames).", non_negative)
    prune_opacity: float = 0.005
    # gsplat-style densify/prune (see densify.DensifyConfig), in optimisation iterations
    densify: bool = True
    densify_every: int = 100
    densify_start_iter: int = 100
    densify_grad2d: float = 1e-3  # gsplat: 2e-4 at ~1k px images; small online views give larger gradients
    densify_scale3d: float = 0.01
    prune_scale3d: float = 0.1
    scene_scale: float = 1.0
    seed: int = 0

    def densify_config(self) -> DensifyConfig:
        return DensifyConfig(enabled=self.densify, refine_every=self.densify_every,
                             refine_start_iter=self.densify_start_iter, grow_grad2d=self.densify_grad2d,
                             grow_scale3d=self.densify_scale3d, prune_scale3d=self.prune_scale3d,
                             prune_opacity=self.prune_opacity, scene_scale=self.scene_scale)

    def __post_init__(self):
        if self.max_keyframes < self.window + 1:
            raise ValueError(f"MapperConfig.max_keyframes must exceed window ({self.window}), got {self.max_keyframes}")
        if not 0 < self.grow_render_scale <= 1:
            raise ValueError(f"MapperConfig.grow_render_scale must be in (0, 1], got {self.grow_render_scale}")
        if not 0 <= self.live_init_opacity < 1:
            raise ValueError(f"MapperConfig.live_init_opacity must be in [0, 1), got {self.live_init_opacity}")
        if self.identity_targets not in ("hard", "soft"):
            raise ValueError(f"MapperConfig.identity_targets must be 'hard' or 'soft', got {self.identity_targets!r}")

    @classmethod
    def from_dict(cls, values: dict) -> "MapperConfig":
        unknown = sorted(set(values) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"MapperConfig: unknown option(s) {unknown}")
        return cls(**values)


@dataclass
class Keyframe:
    rgb: torch.Tensor  # [H, W, 3] float in [0, 1]
    depth: torch.Tensor  # [H, W] sparse LiDAR z-depth, 0 = none
    identity_target: torch.Tensor | None  # [H, W] long, 0 = background, 1 + codebook entry
    identity_confidence: torch.Tensor | None  # [H, W]
    viewmat: torch.Tensor  # [4, 4] world → camera
    K: torch.Tensor  # [3, 3]
    identity_probs: torch.Tensor | None = None  # [H, W, M+1] GOCL distribution ("soft" targets)
    lattice_fits: int = 0  # fits of this keyframe at a pixel stride > 1: its next lattice offset
    pixel_stride: int = 1  # > 1: a lattice of a full keyframe (next_lattice); the renderer's blur follows

    @property
    def width(self) -> int:
        return self.rgb.shape[1]

    @property
    def height(self) -> int:
        return self.rgb.shape[0]

    def next_lattice(self, stride: int) -> "Keyframe":
        """This keyframe seen through its next ``stride`` x ``stride`` pixel lattice: every target at
        pixels (dx + stride*i, dy + stride*j) and ``K`` mapping a point to its lattice pixel, so a render
        at the lattice's size is the full-size render sampled there. Successive calls cycle through all
        stride**2 offsets, so a keyframe fitted repeatedly has every pixel fitted in turn. Stride 1:
        this keyframe itself."""
        if stride == 1:
            return self
        dy, dx = divmod(self.lattice_fits % (stride * stride), stride)
        self.lattice_fits += 1
        K = self.K.clone()
        # project convention (pixel centres at integers): full pixel u = dx + stride * i
        K[0, :] /= stride
        K[1, :] /= stride
        K[0, 2] = (self.K[0, 2] - dx) / stride
        K[1, 2] = (self.K[1, 2] - dy) / stride

        def sample(image: torch.Tensor | None) -> torch.Tensor | None:
            return None if image is None else image[dy::stride, dx::stride].contiguous()

        return Keyframe(sample(self.rgb), sample(self.depth), sample(self.identity_target),
                        sample(self.identity_confidence), self.viewmat, K, sample(self.identity_probs),
                        pixel_stride=stride)


def project_depth(points_world: np.ndarray, T_world_cam: np.ndarray, K: np.ndarray, width: int, height: int):
    """Sparse z-depth image from world points (nearest return per pixel) and the pixel of each point."""
    T_cam_world = np.linalg.inv(T_world_cam)
    pc = points_world @ T_cam_world[:3, :3].T + T_cam_world[:3, 3]
    front = pc[:, 2] > 1e-3
    uvw = pc @ K.T
    with np.errstate(divide="ignore", invalid="ignore"):
        u = np.round(uvw[:, 0] / uvw[:, 2])
        v = np.round(uvw[:, 1] / uvw[:, 2])
    inside = front & (u >= 0) & (u < width) & (v >= 0) & (v < height)
    depth = np.zeros((height, width), np.float32)
    idx = np.flatnonzero(inside)
    order = idx[np.argsort(-pc[idx, 2])]  # far first, so nearer returns overwrite them
    depth[v[order].astype(int), u[order].astype(int)] = pc[order, 2]
    return depth, u, v, inside


class OnlineMapper:
    def __init__(self, map_config: GaussianMapConfig | None = None, config: MapperConfig | None = None):
        self.config = config or MapperConfig()
        self.map = GaussianMap(map_config)
        self.map.make_optimizers()
        self.keyframes: list[Keyframe] = []
        self.selector = KeyframeSelector(self.config.min_translation_m, self.config.min_rotation_deg)
        self.window = KeyframeWindow(self.config.window, self.config.old_samples, self.config.seed)
        self.densifier = DensifyController(self.map, self.config.densify_config())
        self.frames_integrated = 0
        self.iterations = 0
        self.keyframes_dropped = 0
        self.non_finite_pruned = 0
        self._live_iteration_s_per_gaussian: float | None = None  # the last live frame's (densify room)

    @classmethod
    def from_map(cls, gmap: GaussianMap, config: MapperConfig | None = None) -> "OnlineMapper":
        """Continue mapping on an existing map (e.g. from ``persistence.load_map``): fresh optimiser
        state and keyframes, the map's Gaussians and identity head as they are."""
        mapper = cls(gmap.config, config)
        mapper.map = gmap
        gmap.make_optimizers()
        mapper.densifier = DensifyController(gmap, mapper.config.densify_config())
        return mapper

    # -- rendering ----------------------------------------------------------------------------
    def render(self, viewmat: torch.Tensor, K: torch.Tensor, width: int, height: int):
        """(rgb [H,W,3], expected depth [H,W], identity logits [H,W,M+1], alpha [H,W,1]) for one camera.
        ``K`` follows the project convention (pixel centres at integers); gsplat's centres are at
        +0.5, hence the shift."""
        rgb, depth, logits, alpha, _ = self.render_with_meta(viewmat, K, width, height)
        return rgb, depth, logits, alpha

    def render_with_meta(self, viewmat: torch.Tensor, K: torch.Tensor, width: int, height: int,
                         pixel_stride: int = 1):
        """:meth:`render` plus the rasteriser's ``meta`` (gsplat layout; densification reads it).
        ``pixel_stride`` > 1: ``K`` maps to one pixel lattice of a view that many times larger
        (:meth:`Keyframe.next_lattice`); the footprint blur is kept at the full view's pixel size, so
        the render is the full one sampled at the lattice."""
        gmap = self.map
        means = gmap.params["means"]
        if gmap.config.sh_degree == 0:
            rgb = torch.clamp_min(gmap.params["sh0"][:, 0] * 0.28209479177387814 + 0.5, 0.0)
        else:
            cam_pos = torch.linalg.inv(viewmat)[:3, 3]
            rgb = torch.clamp_min(_spherical_harmonics(gmap.config.sh_degree, means - cam_pos,
                                                       gmap.sh_coefficients()) + 0.5, 0.0)
        features = torch.cat([rgb, gmap.params["identity"]], dim=1)
        out, alpha, meta = self._rasterize(features, viewmat, K, width, height, "RGB+ED",
                                           DEFAULT_EPS2D / pixel_stride ** 2)
        out, alpha = out[0], alpha[0]
        return out[..., :3], out[..., -1], gmap.decode_identity(out[..., 3:-1], alpha), alpha, meta

    def render_depth(self, viewmat: torch.Tensor, K: torch.Tensor, width: int, height: int):
        """(expected depth [H,W], alpha [H,W,1]): what growth needs, compositing one channel instead
        of colour and identity (the same pairs and weights as :meth:`render`, so the same numbers)."""
        # "ED" composites depth alone; the colour argument is only shape-checked
        out, alpha, _ = self._rasterize(self.map.params["means"], viewmat, K, width, height, "ED")
        return out[0, ..., 0], alpha[0]

    def _rasterize(self, features: torch.Tensor, viewmat: torch.Tensor, K: torch.Tensor, width: int, height: int,
                   render_mode: str, blur_px2: float = DEFAULT_EPS2D):
        """The map's Gaussians through the rasteriser for one camera, on the configured compositing path."""
        gmap = self.map
        return rasterize(gmap.params["means"], gmap.quats_normalized(), gmap.scales_act(), gmap.opacities_act(),
                         features, viewmat[None], gsplat_intrinsics(K[None]), width, height, render_mode=render_mode,
                         eps2d=blur_px2, fused=None if self.config.fused_compositing else False)

    # -- integration --------------------------------------------------------------------------
    def integrate(self, rgb: np.ndarray, K: np.ndarray, T_world_cam: np.ndarray, points_world: np.ndarray,
                  pixel_codebook_logits: np.ndarray | torch.Tensor | None = None,
                  depth: np.ndarray | None = None, deadline_s: float | None = None, live: bool = False) -> dict:
        """Add one posed frame: ``rgb`` uint8 [H,W,3], ``points_world`` LiDAR [N,3] in the map frame
        (may be empty when ``depth`` is given), ``pixel_codebook_logits`` GOCL's [M+1,H,W]
        (channel 0 = background) or None, ``depth`` the camera's own z-depth image [H,W] in metres
        (0/NaN = no return) or None. Depth pixels are growth candidates like LiDAR points, and
        where valid they replace the projected LiDAR depth as the depth target (they are exact
        per pixel, LiDAR is sparse). ``deadline_s``: a ``time.perf_counter()`` time by which the
        frame should be done (the pipeline's ``mapper.frame_budget_ms`` for live frames): optimisation
        stops before an iteration that would likely end after it (at least 1 iteration, at most
        ``iterations_per_frame``); None runs exactly ``iterations_per_frame``. ``live``: a frame of a
        stream that does not wait (the node's), whose background Gaussians start decoded as such
        (``grow_background_margin``)."""
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"integrate: rgb must be uint8 [H, W, 3], got {rgb.dtype} {rgb.shape}")
        points_world = np.asarray(points_world, dtype=np.float64).reshape(-1, 3)
        if not np.isfinite(T_world_cam).all() or not np.isfinite(points_world).all():
            raise ValueError("integrate: pose or points contain NaN/inf")
        height, width = rgb.shape[:2]
        valid_pixels = None
        if depth is not None:
            depth = np.asarray(depth)
            if depth.shape != (height, width):
                raise ValueError(f"integrate: depth must be [{height}, {width}] like rgb, got {depth.shape}")
            depth_points, valid_pixels = backproject_depth(depth, K, T_world_cam)
            points_world = np.concatenate([points_world, depth_points])
        target_depth, u, v, inside = project_depth(points_world, T_world_cam, K, width, height)
        if valid_pixels is not None:
            target_depth.reshape(-1)[valid_pixels] = depth.reshape(-1)[valid_pixels]
        viewmat = torch.as_tensor(np.linalg.inv(T_world_cam), dtype=torch.float32)
        K_t = torch.as_tensor(K, dtype=torch.float32)
        image = torch.as_tensor(rgb, dtype=torch.float32) / 255.0
        target = confidence = probs = None
        if pixel_codebook_logits is not None:
            logits_t = torch.as_tensor(pixel_codebook_logits)
            if logits_t.ndim != 3 or logits_t.shape[1:] != (height, width) \
                    or logits_t.shape[0] != self.map.config.num_codebook_entries + 1:
                raise ValueError(f"integrate: pixel_codebook_logits must be [M+1={self.map.config.num_codebook_entries + 1}, "
                                 f"{height}, {width}], got {tuple(logits_t.shape)}")
            pixel_probs = logits_t.float().softmax(dim=0)  # once, for the hard targets and the soft ones
            target, confidence = hard_targets(pixel_probs)
            if self.config.identity_targets == "soft":
                probs = pixel_probs.permute(1, 2, 0).contiguous()
        # a live frame may get one iteration, a live map few per Gaussian: background starts decoded as such
        margin = self.config.grow_background_margin if live else 0.0
        opacity = self.config.live_init_opacity if live and self.config.live_init_opacity > 0 else None
        covered_sigma = self.config.live_grow_covered_sigma if live else 0.0
        grown = self._grow(image, viewmat, K_t, points_world, u, v, inside, target, margin, opacity, covered_sigma)
        if self.selector.consider(T_world_cam):
            self.keyframes.append(Keyframe(image, torch.from_numpy(target_depth), target, confidence, viewmat, K_t,
                                           probs))
            self.window.added()
            self._enforce_keyframe_budget()
        losses = self._optimise(deadline_s, live)
        pruned = self._prune()
        self.frames_integrated += 1
        return {"grown": grown, "pruned": pruned, "num_gaussians": self.map.num_gaussians,
                "keyframes": len(self.keyframes), **losses}

    def _enforce_keyframe_budget(self) -> None:
        while len(self.keyframes) > self.config.max_keyframes:
            poses = [np.linalg.inv(kf.viewmat.double().numpy()) for kf in self.keyframes]
            victim = most_redundant_keyframe(poses, self.config.window, self.config.min_translation_m,
                                             self.config.min_rotation_deg)
            if victim is None:
                return
            del self.keyframes[victim]
            self.window.removed()
            self.keyframes_dropped += 1

    def _grow(self, image, viewmat, K, points_world, u, v, inside, target, background_margin: float,
              opacity: float | None = None, covered_sigma: float = 0.0) -> int:
        idx = np.flatnonzero(inside)
        if idx.size == 0:
            return 0
        with torch.no_grad():
            if self.map.num_gaussians:
                scale = self.config.grow_render_scale
                width, height = max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale))
                sx, sy = width / image.shape[1], height / image.shape[0]
                K_grow = K.clone()
                K_grow[:2] *= torch.tensor([[sx], [sy]], dtype=K.dtype)
                depth, alpha = self.render_depth(viewmat, K_grow, width, height)
                vv = np.minimum((v[idx] * sy).astype(int), height - 1)
                uu = np.minimum((u[idx] * sx).astype(int), width - 1)
                transparent = alpha[vv, uu, 0].numpy() < self.config.grow_alpha_threshold
                vm = viewmat.double().numpy()
                point_depth = points_world[idx] @ vm[2, :3] + vm[2, 3]
                tolerance = np.maximum(self.config.grow_depth_tolerance,
                                       self.config.grow_depth_tolerance_rel * point_depth)
                unexplained = depth[vv, uu].numpy() - point_depth > tolerance
                idx = idx[transparent | unexplained]
                if covered_sigma > 0 and idx.size:
                    idx = idx[~self.map.covers(points_world[idx], covered_sigma)]
        if idx.size > self.config.grow_max_points:
            idx = np.random.default_rng(self.frames_integrated).choice(idx, self.config.grow_max_points, replace=False)
        if idx.size == 0:
            return 0
        uu, vv = u[idx].astype(int), v[idx].astype(int)
        colors = image[vv, uu].numpy()
        identity = None
        if target is not None:
            # start each new Gaussian at its pixel's class: the head's (unit) row for that class, so
            # the identity loss refines rather than discovers it; background ones decoded as
            # background at once on live frames (grow_background_margin)
            classes = target[vv, uu]
            identity = self.map.identity_features_for(classes, 0.0)
            if background_margin > 0:  # at 0 (offline frames) the unit rows above are already theirs
                background = classes == 0
                identity[background] = self.map.identity_features_for(classes[background], background_margin)
        added = len(self.map.add_gaussians(points_world[idx], colors, identity=identity, opacity=opacity))
        self.densifier.added(added)
        return added

    def _optimise(self, deadline_s: float | None, live: bool = False) -> dict:
        if not self.keyframes or self.map.num_gaussians == 0:
            return {}
        cfg = self.config
        batch = self.window.batch()
        stride = cfg.live_pixel_stride if live else 1
        first = self.iterations if live and cfg.live_keyframe_rotation else 0
        totals = {"photometric": 0.0, "depth": 0.0, "identity": 0.0}
        first_started_s = time.perf_counter()
        growth_room = self._densify_growth_room(deadline_s, first_started_s) if live else None
        done = 0
        for it in range(cfg.iterations_per_frame):
            if deadline_s is not None and it > 0:
                # the next iteration would take about as long as this frame's did on average
                now = time.perf_counter()
                if now + (now - first_started_s) / it > deadline_s:
                    break
            view = self.keyframes[batch[(first + it) % len(batch)]].next_lattice(stride)
            rgb, depth, logits, _, meta = self.render_with_meta(view.viewmat, view.K, view.width, view.height,
                                                                view.pixel_stride)
            photo = photometric_loss(rgb, view.rgb, cfg.ssim_weight)
            dl = depth_loss(depth, view.depth)
            loss = photo + cfg.depth_weight * dl
            il = torch.zeros(())
            if view.identity_probs is not None:
                il = identity_loss_soft(logits, view.identity_probs)
                loss = loss + cfg.identity_weight * il
            elif view.identity_target is not None:
                il = identity_loss(logits, view.identity_target, view.identity_confidence)
                loss = loss + cfg.identity_weight * il
            for opt in self.map.optimizers.values():
                opt.zero_grad(set_to_none=True)
            self.map.head_optimizer.zero_grad(set_to_none=True)
            self.densifier.before_backward(meta)
            loss.backward()
            for opt in self.map.optimizers.values():
                opt.step()
            self.map.head_optimizer.step()
            self.iterations += 1
            counts = self.densifier.after_backward(self.iterations, meta, cfg.live_densify_window if live else 0,
                                                   growth_room)
            if growth_room is not None:
                growth_room = max(growth_room - counts.get("duplicated", 0) - counts.get("split", 0), 0)
            totals["photometric"] += photo.item()
            totals["depth"] += dl.item()
            totals["identity"] += il.item()
            done += 1
        if live and deadline_s is not None:
            self._live_iteration_s_per_gaussian = (time.perf_counter() - first_started_s) / done / max(self.map.num_gaussians, 1)
        return {**{k: v / done for k, v in totals.items()}, "iterations": done}

    def _densify_growth_room(self, deadline_s: float | None, now_s: float) -> int | None:
        """New Gaussians densification may add this frame (``live_densify_min_iterations``): as
        many as keep that many iterations inside the time left to ``deadline_s``, at the last live
        frame's time per iteration and Gaussian. Taking an iteration's cost as proportional to the
        map (its fixed part counted per Gaussian too) errs small. None: no limit (no deadline, the
        rule off, or no live frame measured yet)."""
        iterations = self.config.live_densify_min_iterations
        per_gaussian_s = self._live_iteration_s_per_gaussian
        if deadline_s is None or iterations <= 0 or per_gaussian_s is None or per_gaussian_s <= 0:
            return None
        affordable = (deadline_s - now_s) / (iterations * per_gaussian_s)
        return max(int(affordable) - self.map.num_gaussians, 0)

    def _prune(self) -> int:
        with torch.no_grad():
            transparent = self.map.opacities_act() < self.config.prune_opacity
            # a diverged step can leave a Gaussian with non-finite parameters; it would poison
            # every later render that sees it, so it goes with the transparent ones
            broken = torch.zeros_like(transparent)
            for value in self.map.params.values():
                broken |= ~torch.isfinite(value).reshape(len(value), -1).all(dim=1)
            transparent |= broken
        self.non_finite_pruned += int(broken.sum())
        if not transparent.any():
            return 0
        self.densifier.removed(transparent)
        return self.map.remove(transparent)
