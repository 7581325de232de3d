"""Keyframe selection and the training set of each optimisation step.

A frame becomes a keyframe when the camera has moved or turned enough since the last keyframe
(motion is a cheap, robust proxy for new overlap). Each step trains on the newest keyframes
(a sliding window) plus a few older ones sampled at random, so the map keeps fitting what it saw
earlier instead of forgetting it.

Keyframes cost memory (image, depth and the identity distribution: ``(M+1) x 4`` bytes per pixel),
so a long-running mapper keeps at most a budget of them; when it is exceeded, the older keyframe
(outside the window) whose pose is closest to another kept keyframe is dropped
(:func:`most_redundant_keyframe`): that view adds the least coverage.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def pose_change(T_a: np.ndarray, T_b: np.ndarray) -> tuple[float, float]:
    """Translation (m) and rotation angle (deg) between two ``T_world_cam`` poses."""
    delta = np.linalg.inv(T_a) @ T_b
    cos = np.clip((np.trace(delta[:3, :3]) - 1) / 2, -1.0, 1.0)
    return float(np.linalg.norm(delta[:3, 3])), float(np.degrees(np.arccos(cos)))


@dataclass
class KeyframeSelector:
    min_translation_m: float = 0.05
    min_rotation_deg: float = 5.0
    _last_pose: np.ndarray | None = field(default=None, init=False, repr=False)

    def consider(self, T_world_cam: np.ndarray) -> bool:
        """True if this frame should become a keyframe (the first frame always does)."""
        if self._last_pose is not None:
            moved, turned = pose_change(self._last_pose, T_world_cam)
            if moved < self.min_translation_m and turned < self.min_rotation_deg:
                return False
        self._last_pose = np.array(T_world_cam, dtype=np.float64)
        return True

    def reset(self) -> None:
        self._last_pose = None


@dataclass
class KeyframeWindow:
    """Indices of keyframes to train on: the ``window`` newest plus ``old_samples`` older ones."""

    window: int = 4
    old_samples: int = 2
    seed: int = 0
    _count: int = field(default=0, init=False)
    _rng: np.random.Generator = field(init=False, repr=False)

    def __post_init__(self):
        if self.window < 1 or self.old_samples < 0:
            raise ValueError(f"window must be >= 1 and old_samples >= 0, got {self.window}, {self.old_samples}")
        self._rng = np.random.default_rng(self.seed)

    def added(self) -> int:
        """Register a new keyframe; returns its index."""
        self._count += 1
        return self._count - 1

    def removed(self) -> None:
        """Register that one keyframe was dropped from the list (indices after it shift down)."""
        if self._count == 0:
            raise ValueError("KeyframeWindow.removed: no keyframes registered")
        self._count -= 1

    def batch(self) -> list[int]:
        recent = list(range(max(0, self._count - self.window), self._count))
        older = self._count - len(recent)
        if older <= 0 or self.old_samples == 0:
            return recent
        picked = self._rng.choice(older, size=min(self.old_samples, older), replace=False)
        return sorted(int(i) for i in picked) + recent


def most_redundant_keyframe(poses: list[np.ndarray], protect_newest: int, translation_scale_m: float,
                            rotation_scale_deg: float) -> int | None:
    """Index of the keyframe to drop from ``poses`` (``T_world_cam`` in keyframe order): among all
    but the ``protect_newest`` newest, the one nearest to any other keyframe, measured as
    ``translation / translation_scale_m + rotation / rotation_scale_deg`` (the selector's own
    thresholds, so both count alike); the older wins a tie. None if every keyframe is protected.

    All pairs at once (:func:`pose_change`'s formulas on stacked poses): a full budget of 48
    keyframes is ~2000 pairs, which a loop over pairs took ~20 ms of a live frame to compare."""
    candidates = len(poses) - max(protect_newest, 0)
    if candidates <= 0 or len(poses) < 2:
        return None
    stacked = np.asarray(poses, dtype=np.float64)  # [K, 4, 4]
    delta = np.linalg.inv(stacked[:candidates])[:, None] @ stacked[None]  # [candidates, K, 4, 4]
    moved = np.linalg.norm(delta[..., :3, 3], axis=-1)
    cos = np.clip((np.trace(delta[..., :3, :3], axis1=-2, axis2=-1) - 1) / 2, -1.0, 1.0)
    distance = moved / translation_scale_m + np.degrees(np.arccos(cos)) / rotation_scale_deg
    distance[np.arange(candidates), np.arange(candidates)] = np.inf  # not its own neighbour
    return int(np.argmin(distance.min(axis=1)))  # argmin takes the first: the older wins a tie
