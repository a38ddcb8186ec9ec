"""What makes a graph good or bad: size, degrees, components, isolated nodes, homophily.

:func:`graph_stats` takes a PyG ``Data`` — one graph over a dataset, or many per-sample
graphs as one disjoint union with a ``batch`` vector — and returns plain numbers
(JSON-ready). For a dataset graph with labels it reports **edge homophily** (the share of
edges joining two nodes of the same class) and **adjusted homophily** (Platonov et al.,
2023: edge homophily corrected for what the class sizes and degrees give by chance,
``(h - sum_k p_k^2) / (1 - sum_k p_k^2)`` with ``p_k`` the share of edge endpoints in class
``k``; 0 means no better than chance, negative means heterophily). Homophily is what decides
whether a GNN can beat an MLP on a dataset graph. Per split, the edges counted are those
whose target node is in the split.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

SPLITS = ("train", "val", "test")


def _degree_summary(deg: torch.Tensor, prefix: str) -> dict[str, float]:
    if deg.numel() == 0:
        return {f"{prefix}_min": 0, f"{prefix}_mean": 0.0, f"{prefix}_median": 0.0, f"{prefix}_max": 0}
    d = deg.double()
    return {f"{prefix}_min": int(deg.min()), f"{prefix}_mean": float(d.mean()),
            f"{prefix}_median": float(d.median()), f"{prefix}_max": int(deg.max())}


def is_symmetric(edge_index: torch.Tensor, num_nodes: int) -> bool:
    """Whether every edge ``u -> v`` has its reverse ``v -> u`` (as a set of edges)."""
    if edge_index.numel() == 0:
        return True
    n = max(int(num_nodes), 1)
    src, dst = edge_index[0].long(), edge_index[1].long()
    forward = torch.unique(src * n + dst)
    backward = torch.unique(dst * n + src)
    return forward.numel() == backward.numel() and bool(torch.equal(forward, backward))


def connected_components(edge_index: torch.Tensor, num_nodes: int) -> tuple[int, np.ndarray]:
    """Weakly connected components: ``(count, label of each node)`` (SciPy's ``csgraph``)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components as scipy_components

    if num_nodes == 0:
        return 0, np.zeros(0, dtype=np.int32)
    ei = edge_index.cpu().numpy()
    adj = coo_matrix((np.ones(ei.shape[1], dtype=np.int8), (ei[0], ei[1])), shape=(num_nodes, num_nodes)).tocsr()
    count, labels = scipy_components(adj, directed=True, connection="weak")
    return int(count), labels


def edge_homophily(edge_index: torch.Tensor, y: torch.Tensor) -> tuple[float | None, float | None, int]:
    """``(edge homophily, adjusted homophily, edges counted)`` over edges whose ends both have a
    label (``y >= 0``), self-loops excluded; ``None`` when no such edge exists."""
    src, dst = edge_index[0].long(), edge_index[1].long()
    ys, yd = y[src].long(), y[dst].long()
    keep = (src != dst) & (ys >= 0) & (yd >= 0)
    ys, yd = ys[keep], yd[keep]
    m = int(keep.sum())
    if m == 0:
        return None, None, 0
    h = float((ys == yd).double().mean())
    classes = int(torch.maximum(ys.max(), yd.max())) + 1
    endpoints = torch.bincount(ys, minlength=classes) + torch.bincount(yd, minlength=classes)
    p = endpoints.double() / (2.0 * m)
    chance = float((p * p).sum())
    adjusted = (h - chance) / (1.0 - chance) if chance < 1.0 else None
    return h, adjusted, m


def _split_masks(data: Any) -> dict[str, torch.Tensor]:
    masks = {}
    for split in SPLITS:
        mask = getattr(data, f"{split}_mask", None)
        if isinstance(mask, torch.Tensor) and mask.dtype == torch.bool:
            masks[split] = mask.cpu()
    return masks


def graph_stats(data: Any) -> dict[str, Any]:
    """Statistics of a graph (see the module docstring).

    Args:
        data: A PyG ``Data`` / ``Batch`` with ``edge_index`` and ``num_nodes``; optional ``y``
            (node labels; ``-1`` for unlabelled) and ``{split}_mask``; per-sample graphs carry
            ``batch`` (and ``k``, the k of each graph, for ``dyn_knn``).

    Returns:
        ``nodes``, ``edges``, ``symmetric``, ``self_loops``, in-degree (messages each node
        receives) min / mean / median / max, out-degree too when the graph is directed,
        ``isolated_nodes``, ``components``, ``largest_component_share``; with node labels
        ``edge_homophily`` / ``adjusted_homophily`` (overall and per split); for per-sample
        graphs ``graphs``, nodes and edges per graph and the k histogram, mean and std.
    """
    edge_index = data.edge_index.cpu().long()
    n = int(data.num_nodes)
    src, dst = edge_index[0], edge_index[1]
    loops = src == dst
    out: dict[str, Any] = {"nodes": n, "edges": int(edge_index.shape[1]), "self_loops": int(loops.sum())}
    out["symmetric"] = is_symmetric(edge_index, n)
    in_deg = torch.bincount(dst[~loops], minlength=n)
    out.update(_degree_summary(in_deg, "degree"))
    if not out["symmetric"]:
        out.update(_degree_summary(torch.bincount(src[~loops], minlength=n), "out_degree"))
    touched = torch.zeros(n, dtype=torch.bool)
    touched[src[~loops]] = True
    touched[dst[~loops]] = True
    out["isolated_nodes"] = int(n - touched.sum())
    count, labels = connected_components(edge_index[:, ~loops], n)
    out["components"] = count
    out["largest_component_share"] = float(np.bincount(labels).max() / n) if n else 0.0
    batch = getattr(data, "batch", None)
    if isinstance(batch, torch.Tensor) and batch.numel() == n:
        out.update(_per_sample_stats(data, batch.cpu().long(), dst))
        return out
    y = getattr(data, "y", None)
    if isinstance(y, torch.Tensor) and y.dim() == 1 and y.numel() == n and not y.dtype.is_floating_point:
        h, adj, m = edge_homophily(edge_index, y.cpu())
        out.update(edge_homophily=h, adjusted_homophily=adj, labelled_edges=m)
        for split, mask in _split_masks(data).items():
            if mask.numel() != n:
                continue
            keep = mask[dst]
            hs, adjs, ms = edge_homophily(edge_index[:, keep], y.cpu())
            out[f"{split}_edge_homophily"], out[f"{split}_adjusted_homophily"], out[f"{split}_edges"] = hs, adjs, ms
    return out


def _per_sample_stats(data: Any, batch: torch.Tensor, dst: torch.Tensor) -> dict[str, Any]:
    graphs = int(batch.max()) + 1 if batch.numel() else 0
    nodes_per = torch.bincount(batch, minlength=graphs)
    edges_per = torch.bincount(batch[dst], minlength=graphs)
    out: dict[str, Any] = {"graphs": graphs}
    out.update(_degree_summary(nodes_per, "nodes_per_graph"))
    out.update(_degree_summary(edges_per, "edges_per_graph"))
    k = getattr(data, "k", None)
    if isinstance(k, torch.Tensor) and k.numel() == graphs:
        kk = k.cpu().long()
        counts = torch.bincount(kk)
        out.update(k_mean=float(kk.double().mean()), k_std=float(kk.double().std(unbiased=False)),
                   k_min=int(kk.min()), k_max=int(kk.max()),
                   k_hist={str(v): int(c) for v, c in enumerate(counts.tolist()) if c})
    return out


def format_stats(stats: dict[str, Any]) -> str:
    """A readable multi-line summary of :func:`graph_stats`."""
    def num(v: Any) -> str:
        if v is None:
            return "-"
        return f"{v:.4f}" if isinstance(v, float) else str(v)

    lines = [f"nodes {stats['nodes']}  edges {stats['edges']}  "
             f"{'symmetric' if stats['symmetric'] else 'directed'}  self-loops {stats['self_loops']}",
             f"in-degree min {stats['degree_min']}  mean {stats['degree_mean']:.2f}  median "
             f"{stats['degree_median']:.1f}  max {stats['degree_max']}"]
    if "out_degree_mean" in stats:
        lines.append(f"out-degree min {stats['out_degree_min']}  mean {stats['out_degree_mean']:.2f}  median "
                     f"{stats['out_degree_median']:.1f}  max {stats['out_degree_max']}")
    lines.append(f"isolated nodes {stats['isolated_nodes']}  components {stats['components']}  "
                 f"largest component {100 * stats['largest_component_share']:.1f} %")
    if "graphs" in stats:
        lines.append(f"graphs {stats['graphs']}  nodes per graph {stats['nodes_per_graph_mean']:.1f}  "
                     f"edges per graph {stats['edges_per_graph_mean']:.1f} "
                     f"(min {stats['edges_per_graph_min']}, max {stats['edges_per_graph_max']})")
        if "k_mean" in stats:
            hist = "  ".join(f"{k}: {c}" for k, c in stats["k_hist"].items())
            lines.append(f"k per graph mean {stats['k_mean']:.2f}  std {stats['k_std']:.2f}  histogram {hist}")
    if "edge_homophily" in stats:
        lines.append(f"edge homophily {num(stats['edge_homophily'])}  adjusted {num(stats['adjusted_homophily'])}")
        for split in SPLITS:
            if f"{split}_edge_homophily" in stats:
                lines.append(f"  {split:<5} edge homophily {num(stats[f'{split}_edge_homophily'])}  adjusted "
                             f"{num(stats[f'{split}_adjusted_homophily'])}  ({stats[f'{split}_edges']} edges)")
    return "\n".join(lines)
