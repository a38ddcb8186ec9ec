"""FAISS indexes for the neighbour search: flat (exact candidates), IVF and HNSW (approximate).

:class:`~graphforge.neighbors.KNNIndex` uses these when ``backend="faiss"`` or the index
is approximate. FAISS returns fp32 candidates on its own scale; the functions here turn
them into the search's score scale (:class:`~graphforge.neighbors.search.Prepared`), and
the index re-scores them exactly.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from graphforge.checks import check_int
from graphforge.errors import ConfigError

if TYPE_CHECKING:
    from graphforge.neighbors.search import Prepared

__all__ = [
    "FAISS_GPU_MAX_K",
    "INDEX_TYPES",
    "IVF_TRAIN_PER_LIST",
    "IndexParams",
    "faiss_gpu_available",
    "ivf_training_sample",
]

log = logging.getLogger("graphforge")

#: FAISS index types: exact ``flat``, approximate ``ivf`` and ``hnsw``.
INDEX_TYPES: tuple[str, ...] = ("flat", "ivf", "hnsw")
#: The largest k a FAISS GPU index searches; more candidates use a CPU copy of the index.
FAISS_GPU_MAX_K = 2048
#: Rows per IVF list used to train the coarse quantizer (FAISS warns below 39).
IVF_TRAIN_PER_LIST = 64


def faiss_gpu_available() -> bool:
    """Whether FAISS is installed with GPU support and a CUDA device is visible."""
    try:
        import faiss
    except ImportError:
        return False
    return bool(hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0)


@dataclass(frozen=True)
class IndexParams:
    """FAISS index settings.

    Attributes:
        index: ``flat`` (exact), ``ivf`` (``IndexIVFFlat``) or ``hnsw`` (``IndexHNSWFlat``).
        nlist: IVF lists (default: ``4 * sqrt(N)``, at most ``N / 39``).
        nprobe: IVF lists searched per query (default: 32).
        hnsw_m: HNSW links per node (default: 32).
        ef_search: HNSW search breadth (default: ``max(64, 2 * candidates)``).
        ef_construction: HNSW build breadth (default: 64).
        seed: Seed of the IVF training sample.
    """

    index: str = "flat"
    nlist: int | None = None
    nprobe: int | None = None
    hnsw_m: int = 32
    ef_search: int | None = None
    ef_construction: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        if self.index not in INDEX_TYPES:
            raise ConfigError(f"unknown index {self.index!r}; choose one of: {', '.join(INDEX_TYPES)}")
        for name in ("nlist", "nprobe", "ef_search"):
            check_int(getattr(self, name), name, minimum=1, optional=True)
        for name in ("hnsw_m", "ef_construction"):
            check_int(getattr(self, name), name, minimum=2)

    def resolved_nprobe(self, nlist: int) -> int:
        """The IVF lists probed per query (at most ``nlist``)."""
        return min(nlist, self.nprobe or 32)

    def resolved_ef_search(self, candidates: int) -> int:
        """The HNSW search breadth for ``candidates`` results per query."""
        return self.ef_search or max(64, 2 * candidates)

    def resolved_nlist(self, n: int) -> int:
        """The IVF list count for ``n`` rows."""
        if self.nlist is not None:
            return max(1, min(self.nlist, n))
        return max(1, min(int(4 * math.sqrt(n)), n // 39 or 1))


def ivf_training_sample(data: np.ndarray, nlist: int, seed: int) -> np.ndarray:
    """The rows an IVF index is trained on: all of them, or ``64 * nlist`` drawn with ``seed``.

    k-means needs a few dozen points per list, not millions; training on a sample
    keeps the build time of a 1M-row index in seconds rather than minutes.
    """
    if len(data) <= IVF_TRAIN_PER_LIST * nlist:
        return data
    rows = np.random.default_rng(seed).choice(len(data), IVF_TRAIN_PER_LIST * nlist, replace=False)
    return data[np.sort(rows)]


def faiss_metric_type(family: str) -> int:
    """The FAISS metric of a search family (``l2``, ``ip``, ``l1``, ``linf``)."""
    import faiss

    return {"l2": faiss.METRIC_L2, "ip": faiss.METRIC_INNER_PRODUCT,
            "l1": faiss.METRIC_L1, "linf": faiss.METRIC_Linf}[family]


def build_faiss_index(prep: Prepared, params: IndexParams) -> Any:
    """Build (train, fill, and move to the GPU where possible) the FAISS index over ``prep.db``."""
    import faiss

    metric = faiss_metric_type(prep.metric.family)
    db = np.ascontiguousarray(prep.db.cpu().numpy())
    if params.index == "flat":
        index = faiss.IndexFlat(prep.dim, metric)
    elif params.index == "ivf":
        nlist = params.resolved_nlist(prep.n)
        quantizer = faiss.IndexFlat(prep.dim, metric)
        index = faiss.IndexIVFFlat(quantizer, prep.dim, nlist, metric)
        index.cp.seed = params.seed
        index.train(ivf_training_sample(db, nlist, params.seed))
        index.nprobe = params.resolved_nprobe(nlist)
    else:
        index = faiss.IndexHNSWFlat(prep.dim, params.hnsw_m, metric)
        index.hnsw.efConstruction = params.ef_construction
    if prep.device.type == "cuda" and params.index != "hnsw" and faiss_gpu_available():
        res = faiss.StandardGpuResources()
        prep.faiss_resources = res
        index = faiss.index_cpu_to_gpu(res, prep.device.index or 0, index)
    elif prep.device.type == "cuda":
        log.info("FAISS %s index runs on the CPU (%s)", params.index,
                 "HNSW has no GPU version" if params.index == "hnsw" else "faiss has no GPU support here")
    index.add(db)
    return index


def _query_sq_norms(q: torch.Tensor) -> torch.Tensor:
    return q.cpu().double().square().sum(1, keepdim=True)


def faiss_to_scores(prep: Prepared, dist: np.ndarray, q: torch.Tensor) -> torch.Tensor:
    """FAISS distances -> the search's score scale (float32)."""
    scores = torch.from_numpy(dist)
    family = prep.metric.family
    if family == "l2":  # FAISS adds |q|^2, which the score scale leaves out
        return scores - _query_sq_norms(q).float()
    if family == "ip":  # FAISS ranks by largest product; the scale is smaller = nearer
        return -scores
    return scores


def faiss_candidates(prep: Prepared, index: Any, params: IndexParams, q: torch.Tensor,
                     c: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``c`` fp32 candidates from a FAISS index; scores on the search's scale, missing ones ``inf``/-1."""
    if params.index == "hnsw":
        index.hnsw.efSearch = params.resolved_ef_search(c)
    dist, idx = index.search(np.ascontiguousarray(q.cpu().numpy()), c)
    scores = faiss_to_scores(prep, dist, q)
    idx_t = torch.from_numpy(idx)
    return scores.masked_fill(idx_t < 0, math.inf), idx_t


def faiss_range_candidates(prep: Prepared, index: Any, params: IndexParams, q: torch.Tensor,
                           limit: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Candidate ``(query, row)`` pairs of a FAISS range search whose score may be within ``limit`` ``[B]``.

    FAISS takes one radius per call, on its own scale (``|q|^2`` added back for L2, the
    sign flipped for inner products); the loosest per-query limit keeps every candidate.
    """
    family = prep.metric.family
    if family == "l2":
        faiss_limit = float((limit + _query_sq_norms(q).squeeze(1)).max())
    elif family == "ip":
        faiss_limit = float((-limit).min())
    else:
        faiss_limit = float(limit.max())
    if params.index == "hnsw":
        index.hnsw.efSearch = params.resolved_ef_search(0)
    lims, _, idx = index.range_search(np.ascontiguousarray(q.cpu().numpy()), np.float32(faiss_limit))
    counts = torch.from_numpy(np.diff(lims).astype(np.int64))
    qi = torch.repeat_interleave(torch.arange(len(q)), counts)
    return qi, torch.from_numpy(idx.astype(np.int64))
