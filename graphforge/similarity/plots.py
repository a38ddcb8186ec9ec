"""Pictures of similarity graphs (written into run and sweep directories)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from graphforge.engine.plots import plt, save_figure


def plot_degree_distribution(degree: torch.Tensor, path: Path, title: str) -> Path:
    """Histogram of node degrees (self-loops excluded), with the mean and isolated nodes marked.

    Args:
        degree: int ``[M]`` degree of each node.
        path: The PNG to write (atomically).
        title: Figure title.
    """
    d = degree.double()
    fig, ax = plt.subplots(figsize=(6, 4))
    bins = min(60, int(d.max()) + 1) if len(d) else 1
    ax.hist(d.numpy(), bins=bins, color="#4477aa")
    if len(d):
        ax.axvline(float(d.mean()), color="#cc3311", linestyle="--", label=f"mean {float(d.mean()):.2f}")
        ax.legend()
    isolated = int((degree == 0).sum())
    ax.set_xlabel("degree (neighbours per node)")
    ax.set_ylabel("nodes")
    ax.set_title(f"{title}\n{len(d)} nodes, {isolated} isolated")
    return save_figure(fig, path)


def plot_score_boxplots(
    distributions: Mapping[str, Any], path: Path, title: str, thresholds: Mapping[str, float] | None = None,
    target_degree: float | None = None,
) -> Path:
    """Box plots of pair scores: a panel per metric, same-class vs different-class boxes.

    Whiskers reach 1.5 IQR; outliers are not drawn (with 10^5 pairs they would bury
    the boxes), which the figure says.

    Args:
        distributions: ``{metric: ScoreDistribution}`` (:mod:`graphforge.similarity.scores`).
        path: The PNG to write (atomically).
        title: Figure title.
        thresholds: ``{metric: threshold}`` drawn as a dashed line (the target-degree threshold).
        target_degree: The mean degree ``thresholds`` aim at, for the legend.
    """
    names = list(distributions)
    cols = min(3, len(names))
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.8 * rows), squeeze=False)
    for ax in axes.flat[len(names):]:
        ax.set_visible(False)
    for ax, name in zip(axes.flat, names):
        dist = distributions[name]
        groups = [(dist.same_class, "same class", "#4477aa"), (dist.different_class, "different class", "#ee6677")]
        present = [(s.numpy(), label, color) for s, label, color in groups if len(s)]
        if present:
            boxes = ax.boxplot([p[0] for p in present], showfliers=False, patch_artist=True, widths=0.6)
            ax.set_xticks(range(1, len(present) + 1), labels=[f"{p[1]}\n(n={len(p[0])})" for p in present])
            for patch, p in zip(boxes["boxes"], present):
                patch.set_facecolor(p[2])
                patch.set_alpha(0.6)
        else:
            ax.text(0.5, 0.5, "no labelled pairs", ha="center", va="center", transform=ax.transAxes)
        if thresholds and name in thresholds:
            t = thresholds[name]
            label = f"mean degree {target_degree:g}: {t:.4g}" if target_degree is not None else f"threshold {t:.4g}"
            ax.axhline(t, color="#228833", linestyle="--", label=label)
            ax.legend(loc="best", fontsize="small")
        ax.set_title(f"{name} ({dist.kind}: edge if {'>=' if dist.kind == 'similarity' else '<='} t)")
        ax.set_ylabel(dist.kind)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"{title}\nwhiskers 1.5 IQR, outliers not drawn")
    fig.tight_layout()
    return save_figure(fig, path)


def plot_sweep(summary: Sequence[Mapping[str, Any]], path: Path, title: str) -> Path:
    """Test accuracy against the threshold, k or degree: a panel per metric and axis, a line per model (std bars).

    Args:
        summary: Rows of :func:`graphforge.similarity.sweep.summarize_results`.
        path: The PNG to write (atomically).
        title: Figure title.
    """
    panels: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for s in summary:
        if s["runs"]:
            axis = s["mode"] if s["mode"] in ("threshold", "degree") else "k"
            panels.setdefault((s["metric"], axis), []).append(s)
    cols = max(1, min(3, len(panels)))
    rows = max(1, -(-len(panels) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.6 * rows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, ((metric, axis), entries) in zip(axes.flat, panels.items()):
        modes = {e["mode"] for e in entries}
        lines: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
        for e in entries:
            lines.setdefault((e["model"], e["mode"]), []).append(e)
        for (model, mode), points in lines.items():
            points = sorted(points, key=lambda e: e[axis])
            ax.errorbar([e[axis] for e in points], [e["test_accuracy_mean"] for e in points],
                        yerr=[e["test_accuracy_std"] or 0.0 for e in points], marker="o", ms=4, capsize=3,
                        label=model if len(modes) == 1 else f"{model} ({mode})")
        ax.set_xlabel({"k": "k", "threshold": "threshold", "degree": "mean degree (threshold graph)"}[axis])
        ax.set_ylabel("test accuracy")
        ax.set_title(f"{metric}, {'/'.join(sorted(modes))}" if axis == "k" else metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle(f"{title}\nmean ± std over seeds")
    fig.tight_layout()
    return save_figure(fig, path)
