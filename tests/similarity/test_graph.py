"""Similarity graphs: exact edge sets against a float64 brute force, options, warnings, errors."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from graphforge.errors import ConfigError, DataError
from graphforge.neighbors import pair_distances
from graphforge.similarity import GRAPH_METRICS, similarity_graph
from graphforge.similarity.graph import SIMILARITY_METRICS

N = 90


@pytest.fixture(scope="module")
def points() -> torch.Tensor:
    """Coarsely rounded points (many exact ties), a zero row and a duplicated row."""
    g = torch.Generator().manual_seed(0)
    x = torch.round(torch.randn(N, 6, generator=g) * 3) / 3
    x[5] = 0
    x[9] = x[2]
    return x


def _scores(x: torch.Tensor, metric: str) -> torch.Tensor:
    """Brute-force float64 user-facing scores ``S[i, j]`` of every pair."""
    n = len(x)
    d = pair_distances(x.repeat_interleave(n, 0), x.repeat(n, 1), metric).view(n, n)
    return 1 - d if metric == "cosine" else (-d if metric == "ip" else d)


def _edges(graph) -> set[tuple[int, int]]:
    return set(map(tuple, graph.edge_index.t().tolist()))


def _knn_reference(x: torch.Tensor, metric: str, k: int) -> set[tuple[int, int]]:
    """Directed edges neighbour -> node, nearest first, ties by the lower index."""
    s = _scores(x, metric)
    d = -s if metric in SIMILARITY_METRICS else s.clone()
    d.fill_diagonal_(float("inf"))
    order = np.lexsort((np.tile(np.arange(len(x)), (len(x), 1)), d.numpy()), axis=1)[:, :k]
    return {(int(j), i) for i in range(len(x)) for j in order[i]}


@pytest.mark.parametrize("metric", GRAPH_METRICS)
@pytest.mark.parametrize("backend", ["faiss", "torch"])
def test_threshold_edges_equal_brute_force(points, metric, backend):
    s = _scores(points, metric)
    for quantile in (0.05, 0.3):
        flat = s[~torch.eye(N, dtype=torch.bool)]
        t = float(torch.quantile(flat, 1 - quantile if metric in SIMILARITY_METRICS else quantile))
        passes = (s >= t) if metric in SIMILARITY_METRICS else (s <= t)
        passes.fill_diagonal_(False)
        graph = similarity_graph(points, metric=metric, mode="threshold", threshold=t, backend=backend, index="flat")
        assert _edges(graph) == set(map(tuple, torch.nonzero(passes).tolist()))
        # every edge carries its exact score
        src, dst = graph.edge_index
        assert torch.allclose(graph.score, s[dst, src], rtol=0, atol=1e-12)


@pytest.mark.parametrize("metric", GRAPH_METRICS)
@pytest.mark.parametrize("backend", ["faiss", "torch"])
def test_knn_and_mutual_edges_equal_brute_force(points, metric, backend):
    k = 5
    directed = _knn_reference(points, metric, k)
    expected = {
        ("knn", True): directed | {(b, a) for a, b in directed},
        ("knn", False): directed,
        ("mutual", True): {e for e in directed if (e[1], e[0]) in directed},
    }
    for (mode, symmetric), edges in expected.items():
        graph = similarity_graph(points, metric=metric, mode=mode, k=k, symmetric=symmetric, backend=backend)
        assert _edges(graph) == edges, (mode, symmetric)


def test_edge_index_sorted_unique_and_stats(points):
    graph = similarity_graph(points, metric="euclidean", k=4)
    src, dst = graph.edge_index
    key = dst * N + src
    assert torch.all(key[1:] > key[:-1])  # sorted by target, then source; no duplicates
    assert graph.edge_index.dtype == torch.long
    degree = torch.bincount(dst, minlength=N)
    assert graph.stats["edges"] == graph.edge_index.shape[1]
    assert graph.stats["mean_degree"] == pytest.approx(float(degree.double().mean()))
    assert graph.stats["isolated_nodes"] == 0
    assert graph.stats["index"] == "flat"


def test_self_loops_and_weights(points):
    base = similarity_graph(points, metric="cosine", k=3)
    looped = similarity_graph(points, metric="cosine", k=3, self_loops=True)
    loops = looped.edge_index[0] == looped.edge_index[1]
    assert int(loops.sum()) == N and (base.edge_index[0] != base.edge_index[1]).all()
    assert looped.stats["edges"] == base.stats["edges"] + N
    assert torch.equal(base.weight, base.score.float())  # cosine: the similarity itself
    dist = similarity_graph(points, metric="euclidean", k=3)
    assert torch.allclose(dist.weight, (1 / (1 + dist.score)).float())
    gauss = similarity_graph(points, metric="euclidean", k=3, weight="gaussian")
    assert ((gauss.weight > 0) & (gauss.weight <= 1)).all()
    assert similarity_graph(points, metric="euclidean", k=3, weight="none").weight is None


def test_no_edges_warns_and_all_edges_work(points, caplog):
    with caplog.at_level(logging.WARNING, logger="graphforge"):
        empty = similarity_graph(points, metric="cosine", mode="threshold", threshold=1.5)
    assert empty.stats["edges"] == 0 and empty.stats["isolated_nodes"] == N
    assert "gives no edges" in caplog.text and "lower the threshold" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="graphforge"):
        full = similarity_graph(points, metric="euclidean", mode="threshold", threshold=1e6)
    assert full.stats["edges"] == N * (N - 1)
    assert "complete" in caplog.text


@pytest.mark.parametrize("index", ["ivf", "hnsw"])
def test_approximate_index_reports_recall(index):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3000, 16, generator=g)
    graph = similarity_graph(x, metric="euclidean", k=8, index=index, recall_sample=300)
    assert graph.stats["index"] == index
    assert 0.85 <= graph.stats["recall"] <= 1.0
    exact = similarity_graph(x, metric="euclidean", k=8, index="flat")
    overlap = len(_edges(graph) & _edges(exact)) / len(_edges(exact))
    assert overlap > 0.85


def test_approximate_threshold_search():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2000, 8, generator=g)
    exact = similarity_graph(x, metric="cosine", mode="threshold", threshold=0.9, index="flat")
    approx = similarity_graph(x, metric="cosine", mode="threshold", threshold=0.9, index="ivf", nlist=16, nprobe=4)
    assert _edges(approx) <= _edges(exact)  # found pairs are re-scored exactly: no false edges
    assert 0.5 < approx.stats["recall"] <= 1.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"metric": "hamming"}, "unknown metric"),
        ({"metric": "sqeuclidean"}, "not supported by similarity graphs"),
        ({"mode": "radius"}, "unknown mode"),
        ({"mode": "threshold"}, "needs a threshold"),
        ({"mode": "threshold", "threshold": float("nan")}, "finite"),
        ({"k": 0}, "k must be an integer >= 1"),
        ({"k": 90}, "smaller than the number of nodes"),
        ({"weight": "heat"}, "unknown weight"),
        ({"metric": "ip", "weight": "gaussian"}, "needs a distance"),
        ({"index": "lsh"}, "unknown index"),
        ({"index": "ivf", "backend": "torch"}, "FAISS index"),
    ],
)
def test_bad_options(points, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        similarity_graph(points, **kwargs)


def test_bad_embeddings():
    with pytest.raises(DataError, match="NaN"):
        similarity_graph(torch.tensor([[0.0, 1.0], [float("nan"), 1.0], [1.0, 1.0]]))
    with pytest.raises(DataError, match="2-D"):
        similarity_graph(torch.zeros(4, 2, 2))
    with pytest.raises(ConfigError, match="at least 2 nodes"):
        similarity_graph(torch.zeros(1, 3), k=1)


def test_low_recall_warns(caplog):
    x = torch.randn(4000, 32, generator=torch.Generator().manual_seed(3))  # no structure: hard for IVF
    with caplog.at_level(logging.WARNING, logger="graphforge"):
        graph = similarity_graph(x, metric="euclidean", k=10, index="ivf", nlist=64, nprobe=1, recall_sample=200)
    assert graph.stats["recall"] < 0.9
    assert "true neighbours" in caplog.text and "nprobe" in caplog.text
