"""``similarity``: one graph over the whole dataset, joining samples with similar embeddings.

Every sample (train, val and test) becomes a node; its embedding comes from the
dataset itself (``embeddings`` tables, vectors) or from an embedder plugin
(``-o embedder=pixels``, ``-o embedder=resnet18 -o 'embedder_options={weights: r18.pth}'``;
images default to ``pixels``), cached on disk by content hash. Edges come from
:func:`graphforge.similarity.similarity_graph`: a threshold on the similarity or
distance, the k nearest neighbours, or mutual k nearest neighbours, with FAISS.

The graph is a PyG ``Data`` with ``x`` (the embeddings, standardised with the
training nodes' mean and deviation unless ``features=raw``), ``edge_index``,
``edge_weight`` (see ``weight``), ``edge_score`` (the similarity or distance of each
edge), ``y`` and ``train_mask`` / ``val_mask`` / ``test_mask`` from the dataset's split
(the ``embeddings`` dataset splits 80/10/10, stratified and seeded, by default).
GNNs (``sage``, ``gcn``, ``gat``, ``gin``) then classify the nodes transductively;
``mlp`` classifies them from ``x`` alone and ``label_prop`` spreads the training
labels over the edges: the baselines on the same embeddings and split.

    graphforge run --dataset embeddings --data-root emb.csv --converter similarity \\
        --model gcn --metric cosine --threshold 0.8
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from graphforge.checks import check_device, check_int
from graphforge.core.converter import Converter
from graphforge.core.data import DataSplits, InputSpec
from graphforge.core.embedder import Embedder
from graphforge.errors import ConfigError, DataError
from graphforge.neighbors import BACKENDS, as_float_matrix
from graphforge.similarity.graph import (
    SimilarityGraph,
    check_degree,
    check_graph_options,
    similarity_graph,
)

log = logging.getLogger("graphforge")

FEATURES = ("standard", "raw")
#: Graphs kept in memory (with their threshold), keyed by the embeddings' content and the
#: graph options, so a sweep that trains several models on one graph builds it once.
_MEMO: OrderedDict[tuple[Any, ...], tuple[SimilarityGraph, float | None]] = OrderedDict()
_MEMO_SIZE = 4


def _digest(x: torch.Tensor) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(str((tuple(x.shape), str(x.dtype))).encode())
    h.update(np.ascontiguousarray(x.numpy()).view(np.uint8).data)
    return h.hexdigest()


#: Neighbours per node of a ``knn`` / ``mutual`` graph when no ``k`` is given.
DEFAULT_K = 10


def _graph_mode(mode: str | None, threshold: float | None, degree: float | None) -> str:
    """The mode a graph is built in: ``mode`` when given, else ``threshold`` when a threshold or
    a degree is given, else ``knn``."""
    if mode is not None:
        return mode
    return "threshold" if threshold is not None or degree is not None else "knn"


class Similarity(Converter):
    """Dataset graph of samples joined by embedding similarity.

    Args:
        metric (str, optional): ``cosine``, ``euclidean``, ``cityblock`` (``l1``), ``chord``,
            ``linf`` (max-norm) or ``ip`` (inner product). (default: ``"cosine"``)
        mode (str, optional): ``threshold``, ``knn`` or ``mutual``; by default
            ``threshold`` when a threshold or a degree is given, else ``knn``. (default: ``None``)
        k (int, optional): Neighbours per node for ``knn`` / ``mutual``; refused with a
            threshold graph, which has no k. (default: ``10`` for ``knn`` / ``mutual``)
        threshold (float, optional): Smallest similarity (``cosine``, ``ip``) or largest
            distance (the others) that makes an edge. (default: ``None``)
        degree (float, optional): Instead of a threshold, the mean degree the threshold graph
            should have: the threshold is set from the embeddings' pair scores (every pair of
            nodes, or 200,000 pairs drawn with a fixed seed when there are more; the estimate
            of ``graphforge scores --target-degree``), and the value used is reported as
            ``graph_threshold``. Needs no labels, so it leaks nothing. (default: ``None``)
        symmetric (bool, optional): ``knn``: add the reverse of every edge. (default: ``True``)
        self_loops (bool, optional): One self-loop per node. (default: ``False``)
        weight (str, optional): ``similarity``, ``gaussian`` or ``none`` (see
            :func:`graphforge.similarity.similarity_graph`). (default: ``"similarity"``)
        index (str, optional): ``auto``, ``flat`` (exact), ``ivf`` or ``hnsw``. (default: ``"auto"``)
        nlist (int, optional): IVF lists. (default: ``4 * sqrt(M)``)
        nprobe (int, optional): IVF lists probed per query. (default: ``32``)
        backend (str, optional): ``auto``, ``faiss`` or ``torch``. (default: ``"auto"``)
        device (str, optional): Where to embed and search: ``auto``, ``cpu``, ``cuda``. (default: ``"auto"``)
        embedder (str, optional): Embedder plugin (``graphforge list embedders``); images
            default to ``pixels``, vectors are used as they are. (default: ``None``)
        embedder_options (dict, optional): Options of the embedder, e.g. ``{weights: r18.pth}``.
        embed_batch_size (int, optional): Samples per embedder forward pass. (default: ``256``)
        cache (bool, optional): Cache embeddings on disk by content hash. (default: ``True``)
        cache_dir (str, optional): Cache folder. (default: ``$GRAPHFORGE_CACHE/embeddings``)
        features (str, optional): Node features: ``standard`` (standardised with the
            training nodes' statistics) or ``raw``. (default: ``"standard"``)
    """

    name = "similarity"
    level = "dataset"
    inputs = frozenset({"images", "vectors"})

    @classmethod
    def upgrade_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        """Options pinned by a checkpoint of an earlier version, as this one reads them: those
        versions recorded ``k=10`` for threshold graphs too, where k was never used."""
        if _graph_mode(options.get("mode"), options.get("threshold"), options.get("degree")) == "threshold":
            options.pop("k", None)
        return options

    def __init__(
        self,
        metric: str = "cosine",
        mode: str | None = None,
        k: int | None = None,
        threshold: float | None = None,
        degree: float | None = None,
        symmetric: bool = True,
        self_loops: bool = False,
        weight: str = "similarity",
        index: str = "auto",
        nlist: int | None = None,
        nprobe: int | None = None,
        backend: str = "auto",
        device: str = "auto",
        embedder: str | None = None,
        embedder_options: dict[str, Any] | None = None,
        embed_batch_size: int = 256,
        cache: bool = True,
        cache_dir: str | None = None,
        features: str = "standard",
    ) -> None:
        mode = _graph_mode(mode, threshold, degree)
        if degree is not None:
            check_degree(degree)
            if threshold is not None:
                raise ConfigError("give a threshold or a degree, not both")
            if mode != "threshold":
                raise ConfigError(f"degree sets the threshold of mode=threshold; mode={mode} uses k")
        if mode == "threshold" and k is not None:
            raise ConfigError(f"k={k!r} is for mode=knn or mutual; a threshold graph joins every pair that passes "
                              "the threshold (give a threshold or a degree, not k)")
        if mode in ("knn", "mutual") and threshold is not None:
            raise ConfigError(f"threshold={threshold!r} is for mode=threshold; mode={mode} joins each node to its k "
                              "nearest (give k, not a threshold)")
        k = DEFAULT_K if k is None and mode in ("knn", "mutual") else k
        self.metric = check_graph_options(metric, mode, k, threshold, weight, index, degree)
        self.mode, self.k, self.threshold, self.degree = mode, k, threshold, degree
        for name, value in (("symmetric", symmetric), ("self_loops", self_loops), ("cache", cache)):
            if not isinstance(value, bool):
                raise ConfigError(f"{name} must be true or false, got {value!r}")
        if backend not in BACKENDS:
            raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        if backend == "torch" and index not in ("auto", "flat"):
            raise ConfigError(f"the {index} index is a FAISS index; use backend=faiss or auto")
        if features not in FEATURES:
            raise ConfigError(f"features must be one of {', '.join(FEATURES)}, got {features!r}")
        if embedder_options is not None and not isinstance(embedder_options, dict):
            raise ConfigError(f"embedder_options must be a mapping such as {{weights: r18.pth}}, got {embedder_options!r}")
        check_int(embed_batch_size, "embed_batch_size", minimum=1)
        check_device(device)
        self.symmetric, self.self_loops, self.weight = symmetric, self_loops, weight
        self.index, self.nlist, self.nprobe, self.backend, self.device = index, nlist, nprobe, backend, device
        self.embedder, self.embedder_options = embedder, dict(embedder_options or {})
        self.embed_batch_size, self.cache, self.cache_dir, self.features = embed_batch_size, cache, cache_dir, features
        self._stats: dict[str, Any] = {}
        self._threshold: float | None = None  # the last graph's (a degree's, once known)
        self._embedders: dict[str, Embedder] = {}
        if embedder is not None:
            self._make_embedder("images")  # unknown embedder or bad options: fail now, before data loads

    # --- embeddings -----------------------------------------------------------------------
    def _make_embedder(self, kind: str) -> Embedder | None:
        """The embedder for samples of ``kind`` (built once; ``None``: use the vectors as they are)."""
        name = self.embedder if self.embedder is not None else ("pixels" if kind == "images" else None)
        if name is None:
            return None
        if name not in self._embedders:
            from graphforge.api import get_embedder

            embedder = get_embedder(name, **self.embedder_options)
            if not isinstance(embedder, Embedder):
                raise ConfigError(f"embedder {name!r} built a {type(embedder).__name__}, not a graphforge.Embedder")
            self._embedders[name] = embedder
        return self._embedders[name]

    def check_input(self, spec: InputSpec) -> None:
        """Accept images and vectors, and whatever the chosen embedder takes."""
        super().check_input(spec)
        embedder = self._make_embedder(spec.kind)
        if embedder is not None:
            embedder.check_input(spec)

    def output_spec(self, spec: InputSpec) -> InputSpec:
        """One graph whose node features are the embeddings."""
        embedder = self._make_embedder(spec.kind)
        dim = embedder.output_dim(spec) if embedder is not None else spec.num_features
        return InputSpec("graph", (int(dim),))

    def check_data(self, data: DataSplits) -> None:
        """Refuse a k that is not smaller than the number of samples."""
        n = sum(data.sizes().values())
        if self.mode != "threshold" and self.k >= n:
            raise ConfigError(f"similarity: k={self.k} must be smaller than the number of samples ({n})")

    def embed(self, data: DataSplits) -> torch.Tensor:
        """Embeddings ``[M, D]`` of all samples, in the order train, val, test."""
        from graphforge.embedding_cache import cached_embed
        from graphforge.engine.runtime import resolve_device

        x = torch.cat([data.train.x, data.val.x, data.test.x])
        embedder = self._make_embedder(data.kind)
        start = time.perf_counter()
        if embedder is None:
            emb = x.reshape(len(x), -1)
        else:
            emb = cached_embed(embedder, x, device=resolve_device(self.device), batch_size=self.embed_batch_size,
                               cache_dir=self.cache_dir, cache=self.cache)
        self._stats["embed_seconds"] = time.perf_counter() - start
        try:
            return as_float_matrix(emb, "embeddings")
        except DataError as exc:
            bad = ~torch.isfinite(emb.float()).all(1)
            rows = torch.nonzero(bad).view(-1)[:5].tolist() if emb.dim() == 2 else []
            where = f" (first bad rows, in train/val/test order: {rows})" if rows else ""
            raise DataError(f"similarity: {exc}{where}") from None

    # --- the graph --------------------------------------------------------------------------
    def threshold_for(self, emb: torch.Tensor) -> float | None:
        """The threshold of the graph over ``emb``: ``threshold``, or the one that gives ``degree``.

        Raises:
            ConfigError: If ``degree`` is not below the number of other nodes.
        """
        if self.degree is None:
            return self.threshold
        from graphforge.similarity.scores import DEFAULT_MAX_PAIRS, pair_scores, sample_pairs, threshold_for_degree

        i, j, _ = sample_pairs(len(emb), DEFAULT_MAX_PAIRS, seed=0)
        t = threshold_for_degree(self.metric, pair_scores(emb, i, j, self.metric), len(emb), float(self.degree))
        log.info("similarity graph: threshold %.6g for mean degree %g (%s)", t, self.degree, self.metric)
        return t

    def build_graph(self, emb: torch.Tensor) -> SimilarityGraph:
        """Build (or reuse from this process's memo) the graph over ``emb``."""
        from graphforge.engine.runtime import resolve_device

        # Keyed by the options as given (a degree, not the threshold it gives), so a reused
        # graph does not estimate its threshold again.
        options = (self.metric, self.mode, self.k, self.threshold, self.degree, self.symmetric, self.self_loops,
                   self.weight, self.index, self.nlist, self.nprobe, self.backend)
        key = (_digest(emb), *options)
        if key in _MEMO:
            _MEMO.move_to_end(key)
            log.info("similarity graph: reusing the graph built earlier in this process for these embeddings")
            graph, self._threshold = _MEMO[key]
            return graph
        threshold = self.threshold_for(emb) if self.mode == "threshold" else None
        self._threshold = threshold
        graph = similarity_graph(
            emb, metric=self.metric, mode=self.mode, k=self.k, threshold=threshold, symmetric=self.symmetric,
            self_loops=self.self_loops, weight=self.weight, index=self.index, nlist=self.nlist, nprobe=self.nprobe,
            backend=self.backend, device=resolve_device(self.device))
        _MEMO[key] = (graph, threshold)
        while len(_MEMO) > _MEMO_SIZE:
            _MEMO.popitem(last=False)
        return graph

    def convert(self, data: DataSplits) -> Any:
        """Return the PyG ``Data`` over all samples (see the module docs)."""
        from torch_geometric.data import Data

        emb = self.embed(data)
        graph = self.build_graph(emb)
        sizes = [len(data.train), len(data.val), len(data.test)]
        n = sum(sizes)
        split = torch.repeat_interleave(torch.arange(3), torch.tensor(sizes))
        x = emb
        if self.features == "standard":
            train = emb[: sizes[0]]
            std = train.std(0, unbiased=False) if sizes[0] > 1 else torch.ones(emb.shape[1])
            x = (emb - train.mean(0)) / torch.where(std > 1e-12, std, torch.ones_like(std))
        out = Data(x=x, edge_index=graph.edge_index, y=torch.cat([data.train.y, data.val.y, data.test.y]),
                   train_mask=split == 0, val_mask=split == 1, test_mask=split == 2, num_nodes=n)
        if graph.weight is not None:
            out.edge_weight = graph.weight
        out.edge_score = graph.score.float()
        self._stats.update(graph.stats)
        self._degree = graph.degree
        return out

    # --- results ----------------------------------------------------------------------------
    def report(self, rundir: Any) -> dict[str, Any]:
        """Graph figures for ``metrics.json``: edges, mean degree, isolated nodes, seconds, recall."""
        keys = ("edges", "mean_degree", "max_degree", "isolated_nodes", "seconds", "recall", "index", "backend")
        out = {f"graph_{k}": self._stats[k] for k in keys if k in self._stats}
        if self._threshold is not None:
            out["graph_threshold"] = self._threshold
        if "embed_seconds" in self._stats:
            out["embed_seconds"] = self._stats["embed_seconds"]
        return out

    def write_plots(self, history: list[dict[str, Any]], plot_dir: Path) -> list[Path]:
        """Draw the node degree distribution (``plots/degree_distribution.png``)."""
        degree = getattr(self, "_degree", None)
        if degree is None:
            return []
        from graphforge.similarity.plots import plot_degree_distribution

        what = f"threshold {self._threshold:.6g}" if self.mode == "threshold" else f"{self.mode} k={self.k}"
        path = plot_dir / "degree_distribution.png"
        plot_degree_distribution(degree, path, f"similarity graph: {self.metric}, {what}")
        return [path]
