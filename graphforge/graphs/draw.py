"""Pictures of graphs: per-image graphs over their images, dataset graphs as a 2-D layout,
a SOM's grid over its U-matrix.

:func:`draw_graph` picks the picture from the graph's layout; each function writes one PNG
atomically and returns its path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from graphforge.errors import ConfigError

#: Edges drawn at most in a dataset-graph layout (a uniform sample beyond that).
MAX_LAYOUT_EDGES = 4000


def _plt() -> Any:
    from graphforge.engine.plots import plt

    return plt


def _save(fig: Any, path: str | Path) -> Path:
    from graphforge.engine.plots import save_figure

    return save_figure(fig, path)


def draw_image_graphs(graph: Any, images: torch.Tensor, path: str | Path, *, count: int = 16,
                      title: str = "") -> Path:
    """Draw the first ``count`` per-image graphs over their images (``dyn_knn``).

    Nodes sit at the centres of the feature-map patches they stand for (``graph.node_pos``,
    normalised row / column in [-1, 1]); each edge is a line; the title of each image gives
    its k (``graph.k``) and label.

    Args:
        graph: A per-sample graph from :func:`graphforge.graphs.build_graph` (``batch``,
            ``node_pos``; optional ``k`` and ``graph_y``).
        images: The samples the graphs were built from, ``[N, C, H, W]``, in the same order.
        path: The PNG to write.
        count: How many images.
    """
    plt = _plt()
    pos = getattr(graph, "node_pos", None)
    batch = getattr(graph, "batch", None)
    if not isinstance(pos, torch.Tensor) or not isinstance(batch, torch.Tensor):
        raise ConfigError("drawing per-image graphs needs node positions (node_pos) and batch; "
                          "build the graphs with graphforge.graphs.build_graph")
    count = max(1, min(count, int(batch.max()) + 1, len(images)))
    cols = min(count, 8)
    rows = -(-count // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.9 * cols, 2.1 * rows), squeeze=False)
    h, w = images.shape[-2], images.shape[-1]
    yx = torch.stack([(pos[:, 0] + 1) / 2 * (h - 1), (pos[:, 1] + 1) / 2 * (w - 1)], 1).numpy()
    n_per = pos.shape[0]
    src, dst = graph.edge_index
    k = getattr(graph, "k", None)
    labels = getattr(graph, "graph_y", None)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= count:
            continue
        img = images[i].float()
        img = img / 255.0 if images.dtype == torch.uint8 else img
        ax.imshow(img.permute(1, 2, 0).squeeze(-1).numpy(), cmap="gray" if img.shape[0] == 1 else None)
        lo = i * n_per
        mine = (dst >= lo) & (dst < lo + n_per)
        for s, d in zip((src[mine] - lo).tolist(), (dst[mine] - lo).tolist()):
            ax.plot([yx[s, 1], yx[d, 1]], [yx[s, 0], yx[d, 0]], color="tab:orange", lw=0.5, alpha=0.45)
        ax.scatter(yx[:, 1], yx[:, 0], s=5, color="tab:cyan", zorder=3)
        parts = [f"k={int(k[i])}" if isinstance(k, torch.Tensor) else "",
                 f"y={int(labels[i])}" if isinstance(labels, torch.Tensor) else ""]
        ax.set_title("  ".join(p for p in parts if p), fontsize=8)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def _layout_2d(x: torch.Tensor, method: str, seed: int) -> np.ndarray:
    x = x.double().numpy()
    if method == "tsne":
        from sklearn.manifold import TSNE

        return TSNE(n_components=2, random_state=seed, init="pca").fit_transform(x)
    centred = x - x.mean(0)
    _, _, vt = np.linalg.svd(centred[: min(len(x), 20000)], full_matrices=False)
    return centred @ vt[:2].T


def draw_dataset_graph(graph: Any, path: str | Path, *, layout: str = "pca", max_edges: int = MAX_LAYOUT_EDGES,
                       seed: int = 0, title: str = "") -> Path:
    """A dataset graph as a 2-D layout (PCA, or t-SNE) of its node features coloured by class,
    with a sample of its edges, next to its degree histogram.

    Args:
        graph: A ``Data`` with ``x``, ``edge_index`` and optional ``y``.
        path: The PNG to write.
        layout: ``pca`` or ``tsne``.
        max_edges: Edges drawn at most (a seeded uniform sample).
    """
    if layout not in ("pca", "tsne"):
        raise ConfigError(f"layout must be pca or tsne, got {layout!r}")
    x = getattr(graph, "x", None)
    if not isinstance(x, torch.Tensor) or x.dim() != 2:
        raise ConfigError("drawing a dataset graph needs node features x [N, D] for the layout")
    plt = _plt()
    xy = _layout_2d(x.cpu(), layout, seed)
    fig, (ax, ax_deg) = plt.subplots(1, 2, figsize=(11, 4.6), gridspec_kw={"width_ratios": [1.6, 1]})
    ei = graph.edge_index.cpu()
    if ei.shape[1] > max_edges:
        ei = ei[:, torch.randperm(ei.shape[1], generator=torch.Generator().manual_seed(seed))[:max_edges]]
    from matplotlib.collections import LineCollection

    segments = np.stack([xy[ei[0].numpy()], xy[ei[1].numpy()]], 1)
    ax.add_collection(LineCollection(segments, colors="0.5", linewidths=0.3, alpha=0.35))
    y = getattr(graph, "y", None)
    colours = y.cpu().numpy() if isinstance(y, torch.Tensor) and y.numel() == len(xy) else None
    sc = ax.scatter(xy[:, 0], xy[:, 1], c=colours, cmap="tab10" if colours is not None else None, s=4, zorder=3)
    if colours is not None:
        ax.legend(*sc.legend_elements(), loc="best", fontsize=7, title="class", markerscale=0.8)
    ax.set(title=f"{len(xy)} nodes, {graph.edge_index.shape[1]} edges ({min(max_edges, graph.edge_index.shape[1])} "
           f"drawn), {layout.upper()} layout", xticks=[], yticks=[])
    deg = torch.bincount(graph.edge_index[1].cpu(), minlength=len(xy)).numpy()
    ax_deg.hist(deg, bins=min(50, max(5, int(deg.max()) + 1)), color="tab:blue")
    ax_deg.set(xlabel="in-degree", ylabel="nodes", title="degree histogram")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def draw_som_graph(graph: Any, path: str | Path, *, title: str = "") -> Path:
    """A SOM's neuron graph on its grid, over the U-matrix (each neuron's mean weight distance
    to its grid neighbours); neurons coloured by their majority class when labelled."""
    plt = _plt()
    pos = graph.pos.cpu().numpy()
    ei = graph.edge_index.cpu()
    w = graph.x.cpu().double()
    dist = (w[ei[0]] - w[ei[1]]).norm(dim=1)
    u = torch.zeros(len(pos), dtype=torch.float64).index_add_(0, ei[1], dist)
    u = (u / torch.bincount(ei[1], minlength=len(pos)).clamp_min(1)).numpy()
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    from matplotlib.collections import LineCollection

    ax.add_collection(LineCollection(np.stack([pos[ei[0].numpy()], pos[ei[1].numpy()]], 1), colors="0.6",
                                     linewidths=0.6, zorder=1))
    sc = ax.scatter(pos[:, 0], pos[:, 1], c=u, cmap="bone_r", s=160, marker="h", zorder=2, edgecolors="none")
    fig.colorbar(sc, ax=ax, label="U-matrix (mean distance to grid neighbours)")
    labels = getattr(graph, "neuron_label", None)
    if isinstance(labels, torch.Tensor):
        for (px, py), lab in zip(pos, labels.tolist()):  # pos is (x, y) = (column, row)
            if lab >= 0:
                ax.text(px, py, str(lab), ha="center", va="center", fontsize=6, color="tab:red", zorder=3)
    ax.invert_yaxis()
    ax.set(title=title or f"SOM grid: {len(pos)} neurons, {ei.shape[1]} edges", xticks=[], yticks=[])
    ax.set_aspect("equal")
    return _save(fig, path)


def draw_graph(graph: Any, path: str | Path, *, images: torch.Tensor | None = None, **kwargs: Any) -> Path:
    """The picture that fits ``graph``: per-image graphs over ``images``, a SOM grid, or a layout."""
    if getattr(graph, "batch", None) is not None and getattr(graph, "node_pos", None) is not None:
        if images is None:
            raise ConfigError("drawing per-image graphs needs the images they were built from")
        return draw_image_graphs(graph, images, path, **kwargs)
    if getattr(graph, "pos", None) is not None and getattr(graph, "hits", None) is not None:
        return draw_som_graph(graph, path, **kwargs)
    return draw_dataset_graph(graph, path, **kwargs)
