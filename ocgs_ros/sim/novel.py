"""A tabletop world variant with object kinds outside the training catalogue (issue 19).

GOCL's codebook is learnt on the default catalogue (:func:`~ocgs_ros.sim.catalogue.default_catalogue`:
4 shapes x 6 colours, diameters 7-11 cm). :func:`novel_catalogue` appends as many kinds it never saw:
the same primitive shapes in six colours absent from the training catalogue, at two sizes outside
its range (6 cm and 13 cm). Kind ids continue after the default ones, so a kind id still names one
kind everywhere and :func:`is_novel_kind` tells the two apart. :func:`novel_tabletop_world` draws a
scene's objects uniformly from both halves: about half of every scene's objects are of a kind the
codebook does not know, the rest are known kinds (their figures are reported separately).
"""
from __future__ import annotations

from dataclasses import dataclass

from .catalogue import SHAPES, TEXTURES, ObjectKind, default_catalogue
from .tabletop import TabletopWorld
from .types import TabletopConfig

#: colours none of the training kinds has (the training ones: red, green, blue, yellow, magenta, cyan)
NOVEL_COLOURS = {
    "orange": (0.95, 0.50, 0.08),
    "purple": (0.42, 0.15, 0.62),
    "white": (0.93, 0.93, 0.90),
    "brown": (0.45, 0.26, 0.12),
    "pink": (0.98, 0.60, 0.70),
    "olive": (0.45, 0.50, 0.12),
}
#: characteristic diameters (m) outside the training catalogue's 7-11 cm
NOVEL_SIZE_CLASSES = {"XS": 0.06, "XL": 0.13}


@dataclass(frozen=True)
class NovelKind(ObjectKind):
    """A kind outside the training catalogue; its size class is one of :data:`NOVEL_SIZE_CLASSES`."""

    @property
    def diameter(self) -> float:
        return NOVEL_SIZE_CLASSES[self.size_class]


def novel_catalogue() -> list[ObjectKind]:
    """The default catalogue followed by the novel kinds (ids ``len(default) ...``)."""
    kinds: list[ObjectKind] = default_catalogue()
    size_names = list(NOVEL_SIZE_CLASSES)
    for s, shape in enumerate(SHAPES):
        for c, (colour_name, rgb) in enumerate(NOVEL_COLOURS.items()):
            texture = TEXTURES[(s + 2 * c) % len(TEXTURES)]
            size_class = size_names[(s + c) % len(size_names)]
            kinds.append(NovelKind(len(kinds), f"novel_{colour_name}_{texture}_{shape}_{size_class}", shape,
                                   colour_name, rgb, texture, size_class))
    return kinds


def is_novel_kind(kind_id: int) -> bool:
    """Whether ``kind_id`` (of :func:`novel_catalogue`) is outside the training catalogue."""
    return int(kind_id) >= len(default_catalogue())


def novel_tabletop_world(config: TabletopConfig | None = None, seed: int = 0) -> TabletopWorld:
    """A tabletop scene whose objects are drawn from the known and the novel kinds alike."""
    return TabletopWorld(config, seed=seed, catalogue=novel_catalogue())
