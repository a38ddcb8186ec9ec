"""Pictures of a trained self-organising map (matplotlib, written atomically).

Every function takes the trained :class:`~graphforge.som.SelfOrganizingMap` (or the
arrays it produced), writes one PNG with :func:`graphforge.engine.plots.save_figure`
and returns its path. Rectangular maps are drawn as squares, hexagonal maps as
hexagons, at the neurons' grid positions (row 0 at the top).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from graphforge.engine.plots import plt, save_figure
from graphforge.som.som import SelfOrganizingMap


def _cells(som: SelfOrganizingMap) -> list[np.ndarray]:
    """Polygon of every neuron's cell, in neuron order."""
    pos = som.positions.cpu().numpy()
    if som.topology == "hex":
        radius = 1.0 / math.sqrt(3.0)  # pointy-top hexagons that tile at unit spacing
        angles = np.deg2rad(np.arange(6) * 60.0 + 30.0)
        shape = np.stack([np.cos(angles), np.sin(angles)], 1) * radius
    else:
        shape = np.array([[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5]])
    return [p + shape for p in pos]


def _draw(ax: Any, som: SelfOrganizingMap, values: np.ndarray | None = None, *, colors: Sequence[Any] | None = None,
          cmap: str = "viridis", vmin: float | None = None, vmax: float | None = None) -> Any:
    """Draw the map's cells coloured by ``values`` (through ``cmap``) or by explicit ``colors``."""
    from matplotlib.collections import PolyCollection

    coll = PolyCollection(_cells(som), edgecolors="white", linewidths=0.4)
    if colors is not None:
        coll.set_facecolor(colors)
    else:
        coll.set_array(np.asarray(values, dtype=float))
        coll.set_cmap(cmap)
        coll.set_clim(vmin, vmax)
    ax.add_collection(coll)
    pos = som.positions.cpu().numpy()
    ax.set_xlim(pos[:, 0].min() - 0.8, pos[:, 0].max() + 0.8)
    ax.set_ylim(pos[:, 1].max() + 0.8, pos[:, 1].min() - 0.8)  # row 0 on top
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    return coll


def _figsize(som: SelfOrganizingMap, scale: float = 0.42, extra: float = 1.6) -> tuple[float, float]:
    return (min(max(som.cols * scale + extra, 4.0), 16.0), min(max(som.rows * scale + 0.8, 3.5), 16.0))


def plot_u_matrix(som: SelfOrganizingMap, path: str | Path, title: str = "U-matrix") -> Path:
    """U-matrix: each neuron's mean weight distance to its grid neighbours (light = cluster border)."""
    u = som.u_matrix().reshape(-1).cpu().numpy()
    fig, ax = plt.subplots(figsize=_figsize(som))
    coll = _draw(ax, som, u, cmap="bone_r")
    fig.colorbar(coll, ax=ax, fraction=0.046, pad=0.04, label="mean distance to neighbours")
    ax.set_title(title)
    return save_figure(fig, path)


def plot_class_map(som: SelfOrganizingMap, labels: torch.Tensor, counts: torch.Tensor, class_names: Sequence[str],
                   path: str | Path, title: str = "class map") -> Path:
    """Which neuron learned which class: colour = majority class, text = its name, paler = less pure.

    Args:
        som: The trained map.
        labels: Majority class of each neuron ``[M]`` (-1: no sample).
        counts: Samples of each class won by each neuron ``[M, C]``.
        class_names: Names of the classes.
        path: Where to write the PNG.
        title: Figure title.
    """
    from matplotlib.colors import to_rgba
    from matplotlib.patches import Patch

    labels_np = labels.cpu().numpy()
    counts_np = counts.cpu().numpy().astype(float)
    totals = counts_np.sum(1)
    purity = np.divide(counts_np.max(1), totals, out=np.zeros_like(totals), where=totals > 0)
    palette = plt.get_cmap("tab10" if len(class_names) <= 10 else "tab20")
    colors = []
    for lab, pur in zip(labels_np, purity):
        if lab < 0:
            colors.append((0.85, 0.85, 0.85, 1.0))
        else:
            r, g, b, _ = to_rgba(palette(int(lab) % palette.N))
            colors.append((r, g, b, 0.35 + 0.65 * float(pur)))
    fig, ax = plt.subplots(figsize=_figsize(som, extra=2.6))
    _draw(ax, som, colors=colors)
    pos = som.positions.cpu().numpy()
    fontsize = max(4.0, min(9.0, 90.0 / max(som.rows, som.cols)))
    for (x, y), lab in zip(pos, labels_np):
        if lab >= 0:
            ax.text(x, y, class_names[int(lab)][:4], ha="center", va="center", fontsize=fontsize)
    present = sorted({int(v) for v in labels_np if v >= 0})
    handles = [Patch(color=palette(c % palette.N), label=class_names[c]) for c in present]
    handles.append(Patch(color=(0.85, 0.85, 0.85), label="no sample"))
    ax.legend(handles=handles, loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=7, frameon=False)
    ax.set_title(title)
    return save_figure(fig, path)


def plot_hit_map(som: SelfOrganizingMap, hits: torch.Tensor, path: str | Path, title: str = "hit map") -> Path:
    """How many samples each neuron wins."""
    h = hits.cpu().numpy().astype(float)
    fig, ax = plt.subplots(figsize=_figsize(som))
    coll = _draw(ax, som, h, cmap="Greens", vmin=0)
    fig.colorbar(coll, ax=ax, fraction=0.046, pad=0.04, label="samples")
    if som.num_neurons <= 400:
        pos = som.positions.cpu().numpy()
        fontsize = max(4.0, min(8.0, 80.0 / max(som.rows, som.cols)))
        top = max(h.max(), 1.0)
        for (x, y), v in zip(pos, h):
            ax.text(x, y, int(v), ha="center", va="center", fontsize=fontsize, color="white" if v > 0.6 * top else "black")
    ax.set_title(title)
    return save_figure(fig, path)


def plot_component_planes(som: SelfOrganizingMap, features: Sequence[int], path: str | Path,
                          feature_names: Sequence[str] | None = None, title: str = "component planes") -> Path:
    """One small map per input feature: the neurons' weight for that feature.

    Args:
        som: The trained map.
        features: Indices of the input features to show (at most 25 are drawn).
        path: Where to write the PNG.
        feature_names: Label of each shown feature (default: ``feature <i>``).
        title: Figure title.
    """
    assert som.weights is not None, "train the map first"
    features = list(features)[:25]
    names = list(feature_names) if feature_names is not None else [f"feature {i}" for i in features]
    n = max(len(features), 1)
    ncols = min(5, math.ceil(math.sqrt(n)))
    nrows = -(-n // ncols)
    w = som.weights.cpu().numpy()
    span = som.positions.max(0).values - som.positions.min(0).values + 1.0
    aspect = float(span[1] / span[0])  # map height / width
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.4 * ncols, 2.4 * nrows * aspect + 0.8), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, f, name in zip(axes.ravel(), features, names):
        ax.axis("on")
        _draw(ax, som, w[:, f], cmap="coolwarm")
        ax.set_title(name, fontsize=8)
    fig.suptitle(title)
    return save_figure(fig, path)


def plot_pixel_relevance(relevance: torch.Tensor, example: torch.Tensor, path: str | Path, *,
                         selected: torch.Tensor | None = None, label: str = "", rule: str = "") -> Path:
    """Heat map of the relevance of every input pixel, laid over a test image.

    Args:
        relevance: Relevance of each input feature, shaped like one image ``[C, H, W]``
            (channels are averaged) or ``[H, W]``.
        example: A test image of the same shape (raw pixel values).
        path: Where to write the PNG.
        selected: Flat indices of the selected features, outlined on the overlay.
        label: The example's class, for the title.
        rule: How relevance was computed, for the title.
    """
    rel = relevance.float().cpu()
    img = example.float().cpu()
    if rel.ndim == 3:
        rel = rel.mean(0)
    if img.ndim == 3:
        img = img.permute(1, 2, 0) if img.shape[0] == 3 else img.mean(0)
    rel_np = rel.numpy()
    img_np = img.numpy()
    img_np = (img_np - img_np.min()) / max(float(img_np.max() - img_np.min()), 1e-12)
    fig, axes = plt.subplots(1, 3, figsize=(10.5, 3.6))
    axes[0].imshow(img_np, cmap=None if img_np.ndim == 3 else "gray")
    axes[0].set_title(f"test image{f' (class {label})' if label else ''}")
    im = axes[1].imshow(rel_np, cmap="inferno")
    fig.colorbar(im, ax=axes[1], fraction=0.046, pad=0.04)
    axes[1].set_title(f"pixel relevance{f' ({rule})' if rule else ''}")
    axes[2].imshow(img_np, cmap=None if img_np.ndim == 3 else "gray")
    axes[2].imshow(rel_np, cmap="inferno", alpha=0.55)
    if selected is not None and relevance.ndim >= 2:
        h, w = rel_np.shape
        sel = torch.as_tensor(selected).cpu() % (h * w)
        axes[2].scatter((sel % w).numpy(), (sel // w).numpy(), s=max(2.0, 600.0 / max(h, w)), marker="s",
                        facecolors="none", edgecolors="cyan", linewidths=0.6)
    axes[2].set_title("relevance over the image" + (" (selected outlined)" if selected is not None else ""))
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    return save_figure(fig, path)


def plot_feature_relevance(relevance: torch.Tensor, path: str | Path, *, selected: torch.Tensor | None = None,
                           rule: str = "") -> Path:
    """Bar chart of the relevance of each input feature (for vectors, where pixels make no sense)."""
    rel = relevance.float().cpu().reshape(-1).numpy()
    fig, ax = plt.subplots(figsize=(min(max(4.0, 0.12 * len(rel) + 2), 16.0), 3.4))
    colors = np.full(len(rel), "tab:gray", dtype=object)
    if selected is not None:
        colors[torch.as_tensor(selected).cpu().numpy()] = "tab:orange"
    ax.bar(np.arange(len(rel)), rel, color=list(colors))
    ax.set(xlabel="input feature", ylabel="relevance", title=f"feature relevance{f' ({rule})' if rule else ''}"
           + (" — selected in orange" if selected is not None else ""))
    return save_figure(fig, path)


def plot_training(history: Sequence[dict[str, Any]], path: str | Path, title: str = "SOM training") -> Path:
    """Quantization error, topographic error and label-clustering accuracy per SOM epoch."""
    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    for ax, key, name in zip(axes, ("quantization_error", "topographic_error", "label_accuracy"),
                             ("quantization error", "topographic error", "label-clustering accuracy")):
        values = [h.get(key) for h in history]
        if any(v is not None for v in values):
            ax.plot(epochs, [np.nan if v is None else v for v in values], marker="o", ms=3)
        ax.set(xlabel="SOM epoch", title=name)
        ax.grid(alpha=0.3)
    fig.suptitle(title, y=1.04)
    return save_figure(fig, path)
