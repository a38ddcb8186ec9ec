"""Pure-PyTorch reference of :func:`graphforge.ops.batched_knn`.

Clear rather than fast: a loop over the point sets, queries in chunks so memory stays
bounded, distances by direct differences, neighbours chosen with a stable sort (ties go
to the lower index). The package uses it when the native extension is missing, and the
tests use it (and an independent float64 brute force) to check the kernels.
"""

from __future__ import annotations

import torch
from torch import Tensor

#: The kernels' own names of their metrics (the op schema's ``metric`` argument). Users pass
#: any name or alias of :mod:`graphforge.neighbors.metrics`; :func:`kernel_metric` maps it.
KERNEL_METRICS: tuple[str, ...] = ("l2", "cosine", "l1", "linf", "ip")


def kernel_metric(metric: str) -> str:
    """The kernels' name (``l2``, ``cosine``, ``l1``, ``linf``, ``ip``) of any metric name or alias.

    Raises:
        ConfigError: For an unknown metric, or one the op has no kernel for (``chord``).
    """
    if metric in KERNEL_METRICS:
        return metric
    from graphforge.neighbors.metrics import get_metric

    return get_metric(metric).op()

# Distance-matrix entries per query chunk (4M floats = 16 MiB).
_CHUNK_ELEMENTS = 1 << 22


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """fp64 stays fp64; everything else is computed in fp32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _normalize(x: Tensor) -> Tensor:
    norm = x.norm(dim=-1, keepdim=True)
    return torch.where(norm > 0, x / norm.clamp_min(torch.finfo(x.dtype).tiny), torch.zeros_like(x))


def distance_matrix(q: Tensor, c: Tensor, metric: str) -> Tensor:
    """Distances between every row of ``q`` and every row of ``c`` (``[Q, C]``)."""
    if metric == "l2":
        return torch.cdist(q, c, p=2.0, compute_mode="donot_use_mm_for_euclid_dist")
    if metric == "l1":
        return torch.cdist(q, c, p=1.0)
    if metric == "linf":
        return torch.cdist(q, c, p=float("inf"))
    if metric == "ip":
        return -(q @ c.T)
    if metric == "cosine":
        return (1 - _normalize(q) @ _normalize(c).T).clamp_min(0)
    raise ValueError(f"unknown metric {metric!r}")


def pair_distance(x: Tensor, src: Tensor, dst: Tensor, metric: str) -> Tensor:
    """Distance between ``x[src[e]]`` and ``x[dst[e]]`` for every edge ``e`` (``[E]``)."""
    a, b = x[dst], x[src]
    if metric == "l2":
        return (a - b).square().sum(-1).sqrt()
    if metric == "l1":
        return (a - b).abs().sum(-1)
    if metric == "linf":
        return (a - b).abs().amax(-1) if a.shape[-1] > 0 else a.new_zeros(a.shape[0])
    if metric == "ip":
        return -(a * b).sum(-1)
    if metric == "cosine":
        return (1 - (_normalize(a) * _normalize(b)).sum(-1)).clamp_min(0)
    raise ValueError(f"unknown metric {metric!r}")


def batched_knn_reference(
    x: Tensor, ptr: Tensor, k: Tensor, metric: str = "l2", loop: bool = False
) -> tuple[Tensor, Tensor]:
    """Reference batched KNN with the exact semantics of the native op.

    Args:
        x (Tensor): points ``[N, D]``.
        ptr (Tensor): CSR offsets ``[B + 1]`` of the point sets (validated by the caller).
        k (Tensor): neighbours per set ``[B]`` (non-negative).
        metric (str, optional): Any metric the op supports, by name or alias
            (``euclidean``/``l2``, ``cosine``, ``cityblock``/``l1``, ``linf``, ``ip``).
            (default: ``"l2"``)
        loop (bool, optional): whether a point may be its own neighbour. (default: ``False``)

    Returns:
        (Tensor, Tensor): ``edge_index [2, E]`` (row 0 neighbour, row 1 query), grouped by
        query and sorted by (distance, neighbour index), and ``dist [E]`` in ``x.dtype``.
    """
    metric = kernel_metric(metric)
    acc = accumulation_dtype(x.dtype)
    with torch.no_grad():
        xa = x.detach().to(acc)
        ptr_l = ptr.tolist()
        k_l = k.tolist()
        srcs: list[Tensor] = []
        dsts: list[Tensor] = []
        for b in range(len(ptr_l) - 1):
            start, n = ptr_l[b], ptr_l[b + 1] - ptr_l[b]
            kb = max(0, min(int(k_l[b]), n if loop else n - 1))
            if kb == 0:
                continue
            pts = xa[start : start + n]
            chunk = max(1, _CHUNK_ELEMENTS // n)
            for q0 in range(0, n, chunk):
                q1 = min(n, q0 + chunk)
                d = distance_matrix(pts[q0:q1], pts, metric)
                if not loop:
                    rows = torch.arange(q1 - q0, device=x.device)
                    d[rows, rows + q0] = float("inf")
                idx = torch.sort(d, dim=1, stable=True).indices[:, :kb]
                srcs.append((idx + start).reshape(-1))
                dsts.append(torch.arange(start + q0, start + q1, device=x.device).repeat_interleave(kb))
        if not srcs:
            return torch.empty(2, 0, dtype=torch.long, device=x.device), x.new_empty(0)
        src, dst = torch.cat(srcs), torch.cat(dsts)
        dist = pair_distance(xa, src, dst, metric).to(x.dtype)
        # Final order by (query, distance as returned, neighbour index).
        key = dist.to(acc)
        order = torch.sort(src, stable=True).indices
        order = order[torch.sort(key[order], stable=True).indices]
        order = order[torch.sort(dst[order], stable=True).indices]
        return torch.stack([src[order], dst[order]]), dist[order]
