"""Metrics of the object-aware Gaussian map evaluation (numpy in, floats out).

* :func:`psnr` — of images in [0, 1].
* :func:`matched_instance_iou` — per ground-truth object, IoU with the rendered instance it is
  matched to (Hungarian on IoU, one-to-one; unmatched objects score 0).
* :func:`majority_label` / :class:`IdentityVotes` — per object, the majority rendered identity in each
  view and over all views; cross-view consistency = fraction of visible views whose majority equals
  the object's overall majority; cross-scene = fraction of object kinds seen in >= 2 scenes whose
  overall majority entries agree.

Box recall and precision are not here: :mod:`ocgs_ros.evaluation.boxes` is the one box ruler.
"""
from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
from scipy.optimize import linear_sum_assignment



def psnr(image: np.ndarray, target: np.ndarray) -> float:
    mse = float(np.mean((np.asarray(image, np.float64) - np.asarray(target, np.float64)) ** 2))
    return float("inf") if mse == 0 else float(-10.0 * np.log10(mse))


def matched_instance_iou(predicted: np.ndarray, ground_truth: np.ndarray, gt_ids) -> dict[int, float]:
    """``{gt_id: IoU}`` for the listed ground-truth ids (masks ``int [H,W]``, 0 = background)."""
    gt_ids = [int(g) for g in gt_ids]
    pred_ids = [int(p) for p in np.unique(predicted) if p != 0]
    if not gt_ids:
        return {}
    if not pred_ids:
        return {g: 0.0 for g in gt_ids}
    iou = np.zeros((len(gt_ids), len(pred_ids)))
    for i, g in enumerate(gt_ids):
        gm = ground_truth == g
        for j, p in enumerate(pred_ids):
            pm = predicted == p
            union = np.logical_or(gm, pm).sum()
            iou[i, j] = np.logical_and(gm, pm).sum() / union if union else 0.0
    rows, cols = linear_sum_assignment(-iou)
    out = {g: 0.0 for g in gt_ids}
    for r, c in zip(rows, cols):
        out[gt_ids[r]] = float(iou[r, c])
    return out


def majority_label(labels: np.ndarray) -> int:
    """Most frequent value (ties: the smallest)."""
    values, counts = np.unique(np.asarray(labels).reshape(-1), return_counts=True)
    return int(values[np.argmax(counts)])


class IdentityVotes:
    """Per-object identity votes gathered over views, for cross-view and cross-scene consistency."""

    def __init__(self):
        self.per_view: dict[tuple, list[int]] = defaultdict(list)  # object key -> majority per view
        self.pooled: dict[tuple, Counter] = defaultdict(Counter)  # object key -> label counts
        self.kind_of: dict[tuple, int] = {}

    def add(self, key: tuple, kind: int, labels: np.ndarray) -> None:
        """Labels (rendered codebook entry / slot per pixel, -1 = background) of one object in one view."""
        labels = np.asarray(labels).reshape(-1)
        if labels.size == 0:
            return
        self.per_view[key].append(majority_label(labels))
        values, counts = np.unique(labels, return_counts=True)
        self.pooled[key].update(dict(zip(values.tolist(), counts.tolist())))
        self.kind_of[key] = int(kind)

    def overall(self, key: tuple) -> int:
        counts = self.pooled[key]
        best = max(counts.values())
        return min(v for v, c in counts.items() if c == best)

    def object_summary(self, key: tuple) -> dict | None:
        """``{"entry": overall majority (-1 = background), "views": n, "views_agreeing": k}`` of one
        object, or None if it was never seen. With entry -1 the agreeing views agree on "no
        identity", which :meth:`cross_view_consistency` counts as inconsistent."""
        if key not in self.per_view:
            return None
        overall = self.overall(key)
        views = self.per_view[key]
        return {"entry": overall, "views": len(views), "views_agreeing": sum(v == overall for v in views)}

    def _agreement(self, identified_only: bool) -> float | None:
        agree = total = 0
        for key, views in self.per_view.items():
            overall = self.overall(key)
            if overall >= 0:
                agree += sum(v == overall for v in views)
            if overall >= 0 or not identified_only:
                total += len(views)
        return agree / total if total else None

    def cross_view_consistency(self) -> float | None:
        """Fraction of (object, view) appearances whose majority is the object's overall majority.
        An object whose overall majority is background (-1) got no identity: all its views count as
        inconsistent (otherwise a map that labels everything background would score 1.0)."""
        return self._agreement(identified_only=False)

    def identified_cross_view_consistency(self) -> float | None:
        """Like :meth:`cross_view_consistency`, over the objects that got an identity only (overall
        majority not background): how stable the identity is where there is one."""
        return self._agreement(identified_only=True)

    def identified_fraction(self) -> float | None:
        """Fraction of objects whose overall majority is an identity (not background)."""
        keys = list(self.pooled)
        return float(np.mean([self.overall(k) >= 0 for k in keys])) if keys else None

    def kind_collisions(self) -> float | None:
        """Fraction of pairs of identified objects of *different* kinds that got the same label —
        the other half of cross-scene identity: agreement within a kind means little if unrelated
        kinds share the label too (raw slot indices agree often, by reusing a few slots for all)."""
        identified = [(self.kind_of[k], self.overall(k)) for k in self.pooled if self.overall(k) >= 0]
        pairs = [(a[1] == b[1]) for i, a in enumerate(identified) for b in identified[i + 1:] if a[0] != b[0]]
        return float(np.mean(pairs)) if pairs else None

    def cross_scene(self) -> tuple[float | None, dict[int, list[int]]]:
        """``(fraction of kinds seen in >= 2 scenes whose entries all agree, {kind: [entry per scene]})``.
        Keys are ``(scene, object)``; an object whose overall majority is background (-1) counts as
        a disagreeing vote, since it got no entry."""
        # one vote per (kind, scene): the majority over all that kind's objects in the scene
        merged: dict[int, dict[int, Counter]] = defaultdict(lambda: defaultdict(Counter))
        for key, counts in self.pooled.items():
            merged[self.kind_of[key]][key[0]].update(counts)
        entries: dict[int, list[int]] = {}
        for kind, scenes in merged.items():
            if len(scenes) < 2:
                continue
            votes = []
            for scene in sorted(scenes):
                counts = scenes[scene]
                best = max(counts.values())
                votes.append(min(v for v, c in counts.items() if c == best))
            entries[kind] = votes
        if not entries:
            return None, {}
        agree = [len(set(v)) == 1 and v[0] >= 0 for v in entries.values()]
        return float(np.mean(agree)), entries
