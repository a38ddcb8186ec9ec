"""Neighbours: one metric vocabulary, exact and approximate search, and the kNN classifier.

* :mod:`~graphforge.neighbors.metrics` — :class:`Metric` objects looked up by name or
  alias (:func:`get_metric`): the one place that says what ``euclidean`` / ``l2``,
  ``cosine``, ``cityblock`` / ``l1``, ``linf``, ``chord`` and ``ip`` mean.
* :mod:`~graphforge.neighbors.search` — :class:`KNNIndex` and :func:`exact_knn_search`:
  exact dataset-scale kNN and range search (fp32 candidates, float64 re-ranking, an
  error-bound certificate), memory-bounded blocks.
* :mod:`~graphforge.neighbors.faiss_index` — FAISS flat / IVF / HNSW indexes
  (:class:`IndexParams`), on a GPU where faiss-gpu is present.
* :mod:`~graphforge.neighbors.gemm` — the faster CPU BLAS for the search's products.
* :mod:`~graphforge.neighbors.int8` — the int8 candidate pass for data on an 8-bit grid
  (images), on CPUs with VNNI or AMX; exact after the same certificate.
* :mod:`~graphforge.neighbors.classifier` — :class:`KNNClassifier`, scikit-learn's API.

This package depends only on torch, NumPy, FAISS (imported when used) and graphforge's
ops, checks and errors — never on the engine, plugins, config or CLI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from graphforge._lazy import lazy_exports

if TYPE_CHECKING:
    from graphforge.neighbors.arrays import as_float_matrix, resolve_search_device
    from graphforge.neighbors.classifier import WEIGHTS, KNNClassifier, neighbor_weights, vote
    from graphforge.neighbors.faiss_index import (
        INDEX_TYPES,
        IVF_TRAIN_PER_LIST,
        IndexParams,
        faiss_gpu_available,
        ivf_training_sample,
    )
    from graphforge.neighbors.metrics import (
        METRIC_ALIASES,
        METRICS,
        NONNEGATIVE_METRICS,
        Metric,
        canonical_metric,
        get_metric,
        list_metrics,
    )
    from graphforge.neighbors.search import (
        BACKENDS,
        DB_BLOCK_ROWS,
        DEFAULT_BLOCK_ELEMENTS,
        KNNIndex,
        SearchStats,
        exact_knn_search,
        knn_recall,
        pair_distances,
    )

# Where each public name lives; submodules load on first use, so importing
# graphforge.neighbors.metrics (which the native op's wrapper does) stays cheap and
# cannot import the search, which itself depends on the ops.
_LOCATIONS: dict[str, str] = {
    **dict.fromkeys(("as_float_matrix", "resolve_search_device"), "arrays"),
    **dict.fromkeys(("WEIGHTS", "KNNClassifier", "neighbor_weights", "vote"), "classifier"),
    **dict.fromkeys(("INDEX_TYPES", "IVF_TRAIN_PER_LIST", "IndexParams", "faiss_gpu_available",
                     "ivf_training_sample"), "faiss_index"),
    **dict.fromkeys(("METRIC_ALIASES", "METRICS", "NONNEGATIVE_METRICS", "Metric", "canonical_metric",
                     "get_metric", "list_metrics"), "metrics"),
    **dict.fromkeys(("BACKENDS", "DB_BLOCK_ROWS", "DEFAULT_BLOCK_ELEMENTS", "KNNIndex", "SearchStats",
                     "exact_knn_search", "knn_recall", "pair_distances"), "search"),
}


__getattr__, __dir__ = lazy_exports(__name__, globals(), _LOCATIONS)


__all__ = [
    "BACKENDS",
    "DB_BLOCK_ROWS",
    "DEFAULT_BLOCK_ELEMENTS",
    "INDEX_TYPES",
    "IVF_TRAIN_PER_LIST",
    "METRICS",
    "METRIC_ALIASES",
    "NONNEGATIVE_METRICS",
    "WEIGHTS",
    "IndexParams",
    "KNNClassifier",
    "KNNIndex",
    "Metric",
    "SearchStats",
    "as_float_matrix",
    "canonical_metric",
    "exact_knn_search",
    "faiss_gpu_available",
    "get_metric",
    "ivf_training_sample",
    "knn_recall",
    "list_metrics",
    "neighbor_weights",
    "pair_distances",
    "resolve_search_device",
    "vote",
]
