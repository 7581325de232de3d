"""3D boxes, their IoU and one-to-one matching: the one ruler for box recall and precision.

A :class:`Box3D` is a centre, full extents along its own axes and the rotation world <- box (box
axes as columns). :func:`box_iou_3d` is exact for boxes that stand upright (one box axis along
world z, any yaw): the IoU of two such boxes is the area of the intersection of their footprints
times the overlap of their height ranges, over the union of their volumes. The footprints are
convex polygons, intersected by clipping one against the other's edges (Sutherland-Hodgman), in
float64. :func:`match_boxes` pairs ground truth and predictions one-to-one by Hungarian assignment
(``scipy.optimize.linear_sum_assignment``) maximising the summed IoU, then keeps the pairs at or
above the threshold: one large box cannot claim several objects, and a greedy highest-IoU-first
pass cannot take the one prediction two objects both need.

No ROS here; the IoU threshold is always the caller's argument.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial import ConvexHull, QhullError

# |cos| of the angle between a box axis and world z above which the axis counts as vertical, and
# below which (for the other entries) a rotation counts as axis-aligned: float round-off of a
# rotation built from a yaw of pi/2 (cos = 6e-17) must not leave the exact path.
_ALIGNED_TOLERANCE = 1e-9


@dataclass(frozen=True, eq=False)
class Box3D:
    """An oriented 3D box: ``center (3,)``, full extents ``size (3,)`` along the box axes, and
    ``rotation (3, 3)`` world <- box (the box axes are its columns)."""

    center: np.ndarray
    size: np.ndarray
    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))

    def __post_init__(self):
        center = np.asarray(self.center, dtype=np.float64).reshape(-1)
        size = np.asarray(self.size, dtype=np.float64).reshape(-1)
        rotation = np.asarray(self.rotation, dtype=np.float64)
        if center.shape != (3,) or size.shape != (3,) or rotation.shape != (3, 3):
            raise ValueError(f"Box3D needs center (3,), size (3,), rotation (3, 3); got {center.shape}, "
                             f"{size.shape}, {rotation.shape}")
        if not (np.isfinite(center).all() and np.isfinite(size).all() and np.isfinite(rotation).all()):
            raise ValueError("Box3D: center, size and rotation must be finite")
        if (size < 0).any():
            raise ValueError(f"Box3D: size must be >= 0, got {size.tolist()}")
        if not np.allclose(rotation.T @ rotation, np.eye(3), atol=1e-6):
            raise ValueError("Box3D: rotation must be orthonormal")
        object.__setattr__(self, "center", center)
        object.__setattr__(self, "size", size)
        object.__setattr__(self, "rotation", rotation)

    @classmethod
    def from_yaw(cls, center, size, yaw: float) -> "Box3D":
        """An upright box turned by ``yaw`` (rad) about +z; ``size`` is (length along the yawed x,
        width, height)."""
        c, s = math.cos(float(yaw)), math.sin(float(yaw))
        return cls(center, size, np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]))

    @classmethod
    def from_aabb(cls, minimum, maximum) -> "Box3D":
        """The axis-aligned box between corners ``minimum`` and ``maximum``."""
        minimum, maximum = np.asarray(minimum, dtype=np.float64), np.asarray(maximum, dtype=np.float64)
        return cls((minimum + maximum) / 2.0, maximum - minimum, np.eye(3))

    @property
    def volume(self) -> float:
        return float(np.prod(self.size))

    @property
    def yaw(self) -> float:
        """Heading of the first box axis about +z (meaningful for upright boxes)."""
        return math.atan2(float(self.rotation[1, 0]), float(self.rotation[0, 0]))

    def corners(self) -> np.ndarray:
        """The 8 corners ``[8, 3]`` in the world frame."""
        signs = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=np.float64)
        return self.center + (signs * (self.size / 2.0)) @ self.rotation.T

    def vertical_axis(self) -> int | None:
        """Index of the box axis along world z, or None when the box is tilted off vertical."""
        alignment = np.abs(self.rotation[2])
        axis = int(alignment.argmax())
        return axis if alignment[axis] > 1.0 - _ALIGNED_TOLERANCE else None

    def is_axis_aligned(self) -> bool:
        """Whether every box axis lies along a world axis (an AABB, whatever the axis order)."""
        magnitude = np.abs(self.rotation)
        return bool(np.all((magnitude < _ALIGNED_TOLERANCE) | (magnitude > 1.0 - _ALIGNED_TOLERANCE)))


def _polygon_area(polygon: np.ndarray) -> float:
    """Signed area (counter-clockwise > 0) of a polygon ``[V, 2]`` (shoelace)."""
    if len(polygon) < 3:
        return 0.0
    x, y = polygon[:, 0], polygon[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def _footprint(box: Box3D) -> np.ndarray:
    """Counter-clockwise vertices ``[V, 2]`` of the box's footprint on the xy plane: the rectangle
    of its two horizontal axes for an upright box, else the convex hull of its projected corners
    (empty when degenerate)."""
    vertical = box.vertical_axis()
    if vertical is not None:
        a, b = [k for k in range(3) if k != vertical]
        half_a = box.rotation[:2, a] * box.size[a] / 2.0
        half_b = box.rotation[:2, b] * box.size[b] / 2.0
        centre = box.center[:2]
        polygon = np.stack([centre + half_a + half_b, centre - half_a + half_b,
                            centre - half_a - half_b, centre + half_a - half_b])
        return polygon[::-1].copy() if _polygon_area(polygon) < 0 else polygon
    points = box.corners()[:, :2]
    try:
        return points[ConvexHull(points).vertices]  # 2-D hulls come counter-clockwise
    except QhullError:  # a footprint of zero area (a flat box seen edge-on)
        return np.zeros((0, 2))


def _vertical_range(box: Box3D) -> tuple[float, float]:
    z = box.corners()[:, 2]
    return float(z.min()), float(z.max())


def _clip_convex(subject: np.ndarray, clip: np.ndarray) -> np.ndarray:
    """Intersection of two counter-clockwise convex polygons (Sutherland-Hodgman)."""
    output = subject
    for start, end in zip(clip, np.roll(clip, -1, axis=0)):
        if len(output) == 0:
            break
        edge = end - start
        # >= 0: left of (or on) the edge, i.e. inside a counter-clockwise convex polygon
        side = edge[0] * (output[:, 1] - start[1]) - edge[1] * (output[:, 0] - start[0])
        kept = []
        for i in range(len(output)):
            j = (i + 1) % len(output)
            if side[i] >= 0:
                kept.append(output[i])
            if (side[i] >= 0) != (side[j] >= 0):
                t = side[i] / (side[i] - side[j])
                kept.append(output[i] + t * (output[j] - output[i]))
        output = np.asarray(kept).reshape(-1, 2)
    return output


def _span_overlap(lo_a: float, hi_a: float, lo_b: float, hi_b: float) -> float:
    return max(0.0, min(hi_a, hi_b) - max(lo_a, lo_b))


def box_iou_3d(a: Box3D, b: Box3D) -> float:
    """Intersection over union of two boxes' volumes, in [0, 1].

    Exact for upright boxes (one box axis along world z; any yaw, any axis order): footprint
    polygon intersection times height overlap. A box tilted off vertical is replaced by its
    vertical prism, the convex hull of its footprint times its height range (the smallest
    upright prism enclosing it), and the IoU is that of the prisms; it stays continuous as a box
    tilts, and equals the exact IoU when both boxes are upright. Boxes of zero volume score 0.
    """
    (bottom_a, top_a), (bottom_b, top_b) = _vertical_range(a), _vertical_range(b)
    z_overlap = _span_overlap(bottom_a, top_a, bottom_b, top_b)
    if z_overlap <= 0.0:
        return 0.0
    foot_a, foot_b = _footprint(a), _footprint(b)
    if len(foot_a) < 3 or len(foot_b) < 3:
        return 0.0
    lo_a, hi_a = foot_a.min(axis=0), foot_a.max(axis=0)
    lo_b, hi_b = foot_b.min(axis=0), foot_b.max(axis=0)
    x_overlap = _span_overlap(lo_a[0], hi_a[0], lo_b[0], hi_b[0])
    y_overlap = _span_overlap(lo_a[1], hi_a[1], lo_b[1], hi_b[1])
    if x_overlap <= 0.0 or y_overlap <= 0.0:
        return 0.0  # also exact for boxes that only touch
    if a.is_axis_aligned() and b.is_axis_aligned():
        area = x_overlap * y_overlap  # the footprints are their own bounding rectangles
    else:
        area = max(0.0, _polygon_area(_clip_convex(foot_a, foot_b)))
    intersection = area * z_overlap
    volume_a = _polygon_area(foot_a) * (top_a - bottom_a)
    volume_b = _polygon_area(foot_b) * (top_b - bottom_b)
    union = volume_a + volume_b - intersection
    return float(min(1.0, intersection / union)) if union > 0.0 else 0.0


def iou_matrix(gt: list[Box3D], pred: list[Box3D]) -> np.ndarray:
    """``[len(gt), len(pred)]`` IoU of every ground-truth box with every prediction."""
    matrix = np.zeros((len(gt), len(pred)))
    for i, g in enumerate(gt):
        for j, p in enumerate(pred):
            matrix[i, j] = box_iou_3d(g, p)
    return matrix


@dataclass
class BoxMatch:
    """One-to-one matching of ground-truth boxes to predicted boxes at one IoU threshold."""

    pairs: list[tuple[int, int, float]]  # (gt index, pred index, IoU) with IoU >= threshold, by gt index
    assignment: list[tuple[int, int, float]]  # every Hungarian pair, below the threshold too
    num_gt: int
    num_pred: int
    iou_threshold: float
    iou: np.ndarray  # [num_gt, num_pred] the IoU matrix the matching was made on

    @property
    def matched(self) -> int:
        return len(self.pairs)

    @property
    def recall(self) -> float:
        """Matched / ground truth (NaN without ground truth)."""
        return self.matched / self.num_gt if self.num_gt else float("nan")

    @property
    def precision(self) -> float:
        """Matched / predictions (NaN without predictions)."""
        return self.matched / self.num_pred if self.num_pred else float("nan")

    def assigned_iou_per_gt(self) -> np.ndarray:
        """``[num_gt]`` IoU of each ground-truth box with its Hungarian partner, whether or not it
        reaches the threshold (0 without a partner)."""
        out = np.zeros(self.num_gt)
        for i, _, value in self.assignment:
            out[i] = value
        return out

    def best_iou_per_gt(self) -> np.ndarray:
        """``[num_gt]`` highest IoU of each ground-truth box with any prediction, matched or not."""
        return self.iou.max(axis=1) if self.num_pred else np.zeros(self.num_gt)


def match_boxes(gt: list[Box3D], pred: list[Box3D], iou_threshold: float) -> BoxMatch:
    """Hungarian one-to-one matching maximising the summed IoU; pairs below ``iou_threshold`` are
    dropped afterwards (they count as unmatched on both sides)."""
    if not 0.0 < iou_threshold <= 1.0:
        raise ValueError(f"match_boxes: iou_threshold must be in (0, 1], got {iou_threshold}")
    iou = iou_matrix(gt, pred)
    assignment: list[tuple[int, int, float]] = []
    if iou.size:
        rows, cols = linear_sum_assignment(iou, maximize=True)
        assignment = [(int(r), int(c), float(iou[r, c])) for r, c in zip(rows, cols)]
    pairs = [pair for pair in assignment if pair[2] >= iou_threshold]
    return BoxMatch(pairs=pairs, assignment=assignment, num_gt=len(gt), num_pred=len(pred),
                    iou_threshold=float(iou_threshold), iou=iou)
