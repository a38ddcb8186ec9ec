"""Plots written into the run directory (matplotlib, no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from graphforge.io import atomic_path  # noqa: E402


def save_figure(fig: Any, path: str | Path) -> Path:
    """Save a matplotlib figure atomically as PNG and close it."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    return Path(path)


def plot_learning_curves(history: Sequence[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Plot loss and accuracy per epoch for training and validation."""
    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.8))
    for key, label in (("train_loss", "train"), ("val_loss", "validation")):
        values = [h.get(key) for h in history]
        if any(v is not None for v in values):
            ax_loss.plot(epochs, values, marker="o", ms=3, label=label)
    for key, label in (("train_accuracy", "train"), ("val_accuracy", "validation")):
        values = [h.get(key) for h in history]
        if any(v is not None for v in values):
            ax_acc.plot(epochs, values, marker="o", ms=3, label=label)
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


def plot_confusion_matrix(confusion: Sequence[Sequence[int]], class_names: Sequence[str], path: str | Path, title: str = "") -> Path:
    """Plot a confusion matrix (rows = true class), normalised per row, with counts."""
    cm = np.asarray(confusion, dtype=float)
    row_sums = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, row_sums, out=np.zeros_like(cm), where=row_sums > 0)
    n = len(class_names)
    size = min(max(4.0, 0.45 * n + 2), 16.0)
    fig, ax = plt.subplots(figsize=(size, size * 0.9))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    ax.set_xticks(range(n), labels=class_names, rotation=90 if n > 12 else 0)
    ax.set_yticks(range(n), labels=class_names)
    ax.set(xlabel="predicted", ylabel="true", title=title or "confusion matrix")
    if n <= 30:
        for i in range(n):
            for j in range(n):
                if cm[i, j]:
                    ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if norm[i, j] > 0.5 else "black")
    return save_figure(fig, path)


def plot_k_distribution(history: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Heat map of the predicted-k histogram per epoch, with the mean k on top.

    Args:
        history: Epoch rows holding ``k_hist`` (``{k: count}``) and ``mean_k``.
        path: Where to write the PNG.
    """
    ks = sorted({int(k) for h in history for k in h["k_hist"]})
    epochs = [h["epoch"] for h in history]
    grid = np.zeros((len(ks), len(history)))
    for j, h in enumerate(history):
        total = max(sum(h["k_hist"].values()), 1)
        for i, k in enumerate(ks):
            grid[i, j] = h["k_hist"].get(str(k), 0) / total
    fig, ax = plt.subplots(figsize=(max(5.0, 0.25 * len(epochs) + 3), 4))
    im = ax.imshow(grid, aspect="auto", origin="lower", cmap="magma_r", vmin=0,
                   extent=(epochs[0] - 0.5, epochs[-1] + 0.5, ks[0] - 0.5, ks[-1] + 0.5))
    fig.colorbar(im, ax=ax, label="fraction of training images")
    ax.plot(epochs, [h.get("mean_k", np.nan) for h in history], color="tab:cyan", marker="o", ms=3, label="mean k")
    ax.set(xlabel="epoch", ylabel="predicted k", title="distribution of the learned k per image")
    ax.legend(loc="upper right")
    return save_figure(fig, path)
