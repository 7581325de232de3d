"""A procedural road network with the six nuScenes map classes, rasterised once in the world frame.

Roads are axis-aligned: a main road along x and a few cross streets along y. Each class is its own
boolean layer (classes may overlap, as in nuScenes). Layers are sampled from the world raster both
for BEV ground truth in the ego frame and for the camera's ground colours.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .classes import MAP_CLASSES

LANE_WIDTH = 3.5
MAIN_HALF_WIDTH = 2 * LANE_WIDTH  # two lanes each way
CROSS_HALF_WIDTH = 5.0
WALKWAY_WIDTH = 3.0
CROSSING_WIDTH = 4.0


@dataclass
class Lane:
    """A straight lane: points ``origin + s * direction``; agents on it head along ``direction``."""

    origin: np.ndarray
    direction: np.ndarray

    @property
    def yaw(self) -> float:
        return float(np.arctan2(self.direction[1], self.direction[0]))


class RoadMap:
    X_RANGE = (-160.0, 320.0)
    Y_RANGE = (-160.0, 160.0)
    RESOLUTION = 0.25

    def __init__(self, rng: np.random.Generator):
        first = rng.uniform(25.0, 55.0)
        self.cross_streets = [first, first + rng.uniform(90.0, 130.0)]
        shape = (int((self.X_RANGE[1] - self.X_RANGE[0]) / self.RESOLUTION),
                 int((self.Y_RANGE[1] - self.Y_RANGE[0]) / self.RESOLUTION))
        self.layers = np.zeros((len(MAP_CLASSES), *shape), dtype=bool)
        self.carparks: list[tuple[float, float, float, float]] = []
        self._draw(rng)

    # -- raster helpers (raster row = x index, column = y index, as for BEV grids) -------------
    def _cv_points(self, xy: np.ndarray) -> np.ndarray:
        cols = (xy[:, 1] - self.Y_RANGE[0]) / self.RESOLUTION
        rows = (xy[:, 0] - self.X_RANGE[0]) / self.RESOLUTION
        return np.round(np.stack([cols, rows], axis=1)).astype(np.int32)

    def _rect(self, layer: str, x0: float, x1: float, y0: float, y1: float) -> None:
        canvas = self.layers[MAP_CLASSES.index(layer)].view(np.uint8)
        corners = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
        cv2.fillPoly(canvas, [self._cv_points(corners)], 1)

    def _line(self, x0: float, y0: float, x1: float, y1: float, width_m: float = 0.3) -> None:
        canvas = self.layers[MAP_CLASSES.index("divider")].view(np.uint8)
        a, b = self._cv_points(np.array([[x0, y0], [x1, y1]]))
        cv2.line(canvas, tuple(int(v) for v in a), tuple(int(v) for v in b), 1,
                 thickness=max(1, int(round(width_m / self.RESOLUTION))))

    def _draw(self, rng: np.random.Generator) -> None:
        (xa, xb), (ya, yb) = self.X_RANGE, self.Y_RANGE
        m, c, w = MAIN_HALF_WIDTH, CROSS_HALF_WIDTH, WALKWAY_WIDTH
        self._rect("drivable_area", xa, xb, -m, m)
        for cx in self.cross_streets:
            self._rect("drivable_area", cx - c, cx + c, ya, yb)
        # Walkways along every road edge, then cut where roads cross them.
        self._rect("walkway", xa, xb, m, m + w)
        self._rect("walkway", xa, xb, -m - w, -m)
        for cx in self.cross_streets:
            self._rect("walkway", cx + c, cx + c + w, ya, yb)
            self._rect("walkway", cx - c - w, cx - c, ya, yb)
        # Crossings, stop lines before them, and the divider segments between intersections.
        for cx in self.cross_streets:
            self._rect("ped_crossing", cx - c - CROSSING_WIDTH, cx - c, -m, m)
            self._rect("ped_crossing", cx + c, cx + c + CROSSING_WIDTH, -m, m)
            self._rect("ped_crossing", cx - c, cx + c, m, m + CROSSING_WIDTH)
            self._rect("ped_crossing", cx - c, cx + c, -m - CROSSING_WIDTH, -m)
            stop = c + CROSSING_WIDTH + 1.0
            self._rect("stop_line", cx - stop - 0.6, cx - stop, -m, 0.0)  # eastbound lanes
            self._rect("stop_line", cx + stop, cx + stop + 0.6, 0.0, m)  # westbound lanes
            self._rect("stop_line", cx, cx + c, -m - CROSSING_WIDTH - 1.6, -m - CROSSING_WIDTH - 1.0)
            self._rect("stop_line", cx - c, cx, m + CROSSING_WIDTH + 1.0, m + CROSSING_WIDTH + 1.6)
        edges = [xa] + [v for cx in self.cross_streets for v in (cx - c - CROSSING_WIDTH, cx + c + CROSSING_WIDTH)] + [xb]
        for x0, x1 in zip(edges[::2], edges[1::2]):
            for y in (-LANE_WIDTH, 0.0, LANE_WIDTH):
                self._line(x0, y, x1, y)
        for cx in self.cross_streets:
            for y0, y1 in ((ya, -m - CROSSING_WIDTH), (m + CROSSING_WIDTH, yb)):
                self._line(cx, y0, cx, y1)
        # Car parks behind the walkways, clear of the cross streets.
        for side in (1.0, -1.0):
            for _ in range(2):
                for _attempt in range(50):
                    x0 = rng.uniform(-60.0, 200.0)
                    if all(abs(x0 + 15 - cx) > c + w + 20 for cx in self.cross_streets) and \
                            all(abs(x0 - p[0]) > 35 for p in self.carparks if np.sign(p[2]) == side):
                        break
                y_near, y_far = m + w + 1.0, m + w + 26.0
                y0, y1 = (y_near, y_far) if side > 0 else (-y_far, -y_near)
                self.carparks.append((x0, x0 + 30.0, y0, y1))
                self._rect("carpark_area", x0, x0 + 30.0, y0, y1)
        drivable = self.layers[MAP_CLASSES.index("drivable_area")]
        self.layers[MAP_CLASSES.index("walkway")] &= ~drivable

    # -- queries ------------------------------------------------------------------------------
    def sample(self, xy: np.ndarray) -> np.ndarray:
        """Boolean layers ``[6, N]`` at world points ``xy [N, 2]`` (False outside the mapped area)."""
        rows = np.floor((xy[:, 0] - self.X_RANGE[0]) / self.RESOLUTION).astype(np.int64)
        cols = np.floor((xy[:, 1] - self.Y_RANGE[0]) / self.RESOLUTION).astype(np.int64)
        inside = (rows >= 0) & (rows < self.layers.shape[1]) & (cols >= 0) & (cols < self.layers.shape[2])
        out = np.zeros((len(MAP_CLASSES), len(xy)), dtype=bool)
        out[:, inside] = self.layers[:, rows[inside], cols[inside]]
        return out

    def lanes(self) -> list[Lane]:
        east, west = np.array([1.0, 0.0]), np.array([-1.0, 0.0])
        north, south = np.array([0.0, 1.0]), np.array([0.0, -1.0])
        half = LANE_WIDTH / 2
        lanes = [Lane(np.array([0.0, -half]), east), Lane(np.array([0.0, -3 * half]), east),
                 Lane(np.array([0.0, half]), west), Lane(np.array([0.0, 3 * half]), west)]
        for cx in self.cross_streets:
            lanes += [Lane(np.array([cx + CROSS_HALF_WIDTH / 2, 0.0]), north),
                      Lane(np.array([cx - CROSS_HALF_WIDTH / 2, 0.0]), south)]
        return lanes
