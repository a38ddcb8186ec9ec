"""graphforge.neighbors.KNNIndex: exact kNN and range search against float64 brute force."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from graphforge.neighbors import KNNIndex, SearchStats, knn_recall, pair_distances


@pytest.fixture(scope="module")
def points() -> torch.Tensor:
    """Coarsely rounded points (many exact ties), a zero row and a duplicated row."""
    g = torch.Generator().manual_seed(0)
    x = torch.round(torch.randn(90, 6, generator=g) * 3) / 3
    x[5] = 0
    x[9] = x[2]
    return x


def _scores(x: torch.Tensor, metric: str) -> torch.Tensor:
    n = len(x)
    return pair_distances(x.repeat_interleave(n, 0), x.repeat(n, 1), metric).view(n, n)


def test_knn_recall_helper():
    exact = torch.tensor([[1, 2, 3], [4, 5, 6]])
    assert knn_recall(exact, exact) == 1.0
    assert knn_recall(torch.tensor([[1, 2, 9], [-1, 5, 6]]), exact) == pytest.approx(4 / 6)


def test_range_search_matches_brute_force_in_blocks(points):
    s = _scores(points, "cityblock")
    index = KNNIndex(points, "cityblock", backend="torch")
    qi, ri, d = index.range_search(points, 3.0, batch_size=7)
    assert set(zip(qi.tolist(), ri.tolist())) == set(map(tuple, torch.nonzero(s <= 3.0).tolist()))
    assert torch.all(d <= 3.0)


@pytest.mark.parametrize("metric", ["euclidean", "sqeuclidean", "cityblock", "linf"])
@pytest.mark.parametrize("backend", ["faiss", "torch"])
def test_far_from_the_origin_stays_exact_without_fallbacks(metric, backend):
    """Translation-invariant metrics search centred data: an offset of 1000 (or one far
    outlier) neither breaks exactness nor sends the queries to the float64 fallback."""
    g = torch.Generator().manual_seed(4)
    smooth = torch.randn(400, 8, generator=g) * 4 + 1000.0  # no ties: the certificate should pass
    stats = SearchStats()
    KNNIndex(smooth, metric, backend=backend).search(smooth, 5, stats=stats)
    assert stats.fallback_queries <= 4, stats.fallback_queries
    x = torch.round(smooth * 4) / 4  # many exact ties: still exact
    n = len(x)
    d = pair_distances(x.repeat_interleave(n, 0), x.repeat(n, 1), metric).view(n, n)
    order = np.lexsort((np.tile(np.arange(n), (n, 1)), d.numpy()), axis=1)[:, :5]
    _, idx = KNNIndex(x, metric, backend=backend).search(x, 5)
    assert np.array_equal(idx.numpy(), order)
    qi, ri, _ = KNNIndex(x, metric, backend=backend).range_search(x, float(d.flatten().kthvalue(4000).values))
    assert set(zip(qi.tolist(), ri.tolist())) == set(map(tuple, torch.nonzero(d <= d.flatten().kthvalue(4000).values).tolist()))


@pytest.mark.parametrize("scale", [1e19, 1e30, 1e-25])
@pytest.mark.parametrize("metric", ["euclidean", "sqeuclidean", "ip", "cityblock", "linf", "cosine"])
def test_huge_and_tiny_magnitudes_stay_exact_without_fallbacks(metric, scale):
    """fp32 squares of 1e19 overflow and of 1e-25 underflow: such data is searched at a
    power-of-two scale, so every distance is finite and exact and no query falls back."""
    g = torch.Generator().manual_seed(1)
    x = (torch.randn(400, 6, generator=g, dtype=torch.float64) * scale).float()
    stats = SearchStats()
    dist, idx = KNNIndex(x, metric).search(x, 4, stats=stats)
    d = _scores(x, metric)
    order = np.lexsort((np.tile(np.arange(len(x)), (len(x), 1)), d.numpy()), axis=1)[:, :4]
    assert np.array_equal(idx.numpy(), order)
    assert torch.isfinite(dist).all() and stats.fallback_queries == 0
    radius = float(d.flatten().kthvalue(3000).values)
    qi, ri, _ = KNNIndex(x, metric).range_search(x, radius)
    assert set(zip(qi.tolist(), ri.tolist())) == set(map(tuple, torch.nonzero(d <= radius).tolist()))
