"""Figures for GOCL training and evaluation: training curves, example decompositions and held-out
learning curves (matplotlib)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..atomic_io import atomic_save_figure


def codebook_palette(num_entries: int) -> np.ndarray:
    """``[num_entries + 1, 3]`` RGB in [0, 1]: row 0 (background) black, then distinct hues.

    tab20 + tab20b give 40 distinguishable colours; beyond that hues repeat (entry ids are
    printed on the masks as well).
    """
    import matplotlib

    colours = [matplotlib.colormaps["tab20"](i)[:3] for i in range(20)]
    colours += [matplotlib.colormaps["tab20b"](i)[:3] for i in range(20)]
    rows = [(0.0, 0.0, 0.0)] + [colours[i % len(colours)] for i in range(num_entries)]
    return np.asarray(rows, dtype=np.float64)


def _save(fig: Any, path: Path) -> None:
    atomic_save_figure(fig, path, dpi=110)


def _entry_map(masks: torch.Tensor, slot_ids: torch.Tensor) -> tuple[np.ndarray, list[tuple[float, float, int]]]:
    """Hard segmentation coloured by codebook entry (+1; 0 = background) and label positions."""
    hard = masks.argmax(dim=0).numpy()  # [H, W] slot index
    entries = (slot_ids.numpy() + 1)[hard]  # background slot id -1 -> 0
    labels = []
    for slot in np.unique(hard):
        if slot == 0:
            continue
        ys, xs = np.nonzero(hard == slot)
        labels.append((float(xs.mean()), float(ys.mean()), int(slot_ids[slot])))
    return entries, labels


def plot_examples(examples: dict[str, torch.Tensor], codebook_size: int, path: Path,
                  baseline: dict[str, torch.Tensor] | None = None, title: str = "") -> None:
    """One row per example: image, reconstruction, gt instances, masks coloured by codebook entry
    (entry id printed at each slot's centroid), and optionally the no-codebook baseline's masks
    coloured by slot index."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    count = int(examples["image"].shape[0])
    if count == 0:
        raise ValueError("plot_examples needs at least one example")
    palette = codebook_palette(max(codebook_size, 1))
    columns = ["image", "reconstruction", "ground-truth instances", "GOCL masks (codebook entry)"]
    if baseline is not None:
        columns.append("no-codebook masks (slot index)")
    fig, axes = plt.subplots(count, len(columns), figsize=(2.4 * len(columns), 2.4 * count), squeeze=False)
    for row in range(count):
        panels = [examples["image"][row].permute(1, 2, 0).numpy(),
                  examples["reconstruction"][row].permute(1, 2, 0).clamp(0, 1).numpy()]
        instance = examples["instance"][row].numpy()
        panels.append(palette[np.where(instance > 0, (instance * 7) % codebook_size + 1, 0)])
        entries, labels = _entry_map(examples["masks"][row], examples["slot_ids"][row])
        panels.append(palette[entries])
        label_sets: list[list[tuple[float, float, int]]] = [[], [], [], labels]
        if baseline is not None:
            base_entries, base_labels = _entry_map(baseline["masks"][row], baseline["slot_ids"][row])
            panels.append(palette[base_entries])
            label_sets.append(base_labels)
        for col, (panel, ax) in enumerate(zip(panels, axes[row])):
            ax.imshow(panel, interpolation="nearest")
            for x, y, entry in label_sets[col]:
                ax.text(x, y, str(entry), color="white", fontsize=7, ha="center", va="center",
                        bbox=dict(facecolor="black", alpha=0.5, pad=0.5, linewidth=0))
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(columns[col], fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    _save(fig, path)


def plot_learning_curves(curve: Sequence[dict[str, Any]], baseline_curve: Sequence[dict[str, Any]], path: Path,
                         targets: dict[str, float] | None = None) -> None:
    """Held-out FG-ARI, mIoU, codebook consistency and NMI vs training step (baseline dashed)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ("fg_ari", "miou", "codebook_consistency", "nmi")
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.4))
    for ax, name in zip(axes, names):
        for points, style, label in ((curve, "o-", "GOCL"), (baseline_curve, "s--", "no codebook")):
            steps = [p["step"] for p in points if p.get(name) is not None]
            values = [p[name] for p in points if p.get(name) is not None]
            if steps:
                line, = ax.plot(steps, values, style, label=label)
            # Hollow markers: GOCL snapshots from its codebook warm-up (slot index as identity).
            warm = [(p["step"], p[name]) for p in points
                    if p.get(name) is not None and p.get("use_codebook") is False and label == "GOCL"]
            if warm:
                ax.plot(*zip(*warm), "o", markerfacecolor="white", color=line.get_color(),
                        label="GOCL warm-up (codebook off)")
        if targets and name in targets:
            ax.axhline(targets[name], color="grey", linestyle=":", label="target")
        ax.set_ylim(0, 1)
        ax.set_xlabel("training step")
        ax.set_title(name)
        ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)


def plot_training_curves(rows: Sequence[dict[str, Any]], path: Path) -> None:
    """Loss terms, tau and codebook perplexity vs step from the training log (PNG)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not rows:
        return
    steps = [row["step"] for row in rows]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for name in ("total", "reconstruction"):
        axes[0].plot(steps, [row[name] for row in rows], label=name)
    axes[0].set_yscale("log")
    axes[0].set_title("loss (per-value MSE scale)")
    for name in ("kl_ext", "kl_bck", "kl_codebook_usage", "background_smoothness"):
        axes[1].plot(steps, [row[name] for row in rows], label=name)
    axes[1].set_yscale("symlog", linthresh=1e-3)
    axes[1].set_title("regularisers (unweighted)")
    axes[2].plot(steps, [row["codebook_perplexity"] for row in rows], label="codebook perplexity")
    axes[2].plot(steps, [row["codebook_active"] for row in rows], label="active prototypes")
    twin = axes[2].twinx()
    twin.plot(steps, [row["tau"] for row in rows], "k--", label="tau")
    twin.set_ylabel("Gumbel tau")
    axes[2].set_title("codebook")
    for ax in axes:
        ax.set_xlabel("step")
        ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    atomic_save_figure(fig, path, dpi=80)
