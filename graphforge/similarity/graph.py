"""Similarity graphs over a whole dataset: one node per row of an embedding matrix.

An edge joins two rows whose score passes a test:

* ``mode="threshold"``: similarity ``>= t`` (``cosine``, ``ip``) or distance ``<= t``
  (``euclidean``, ``chord``, ``cityblock``, ``linf``), found with a range search;
* ``mode="knn"``: each node's ``k`` nearest rows (ties by row index), then made
  symmetric (``symmetric=True``: ``i ~ j`` when either lists the other) or kept
  directed (a message flows from each neighbour to the node that listed it);
* ``mode="mutual"``: ``i ~ j`` only when each is among the other's ``k`` nearest.

The search is :class:`graphforge.neighbors.KNNIndex`: a FAISS flat index (exact:
fp32 candidates re-scored in float64 and certified, so edge sets equal a float64 brute
force), a FAISS GPU index when faiss-gpu and a GPU are present, or an approximate
FAISS ``ivf`` / ``hnsw`` index for large datasets, whose recall against the exact
search is measured on a sample of nodes. Queries are processed in blocks, so memory
grows with the number of edges, never with ``M x M``.

Edges follow PyG's source-to-target convention; ``edge_index`` is sorted by target,
then source, and holds no duplicates. Self-loops are dropped unless
``self_loops=True``, which gives every node exactly one.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from graphforge.checks import check_int
from graphforge.errors import ConfigError
from graphforge.neighbors import (
    INDEX_TYPES,
    IndexParams,
    KNNIndex,
    as_float_matrix,
    get_metric,
    knn_recall,
    resolve_search_device,
)
from graphforge.similarity.options import GRAPH_CHOICE_OPTIONS, GRAPH_METRICS, MODES, WEIGHTS

log = logging.getLogger("graphforge")

#: Metrics whose score is a similarity (higher = closer); the others are distances.
SIMILARITY_METRICS: frozenset[str] = frozenset(m for m in GRAPH_METRICS if get_metric(m).similarity)


def graph_choice_options(options: dict[str, Any]) -> list[str]:
    """The keys of ``options`` (``-o`` style, prefixes allowed) that pick one graph."""
    return [key for key in options if key.split(".")[-1] in GRAPH_CHOICE_OPTIONS]


#: Above this many nodes ``index="auto"`` switches from the exact flat index to IVF.
AUTO_FLAT_LIMIT = 200_000
#: An approximate index whose measured recall is below this gets a warning.
LOW_RECALL = 0.9


def is_similarity(metric: str) -> bool:
    """Whether ``metric``'s score is a similarity (higher = closer) rather than a distance."""
    return get_metric(metric).similarity


def score_from_distance(metric: str, distance: torch.Tensor) -> torch.Tensor:
    """The user-facing score of a :mod:`graphforge.neighbors` distance (see :meth:`Metric.score`).

    ``cosine`` -> cosine similarity ``1 - d``; ``ip`` -> inner product ``-d``; the
    distance metrics -> the distance itself.
    """
    return get_metric(metric).score(distance)


def radius_of_threshold(metric: str, threshold: float) -> float:
    """The :mod:`graphforge.neighbors` radius that keeps scores passing ``threshold``."""
    return get_metric(metric).radius(threshold)


@dataclass
class SimilarityGraph:
    """A built similarity graph.

    Attributes:
        edge_index: int64 ``[2, E]`` (source, target).
        score: float64 ``[E]``: the similarity (``cosine``, ``ip``) or distance of each edge.
        weight: float32 ``[E]`` edge weights, or ``None`` for ``weight="none"``.
        num_nodes: Number of nodes.
        degree: int64 ``[M]`` neighbours of each node (incoming edges, self-loops excluded).
        stats: Edges, mean degree, isolated nodes, seconds, index, recall (approximate
            indexes), ...
    """

    edge_index: torch.Tensor
    score: torch.Tensor
    weight: torch.Tensor | None
    num_nodes: int
    degree: torch.Tensor
    stats: dict[str, Any] = field(default_factory=dict)


def check_degree(degree: Any) -> float:
    """Validate a target mean degree (the ``degree`` of a threshold graph); return it as a float.

    Raises:
        ConfigError: If it is not a finite number > 0.
    """
    if isinstance(degree, bool) or not isinstance(degree, (int, float)) or not math.isfinite(degree) or degree <= 0:
        raise ConfigError(f"degree must be a number > 0, got {degree!r}")
    return float(degree)


def check_graph_options(metric: str, mode: str, k: Any, threshold: Any, weight: str, index: str,
                        degree: Any = None) -> str:
    """Validate similarity-graph options; return the canonical metric.

    With ``mode="threshold"`` a ``degree`` (checked by :func:`check_degree`) may stand for the
    threshold, which is then only known once the embeddings are.

    Raises:
        ConfigError: Naming the bad option.
    """
    found = get_metric(metric, GRAPH_METRICS, user="similarity graphs")
    name = found.name
    if mode not in MODES:
        raise ConfigError(f"unknown mode {mode!r}; choose one of: {', '.join(MODES)}")
    if mode == "threshold":
        if threshold is None and degree is None:
            raise ConfigError("mode=threshold needs a threshold (e.g. -o threshold=0.8)")
        if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, (int, float))
                                      or not math.isfinite(threshold)):
            raise ConfigError(f"threshold must be a finite number, got {threshold!r}")
    else:
        check_int(k, "k", minimum=1)
    if weight not in WEIGHTS:
        raise ConfigError(f"unknown weight {weight!r}; choose one of: {', '.join(WEIGHTS)}")
    if weight == "gaussian" and not found.nonnegative:
        raise ConfigError("weight=gaussian needs a distance; the ip metric has none (use similarity)")
    if index not in ("auto", *INDEX_TYPES):
        raise ConfigError(f"unknown index {index!r}; choose one of: auto, {', '.join(INDEX_TYPES)}")
    return name


def _coalesce(src: torch.Tensor, dst: torch.Tensor, score: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sort edges by (target, source), dropping duplicates; return ``edge_index`` and scores."""
    key = dst * n + src
    key, order = torch.sort(key, stable=True)
    score = score[order]
    if len(key) > 1:
        keep = torch.ones(len(key), dtype=torch.bool)
        keep[1:] = key[1:] != key[:-1]
        key, score = key[keep], score[keep]
    return torch.stack([key % n, key // n]), score


def _edge_weights(metric: str, score: torch.Tensor, dist: torch.Tensor, weight: str) -> torch.Tensor | None:
    if weight == "none":
        return None
    if weight == "similarity":
        w = score if get_metric(metric).similarity else 1.0 / (1.0 + score)
        return w.float()
    # gaussian: exp(-d^2 / (2 sigma^2)) with sigma the median edge distance
    d = dist
    positive = d[d > 0]
    sigma = float(positive.median()) if len(positive) else 1.0
    return torch.exp(-(d * d) / (2 * sigma * sigma)).float()


def _resolve_index(index: str | IndexParams, n: int, nlist: int | None, nprobe: int | None, seed: int) -> IndexParams:
    if isinstance(index, IndexParams):
        return index
    kind = index
    if kind == "auto":
        kind = "flat" if n <= AUTO_FLAT_LIMIT else "ivf"
    return IndexParams(index=kind, nlist=nlist, nprobe=nprobe, seed=seed)


def _resolve_backend(backend: str, metric: str, params: IndexParams, device: torch.device) -> str:
    if backend != "auto":
        return backend
    # FAISS's CPU flat L-inf search measured ~3x slower than torch.cdist(p=inf) here;
    # every other metric uses FAISS.
    if get_metric(metric).family == "linf" and params.index == "flat" and device.type == "cpu":
        return "torch"
    return "faiss"


def similarity_graph(
    x: Any,
    *,
    metric: str = "cosine",
    mode: str = "knn",
    k: int = 10,
    threshold: float | None = None,
    symmetric: bool = True,
    self_loops: bool = False,
    weight: str = "similarity",
    index: str | IndexParams = "auto",
    nlist: int | None = None,
    nprobe: int | None = None,
    backend: str = "auto",
    device: str | torch.device = "cpu",
    batch_size: int | None = None,
    recall_sample: int = 1000,
    seed: int = 0,
) -> SimilarityGraph:
    """Build the similarity graph of the rows of ``x``.

    Args:
        x (array ``[M, D]``): Embeddings, one row per node (numpy array or tensor).
        metric (str, optional): ``cosine``, ``euclidean``, ``cityblock`` (``l1``), ``chord``,
            ``linf`` (max-norm) or ``ip`` (inner product). (default: ``"cosine"``)
        mode (str, optional): ``threshold``, ``knn`` or ``mutual``. (default: ``"knn"``)
        k (int, optional): Neighbours per node for ``knn`` / ``mutual``. (default: ``10``)
        threshold (float, optional): For ``mode="threshold"``: the smallest similarity
            (``cosine``, ``ip``) or largest distance (the others) that makes an edge.
        symmetric (bool, optional): ``knn`` only: add the reverse of every edge. (default: ``True``)
        self_loops (bool, optional): Give every node one self-loop. (default: ``False``)
        weight (str, optional): Edge weights: ``similarity`` (the cosine or inner
            product itself; ``1 / (1 + d)`` for distances), ``gaussian``
            (``exp(-d^2 / 2 sigma^2)``, sigma = the median edge distance) or ``none``.
            (default: ``"similarity"``)
        index (str or IndexParams, optional): ``flat`` (exact), ``ivf``, ``hnsw``
            (approximate) or ``auto`` (flat up to 200,000 nodes, else ivf). (default: ``"auto"``)
        nlist, nprobe (int, optional): IVF lists and lists probed per query.
        backend (str, optional): ``faiss``, ``torch`` (flat only) or ``auto`` (FAISS,
            except torch for ``linf`` on the CPU, which measured ~3x faster). (default: ``"auto"``)
        device (str, optional): ``cpu``, ``cuda`` or ``auto``; FAISS uses a GPU index
            when faiss-gpu is installed. (default: ``"cpu"``)
        batch_size (int, optional): Queries per block. (default: automatic, memory-bounded)
        recall_sample (int, optional): Nodes on which an approximate index's recall is
            measured against the exact search (0: skip). (default: ``1000``)
        seed (int, optional): Seed of the IVF training sample and the recall sample.

    Returns:
        The :class:`SimilarityGraph`.

    Raises:
        ConfigError: For a bad option (unknown metric or mode, k < 1, k >= M, ...).
        DataError: If ``x`` is not 2-D or holds NaN / infinite values.
    """
    name = check_graph_options(metric, mode, k, threshold, weight, index if isinstance(index, str) else index.index)
    check_int(recall_sample, "recall_sample", minimum=0)
    start = time.perf_counter()
    emb = as_float_matrix(x, "embeddings")
    n = len(emb)
    if n < 2:
        raise ConfigError(f"a similarity graph needs at least 2 nodes, got {n}")
    if mode != "threshold" and k >= n:
        raise ConfigError(f"k={k} must be smaller than the number of nodes ({n})")
    dev = resolve_search_device(device)
    params = _resolve_index(index, n, nlist, nprobe, seed)
    knn = KNNIndex(emb, name, device=dev, backend=_resolve_backend(backend, name, params, dev), index=params)
    stats: dict[str, Any] = {"metric": name, "mode": mode, "index": params.index, "backend": knn.backend, "nodes": n}
    if mode == "threshold":
        assert threshold is not None
        src, dst, dist = _threshold_edges(knn, emb, name, float(threshold), batch_size)
        stats["threshold"] = float(threshold)
    else:
        src, dst, dist = _knn_edges(knn, emb, int(k), mode, symmetric, batch_size)
        stats["k"] = int(k)
    if self_loops:
        loops = torch.arange(n)
        self_d = knn_self_distances(emb, name)
        src, dst, dist = torch.cat([src, loops]), torch.cat([dst, loops]), torch.cat([dist, self_d])
    edge_index, dist = _coalesce(src, dst, dist, n)
    score = score_from_distance(name, dist)
    w = _edge_weights(name, score, dist, weight)
    search_seconds = time.perf_counter() - start
    if not knn.exact and recall_sample:
        stats["recall"] = _measure_recall(knn, emb, name, mode, k, threshold, recall_sample, seed)
        stats["recall_sample"] = min(recall_sample, n)
        if stats["recall"] < LOW_RECALL:
            hint = "raise nprobe (-o nprobe=...)" if params.index == "ivf" else "try index=ivf with a high nprobe"
            log.warning("similarity graph: the %s index found only %.1f %% of the true neighbours on %d sampled "
                        "nodes; %s, or use index=flat (exact)", params.index, 100 * stats["recall"],
                        stats["recall_sample"], hint)
    not_loop = edge_index[0] != edge_index[1]
    degree = torch.bincount(edge_index[1][not_loop], minlength=n)
    stats.update(
        edges=int(edge_index.shape[1]),
        mean_degree=float(degree.double().mean()),
        max_degree=int(degree.max()),
        isolated_nodes=int((degree == 0).sum()),
        seconds=search_seconds,
    )
    if stats["edges"] - (n if self_loops else 0) == 0:
        _warn_no_edges(knn, emb, name, threshold, seed)
    elif mode == "threshold" and stats["edges"] == n * (n - 1) + (n if self_loops else 0):
        log.warning("similarity graph: every pair of the %d nodes passes the threshold %s; the graph is "
                    "complete (%d edges)", n, threshold, stats["edges"])
    log.info("similarity graph: %d nodes, %d edges (mean degree %.2f, %d isolated) with %s %s via %s %s in %.2f s",
             n, stats["edges"], stats["mean_degree"], stats["isolated_nodes"], name, mode, knn.backend,
             params.index, search_seconds)
    return SimilarityGraph(edge_index, score, w, n, degree, stats)


def knn_self_distances(emb: torch.Tensor, metric: str) -> torch.Tensor:
    """Each row's distance to itself (0, except ``ip``: ``-|x|^2``; ``cosine`` of a zero row: 1)."""
    from graphforge.neighbors import pair_distances

    return pair_distances(emb, emb, metric)


def _threshold_edges(knn: KNNIndex, emb: torch.Tensor, metric: str, threshold: float,
                     batch_size: int | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    radius = radius_of_threshold(metric, threshold)
    if radius < 0 and get_metric(metric).nonnegative:
        log.warning("similarity graph: threshold %s can never be met by %s", threshold, metric)
    qi, ri, d = knn.range_search(emb, radius, batch_size=batch_size)
    keep = qi != ri
    # Row ri is within the threshold of query qi: a message flows from ri to qi.
    return ri[keep], qi[keep], d[keep]


def _knn_lists(knn: KNNIndex, emb: torch.Tensor, k: int, batch_size: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Each node's ``k`` nearest other nodes: distances and indices ``[M, k]`` (-1 where missing)."""
    n = len(emb)
    d, i = knn.search(emb, min(k + 1, n), batch_size=batch_size)
    own = i == torch.arange(n).unsqueeze(1)
    # Drop the node itself; where a duplicate row took its place, drop the last instead.
    drop = own.clone()
    drop[:, -1] |= ~own.any(1)
    return d[~drop].view(n, -1)[:, :k], i[~drop].view(n, -1)[:, :k]


def _knn_edges(knn: KNNIndex, emb: torch.Tensor, k: int, mode: str, symmetric: bool,
               batch_size: int | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    n = len(emb)
    d, i = _knn_lists(knn, emb, k, batch_size)
    dst = torch.arange(n).repeat_interleave(i.shape[1])
    src, dist = i.reshape(-1), d.reshape(-1)
    found = src >= 0
    src, dst, dist = src[found], dst[found], dist[found]
    if mode == "mutual":
        keys = dst * n + src
        sorted_keys = torch.sort(keys).values
        reverse = src * n + dst
        pos = torch.searchsorted(sorted_keys, reverse).clamp_max(len(sorted_keys) - 1)
        keep = sorted_keys[pos] == reverse
        return src[keep], dst[keep], dist[keep]
    if symmetric:
        return torch.cat([src, dst]), torch.cat([dst, src]), torch.cat([dist, dist])
    return src, dst, dist


def _measure_recall(knn: KNNIndex, emb: torch.Tensor, metric: str, mode: str, k: int,
                    threshold: float | None, sample: int, seed: int) -> float:
    """Recall of the approximate index against an exact flat search on ``sample`` nodes."""
    n = len(emb)
    rows = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[: min(sample, n)]
    exact = KNNIndex(emb, metric, device=knn.device, backend="torch" if knn.device.type == "cpu" else "auto")
    if mode == "threshold":
        assert threshold is not None
        radius = radius_of_threshold(metric, threshold)
        qa, _, _ = knn.range_search(emb[rows], radius)
        qe, _, _ = exact.range_search(emb[rows], radius)
        return float(len(qa) / len(qe)) if len(qe) else 1.0
    kk = min(k + 1, n)
    return knn_recall(knn.search(emb[rows], kk)[1], exact.search(emb[rows], kk)[1])


def _warn_no_edges(knn: KNNIndex, emb: torch.Tensor, metric: str, threshold: float | None, seed: int) -> None:
    """Warn that the graph has no edges, naming the closest sampled pair's score as a guide."""
    n = len(emb)
    rows = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[: min(2000, n)]
    d, i = knn.search(emb[rows], 2)
    other = i != rows.unsqueeze(1)
    nearest = torch.where(other[:, 0], d[:, 0], d[:, 1])  # the nearest row that is not the query
    best = score_from_distance(metric, nearest.min())
    similar = get_metric(metric).similarity
    log.warning(
        "similarity graph: threshold %s gives no edges with %s; the %s between a sampled node and its "
        "nearest neighbour is %.6g, so %s the threshold",
        threshold, metric, "highest similarity" if similar else "smallest distance", float(best),
        "lower" if similar else "raise",
    )
