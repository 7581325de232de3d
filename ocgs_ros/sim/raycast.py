"""Vectorised analytic ray casting against planes, spheres, yawed boxes, vertical cylinders and cones.

Rays need not be unit length: a hit distance ``t`` is in units of the ray direction, so camera rays
with a unit z component in the camera frame give z-depth directly, and unit rays give range.
Each primitive first culls rays against its bounding sphere, so scenes of tens of objects stay fast.
This is the simulator's own renderer — deliberately independent of the Gaussian rasteriser it checks.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

_EPS = 1e-9


@dataclass
class Hits:
    """Nearest hit per ray: distance (inf = miss), primitive index (-1 = miss), world normal, point."""

    t: np.ndarray
    primitive: np.ndarray
    normal: np.ndarray
    point: np.ndarray


def _nearest_root_in_height(t0, t1, z0, dz, low: float, high: float):
    """Of two roots along rays (t0 <= t1), the nearest whose height z0 + t dz lies in [low, high]
    (side surfaces of vertical cylinders and cones), inf where neither does."""
    out = np.full(len(t0), np.inf)
    for t in (t1, t0):  # t0 last, so it wins where both are valid
        z = z0 + dz * np.where(np.isfinite(t), t, 0)
        out = np.where(np.isfinite(t) & (z >= low) & (z <= high), t, out)
    return out


def _solve_quadratic(a, b, c):
    """Smallest positive root of a t^2 + b t + c = 0 per ray (inf where none)."""
    disc = b * b - 4 * a * c
    ok = (disc >= 0) & (np.abs(a) > _EPS)
    sq = np.sqrt(np.where(ok, disc, 0.0))
    a_safe = np.where(ok, a, 1.0)
    t0 = (-b - sq) / (2 * a_safe)
    t1 = (-b + sq) / (2 * a_safe)
    t0 = np.where(ok & (t0 > _EPS), t0, np.inf)
    t1 = np.where(ok & (t1 > _EPS), t1, np.inf)
    return t0, t1


@dataclass
class Plane:
    """The horizontal plane z = height, hit from above."""

    height: float = 0.0

    def intersect(self, o, d):
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (self.height - o[:, 2]) / d[:, 2]
        t = np.where((d[:, 2] < -_EPS) & (t > _EPS), t, np.inf)
        normal = np.zeros_like(o)
        normal[:, 2] = 1.0
        return t, normal


@dataclass
class Sphere:
    center: np.ndarray
    radius: float

    def bounding(self):
        return np.asarray(self.center, float), float(self.radius)

    def intersect(self, o, d):
        oc = o - self.center
        t0, _ = _solve_quadratic((d * d).sum(1), 2 * (oc * d).sum(1), (oc * oc).sum(1) - self.radius**2)
        p = o + d * np.where(np.isfinite(t0), t0, 0)[:, None]
        return t0, (p - self.center) / self.radius


@dataclass
class YawBox:
    """A box with centre ``center``, full extents ``size`` (l, w, h) and heading ``yaw`` about +z."""

    center: np.ndarray
    size: np.ndarray
    yaw: float
    _R: np.ndarray = field(init=False, repr=False)

    def __post_init__(self):
        c, s = np.cos(self.yaw), np.sin(self.yaw)
        self._R = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
        self.center = np.asarray(self.center, float)
        self.size = np.asarray(self.size, float)

    def bounding(self):
        return self.center, float(np.linalg.norm(self.size) / 2)

    def intersect(self, o, d):
        # Slab test in the box frame (rotation only about z).
        ol = (o - self.center) @ self._R
        dl = d @ self._R
        half = self.size / 2
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = 1.0 / np.where(np.abs(dl) > _EPS, dl, _EPS)
        t_a = (-half - ol) * inv
        t_b = (half - ol) * inv
        t_near = np.minimum(t_a, t_b)
        t_far = np.maximum(t_a, t_b)
        enter = t_near.max(1)
        leave = t_far.min(1)
        hit = (leave >= enter) & (enter > _EPS)
        t = np.where(hit, enter, np.inf)
        axis = t_near.argmax(1)
        normal_local = np.zeros_like(ol)
        rows = np.arange(len(o))
        normal_local[rows, axis] = -np.sign(dl[rows, axis])
        return t, normal_local @ self._R.T


@dataclass
class _VerticalSolid:
    """A solid of revolution about +z on a disc of ``radius`` centred on ``base``, ``height`` tall."""

    base: np.ndarray
    radius: float
    height: float

    def bounding(self):
        base = np.asarray(self.base, float)
        return base + [0, 0, self.height / 2], float(np.hypot(self.radius, self.height / 2))


@dataclass
class Cylinder(_VerticalSolid):
    """A vertical cylinder standing on ``base`` (centre of its bottom disc)."""

    def intersect(self, o, d):
        base = np.asarray(self.base, float)
        oc = o - base
        a = d[:, 0] ** 2 + d[:, 1] ** 2
        b = 2 * (oc[:, 0] * d[:, 0] + oc[:, 1] * d[:, 1])
        c = oc[:, 0] ** 2 + oc[:, 1] ** 2 - self.radius**2
        side = _nearest_root_in_height(*_solve_quadratic(a, b, c), oc[:, 2], d[:, 2], 0.0, self.height)
        with np.errstate(divide="ignore", invalid="ignore"):
            t_cap = (self.height - oc[:, 2]) / d[:, 2]
        pc = oc + d * np.where(np.isfinite(t_cap), t_cap, 0)[:, None]
        cap_ok = (t_cap > _EPS) & (pc[:, 0] ** 2 + pc[:, 1] ** 2 <= self.radius**2) & (d[:, 2] < 0)
        cap = np.where(cap_ok, t_cap, np.inf)
        t = np.minimum(side, cap)
        p = oc + d * np.where(np.isfinite(t), t, 0)[:, None]
        normal = np.zeros_like(o)
        normal[:, 0], normal[:, 1] = p[:, 0] / self.radius, p[:, 1] / self.radius
        on_cap = cap < side
        normal[on_cap] = [0.0, 0.0, 1.0]
        return t, normal


@dataclass
class Cone(_VerticalSolid):
    """A vertical cone with its base disc centred on ``base`` and its apex ``height`` above it."""

    def intersect(self, o, d):
        apex = np.asarray(self.base, float) + [0.0, 0.0, self.height]
        k = (self.radius / self.height) ** 2
        oa = o - apex
        # x^2 + y^2 = k z^2 for z in [-height, 0] (z relative to the apex, pointing up)
        a = d[:, 0] ** 2 + d[:, 1] ** 2 - k * d[:, 2] ** 2
        b = 2 * (oa[:, 0] * d[:, 0] + oa[:, 1] * d[:, 1] - k * oa[:, 2] * d[:, 2])
        c = oa[:, 0] ** 2 + oa[:, 1] ** 2 - k * oa[:, 2] ** 2
        t = _nearest_root_in_height(*_solve_quadratic(a, b, c), oa[:, 2], d[:, 2], -self.height, 0.0)
        p = oa + d * np.where(np.isfinite(t), t, 0)[:, None]
        normal = np.stack([p[:, 0], p[:, 1], -k * p[:, 2]], axis=1)
        normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), _EPS)
        return t, normal


class Scene:
    """A list of primitives (+ an optional ground plane, index -2); ``cast`` returns the nearest hits."""

    GROUND = -2

    def __init__(self, primitives, ground: Plane | None = None, cull: bool = True):
        self.primitives = list(primitives)
        self.ground = ground
        #: bounding-sphere culling; off only to measure what it saves (benchmarks/sim_bench.py)
        self.cull = cull
        bounds = [p.bounding() for p in self.primitives]
        self._centers = np.array([b[0] for b in bounds]).reshape(-1, 3)
        self._radii = np.array([b[1] for b in bounds])

    def cast(self, origins: np.ndarray, directions: np.ndarray, chunk: int = 131072) -> Hits:
        n = len(directions)
        origins = np.broadcast_to(origins, directions.shape)
        t = np.full(n, np.inf)
        prim = np.full(n, -1, dtype=np.int32)
        normal = np.zeros((n, 3))
        for start in range(0, n, chunk):
            sl = slice(start, start + chunk)
            self._cast_chunk(np.ascontiguousarray(origins[sl]), directions[sl], t[sl], prim[sl], normal[sl])
        point = origins + directions * np.where(np.isfinite(t), t, 0)[:, None]
        return Hits(t, prim, normal, point)

    def _cast_chunk(self, o, d, t_best, prim_best, normal_best):
        if self.ground is not None:
            t, nrm = self.ground.intersect(o, d)
            better = t < t_best
            t_best[better], prim_best[better], normal_best[better] = t[better], self.GROUND, nrm[better]
        dd = (d * d).sum(1)
        for index, primitive in enumerate(self.primitives):
            # Bounding-sphere cull: distance from the sphere centre to the ray line.
            oc = self._centers[index] - o
            along = (oc * d).sum(1) / dd
            closest = oc - d * along[:, None]
            if self.cull:
                candidates = np.flatnonzero(((closest * closest).sum(1) <= self._radii[index] ** 2)
                                            & (along * np.sqrt(dd) > -self._radii[index]))
            else:
                candidates = np.arange(len(o))
            if candidates.size == 0:
                continue
            t, nrm = primitive.intersect(o[candidates], d[candidates])
            better = t < t_best[candidates]
            rows = candidates[better]
            t_best[rows], prim_best[rows], normal_best[rows] = t[better], index, nrm[better]
