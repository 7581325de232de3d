"""The catalogue of tabletop object kinds: shape × colour × texture × size class.

The default catalogue has 4 shapes × 6 colours = 24 kinds. Texture and size class are fixed per kind
(assigned by a deterministic rule), so every kind differs from every other in shape or colour and
the extra attributes add variety without creating look-alike kinds.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SHAPES = ("sphere", "box", "cylinder", "cone")
COLOURS = {
    "red": (0.85, 0.15, 0.12),
    "green": (0.15, 0.70, 0.20),
    "blue": (0.15, 0.30, 0.90),
    "yellow": (0.92, 0.82, 0.12),
    "magenta": (0.80, 0.20, 0.75),
    "cyan": (0.10, 0.78, 0.80),
}
TEXTURES = ("solid", "stripes", "checker")
SIZE_CLASSES = {"S": 0.07, "M": 0.09, "L": 0.11}  # characteristic diameter in metres


@dataclass(frozen=True)
class ObjectKind:
    kind_id: int
    name: str
    shape: str
    colour_name: str
    colour: tuple[float, float, float]
    texture: str
    size_class: str

    @property
    def diameter(self) -> float:
        return SIZE_CLASSES[self.size_class]


def default_catalogue() -> list[ObjectKind]:
    kinds = []
    size_names = list(SIZE_CLASSES)
    for s, shape in enumerate(SHAPES):
        for c, (colour_name, rgb) in enumerate(COLOURS.items()):
            texture = TEXTURES[(s + c) % len(TEXTURES)]
            size_class = size_names[(2 * s + c) % len(size_names)]
            kinds.append(ObjectKind(len(kinds), f"{colour_name}_{texture}_{shape}_{size_class}", shape,
                                    colour_name, rgb, texture, size_class))
    return kinds


def texture_factor(texture: str, local: np.ndarray, diameter: float) -> np.ndarray:
    """Brightness multiplier of a texture at object-local points ``[N, 3]`` (metres)."""
    period = diameter / 3.0
    if texture == "solid":
        return np.ones(len(local))
    if texture == "stripes":  # horizontal bands
        return np.where(np.floor(local[:, 2] / period).astype(int) % 2 == 0, 1.0, 0.55)
    if texture == "checker":
        cells = np.floor(local / period).astype(int).sum(1)
        return np.where(cells % 2 == 0, 1.0, 0.6)
    raise ValueError(f"unknown texture {texture!r}")
