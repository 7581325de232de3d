"""Colours of codebook entries: one palette for identity images, markers and report figures."""
from __future__ import annotations

import colorsys

import numpy as np

#: golden-ratio hue steps: neighbouring codebook entries get clearly different colours
_GOLDEN = 0.6180339887498949


def codebook_color(entry: int) -> np.ndarray:
    """A stable, distinct RGB colour in [0, 1] for codebook entry ``entry`` (grey for -1 = none)."""
    if entry < 0:
        return np.array([0.6, 0.6, 0.6])
    return np.array(colorsys.hsv_to_rgb((entry * _GOLDEN) % 1.0, 0.75, 0.95))
