"""The evaluators' example figures: a row of labelled image panels, label images in fixed colours."""
from __future__ import annotations

import numpy as np

from ocgs_ros.atomic_io import atomic_save_figure


def colour_labels(labels: np.ndarray, background: int) -> np.ndarray:
    """``labels [H, W]`` (ints) as RGB: one colour per label (the same in every figure, seeded),
    black where ``labels == background``."""
    palette = np.random.default_rng(1).uniform(0.15, 1.0, size=(int(max(labels.max(), 0)) + 2, 3))
    out = palette[np.clip(labels, 0, None)]
    out[labels == background] = 0.0
    return out


def save_panels(path, panels: list[tuple[str, np.ndarray]], title: str) -> None:
    """``panels`` (title, image) side by side under ``title``, written atomically to ``path``."""
    import matplotlib
    matplotlib.use("Agg")  # before pyplot, and only when a figure is drawn: importing stays side-effect free
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(3 * len(panels), 3.2))
    for ax, (panel_title, image) in zip(axes, panels):
        ax.imshow(image, interpolation="nearest")
        ax.set_title(panel_title, fontsize=9)
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    atomic_save_figure(fig, path, dpi=100)
