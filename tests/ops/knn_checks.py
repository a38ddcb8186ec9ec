"""Helpers for the ops tests: an independent float64 brute force and an edge-set checker."""

from __future__ import annotations

import torch
from torch import Tensor

from graphforge.ops.reference import kernel_metric

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def brute_distances(pts: Tensor, metric: str) -> Tensor:
    """All pairwise distances of one set in float64, by plain broadcasting."""
    metric = kernel_metric(metric)  # any name or alias -> l2, l1, linf, ip, cosine
    p = pts.double()
    diff = p[:, None, :] - p[None, :, :]
    if metric == "l2":
        return diff.square().sum(-1).sqrt()
    if metric == "l1":
        return diff.abs().sum(-1)
    if metric == "linf":
        return diff.abs().amax(-1) if p.shape[1] else torch.zeros(p.shape[0], p.shape[0], dtype=torch.float64)
    if metric == "ip":
        return -(p[:, None, :] * p[None, :, :]).sum(-1)
    if metric == "cosine":
        n = p.norm(dim=1)
        cos = (p[:, None, :] * p[None, :, :]).sum(-1) / (n[:, None] * n[None, :])
        cos = torch.where((n[:, None] > 0) & (n[None, :] > 0), cos, torch.zeros_like(cos))
        return 1 - cos
    raise AssertionError(metric)


def check_knn(
    edge_index: Tensor,
    dist: Tensor,
    x: Tensor,
    ptr: list[int],
    k: list[int],
    metric: str,
    loop: bool,
    *,
    tie_rtol: float = 1e-5,
    dist_rtol: float = 1e-5,
    strict: bool = False,
) -> None:
    """Checks a KNN result against a float64 brute force.

    Neighbour sets must match exactly, except at a query whose k-th and (k+1)-th brute
    force distances are within ``tie_rtol`` (relative to the set's distance scale): there
    the returned neighbours only need the right distances. ``strict`` disables that
    allowance (for exactly representable data where ties must go to the lower index).
    """
    edge_index, dist = edge_index.cpu(), dist.cpu()
    x = x.detach().cpu()
    assert edge_index.dtype == torch.long and edge_index.dim() == 2 and edge_index.shape[0] == 2
    assert dist.dtype == x.dtype and dist.shape == (edge_index.shape[1],)
    src, dst = edge_index
    offset = 0
    for b in range(len(ptr) - 1):
        start, n = ptr[b], ptr[b + 1] - ptr[b]
        kb = max(0, min(k[b], n if loop else n - 1))
        count = n * kb
        s = src[offset : offset + count].reshape(n, kb) if kb else torch.zeros(n, 0, dtype=torch.long)
        t = dst[offset : offset + count].reshape(n, kb) if kb else torch.zeros(n, 0, dtype=torch.long)
        dv = dist[offset : offset + count].reshape(n, kb).double() if kb else torch.zeros(n, 0, dtype=torch.float64)
        offset += count
        if kb == 0:
            continue
        assert torch.equal(t, torch.arange(start, start + n)[:, None].expand(n, kb)), "queries not grouped in order"
        local = s - start
        assert bool(((local >= 0) & (local < n)).all()), "neighbour outside its set"
        if not loop:
            assert not bool((local == torch.arange(n)[:, None]).any()), "self-loop returned"
        srt = local.sort(dim=1).values
        assert not bool((srt[:, 1:] == srt[:, :-1]).any()), "duplicate neighbour"
        # Order by (distance as returned, index).
        ok = (dv[:, 1:] > dv[:, :-1]) | ((dv[:, 1:] == dv[:, :-1]) & (local[:, 1:] > local[:, :-1]))
        assert bool(ok.all()), "edges not sorted by (distance, index)"

        d64 = brute_distances(x[start : start + n], metric)
        if not loop:
            d64.fill_diagonal_(float("inf"))
        exp_d, exp_i = torch.sort(d64, dim=1, stable=True)
        got_d = d64.gather(1, local)
        scale = 1.0 + float(d64[torch.isfinite(d64)].abs().max()) if n > 1 else 1.0
        tol = tie_rtol * scale
        torch.testing.assert_close(got_d.sort(dim=1).values, exp_d[:, :kb], rtol=0, atol=tol)
        if strict:
            near_tie = torch.zeros(n, dtype=torch.bool)
        elif kb < exp_d.shape[1] and bool(torch.isfinite(exp_d[:, kb]).any()):
            near_tie = (exp_d[:, kb] - exp_d[:, kb - 1]) <= tol
        else:
            near_tie = torch.zeros(n, dtype=torch.bool)
        same = torch.equal(srt[~near_tie], exp_i[:, :kb].sort(dim=1).values[~near_tie])
        assert same, f"set {b}: neighbour sets differ from the float64 brute force"
        if strict:
            assert torch.equal(local, exp_i[:, :kb]), f"set {b}: ties not broken by index"
        torch.testing.assert_close(dv, got_d, rtol=dist_rtol, atol=dist_rtol * scale)
    assert offset == edge_index.shape[1], "more edges than expected"
