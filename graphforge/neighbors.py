"""Exact k-nearest-neighbour search, shared by ``knn``, similarity graphs and SOM pipelines.

:func:`exact_knn_search` finds the ``k`` nearest database rows of every query row,
exactly, in memory-bounded blocks:

1. **Candidates.** A fast fp32 pass (one GEMM per block for euclidean and cosine,
   ``torch.cdist(p=1)`` for city block; FAISS when it runs on a GPU) keeps the
   ``k + margin`` best candidates of each query.
2. **Exact re-ranking.** The candidates' distances are recomputed in float64 from
   the differences themselves (no ``|a|^2 + |b|^2 - 2ab`` cancellation), and sorted
   by ``(distance, database index)``.
3. **Certificate.** fp32 rounding can only move a score by a bound ``E`` that is
   computed for each query from the norms. If the exact k-th distance is below the
   worst candidate's fp32 score minus ``E``, no row outside the candidates can be
   closer (or tie): the answer is exact. Queries that fail the check (rare: only
   near-ties at the candidate boundary) are searched again over the whole database
   in float64.

Ties are broken by database index (the lower index wins), which is what
scikit-learn's brute-force search does, so a neighbour list of length ``k`` is a
prefix of the list for any larger ``k`` (a k sweep can search once at the largest).

Metrics: ``euclidean`` (``l2``), ``sqeuclidean``, ``cosine`` (``1 - cos``; a zero
vector has similarity 0 to everything, as in scikit-learn) and ``cityblock``
(``l1``, ``manhattan``).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from graphforge.errors import ConfigError, DataError

log = logging.getLogger("graphforge")

METRIC_ALIASES: dict[str, str] = {
    "euclidean": "euclidean",
    "l2": "euclidean",
    "sqeuclidean": "sqeuclidean",
    "cosine": "cosine",
    "cityblock": "cityblock",
    "l1": "cityblock",
    "manhattan": "cityblock",
}
METRICS: tuple[str, ...] = tuple(sorted(METRIC_ALIASES))
BACKENDS: tuple[str, ...] = ("auto", "torch", "faiss")

#: Upper bound on the fp32 score block held at once (elements): 64 Mi floats = 256 MiB.
DEFAULT_BLOCK_ELEMENTS = 64 * 1024 * 1024
#: Target rows per database block.
DB_BLOCK_ROWS = 32768
_FP32_EPS = 2.0**-24  # unit roundoff of float32


@dataclass
class SearchStats:
    """What a search did (for benchmarks and logs).

    Attributes:
        queries: Number of queries.
        fallback_queries: Queries whose fp32 candidates could not be certified and
            were searched again in float64.
        backend: Candidate backend used (``torch`` or ``faiss``).
        device: Device of the candidate search.
    """

    queries: int = 0
    fallback_queries: int = 0
    backend: str = ""
    device: str = "cpu"


def canonical_metric(metric: str) -> str:
    """Return the canonical name of ``metric`` (``l2`` -> ``euclidean``, ``l1`` -> ``cityblock``).

    Raises:
        ConfigError: If the metric is unknown.
    """
    name = METRIC_ALIASES.get(str(metric).lower())
    if name is None:
        raise ConfigError(f"unknown metric {metric!r}; choose one of: {', '.join(METRICS)}")
    return name


def as_float_matrix(x: Any, name: str) -> torch.Tensor:
    """Return ``x`` (numpy array, tensor or nested list) as a contiguous float32 ``[N, D]`` CPU tensor.

    Raises:
        DataError: If ``x`` is not 2-D, or holds NaN or infinite values.
    """
    if isinstance(x, torch.Tensor):
        t = x.detach()
    else:
        t = torch.as_tensor(np.asarray(x))
    if t.ndim != 2:
        raise DataError(f"{name} must be a 2-D array [samples, features], got shape {tuple(t.shape)}")
    t = t.to(device="cpu", dtype=torch.float32).contiguous()
    # A float64 sum of float32 values cannot overflow, so it is finite exactly when
    # every value is (and it is much faster than an element-wise isfinite).
    if t.numel() and not math.isfinite(float(t.sum(dtype=torch.float64))):
        raise DataError(f"{name} contains NaN or infinite values")
    return t


def faiss_gpu_available() -> bool:
    """Whether FAISS is installed with GPU support and a CUDA device is visible."""
    try:
        import faiss  # noqa: PLC0415
    except ImportError:
        return False
    return bool(hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0)


def resolve_search_device(device: str | torch.device) -> torch.device:
    """``auto`` -> CUDA when available, else CPU.

    Raises:
        ConfigError: If CUDA is asked for but not available.
    """
    text = str(device)
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if text.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {text!r} asked for, but CUDA is not available")
    try:
        return torch.device(text)
    except RuntimeError:
        raise ConfigError(f"unknown device {text!r}; use auto, cpu, cuda or cuda:N") from None


# --- exact distances ---------------------------------------------------------------
def _exact_distances(q: torch.Tensor, rows: torch.Tensor, metric: str) -> torch.Tensor:
    """float64 distances of ``q`` ``[B, D]`` to ``rows`` ``[B, C, D]`` -> ``[B, C]``."""
    q64 = q.double().unsqueeze(1)
    r64 = rows.double()
    if metric in ("euclidean", "sqeuclidean"):
        d = (r64 - q64).square_().sum(-1)
        return d.sqrt_() if metric == "euclidean" else d
    if metric == "cityblock":
        return (r64 - q64).abs_().sum(-1)
    # cosine
    qn = q64.norm(dim=-1)
    rn = r64.norm(dim=-1)
    denom = qn * rn
    dots = (r64 * q64).sum(-1)
    sim = torch.where(denom > 0, dots / denom.clamp_min(1e-300), torch.zeros_like(dots))
    return 1.0 - sim


def _sort_by_distance_then_index(dist: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sort each row by distance, ties by index (lexicographic, two stable sorts)."""
    order = torch.sort(idx, dim=1, stable=True).indices
    idx = idx.gather(1, order)
    dist = dist.gather(1, order)
    order = torch.sort(dist, dim=1, stable=True).indices
    return dist.gather(1, order), idx.gather(1, order)


# --- fp32 candidate scores -----------------------------------------------------------
class _Prepared:
    """The database on the search device, with what every block needs."""

    def __init__(self, database: torch.Tensor, metric: str, device: torch.device) -> None:
        self.metric = metric
        self.device = device
        self.cpu = database  # float32 CPU, for exact re-ranking
        db = database.to(device)
        self.dim = int(db.shape[1])
        self.n = int(db.shape[0])
        if metric in ("euclidean", "sqeuclidean"):
            self.db = db
            self.sq_norms = (db * db).sum(1)  # fp32 rounding here is inside the error bound
            self.max_norm = float(self.sq_norms.max().double().sqrt()) * (1 + 1e-6) if self.n else 0.0
        elif metric == "cosine":
            norms = db.double().norm(dim=1, keepdim=True)
            self.db = torch.where(norms > 0, db.double() / norms.clamp_min(1e-300), 0.0).float()
            self.max_norm = 1.0
        else:
            self.db = db
            self.max_norm = float(db.abs().sum(1).max()) if self.n else 0.0  # max L1 norm
        # Worst-case relative rounding of a length-D fp32 reduction (Higham's gamma_D),
        # doubled for the element-wise rounding and the final additions.
        self.gamma = 2.0 * (self.dim + 4) * _FP32_EPS

    def scores(self, q: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        """fp32 scores (smaller = nearer) of queries ``q`` against rows ``start:stop``."""
        db = self.db[start:stop]
        if self.metric in ("euclidean", "sqeuclidean"):
            # |x|^2 - 2 q.x: the query norm is the same for the whole row, so it is left out.
            return torch.addmm(self.sq_norms[start:stop].unsqueeze(0), q, db.T, beta=1.0, alpha=-2.0)
        if self.metric == "cosine":
            return -(q @ db.T)
        return torch.cdist(q, db, p=1.0)

    def prepare_queries(self, q: torch.Tensor) -> torch.Tensor:
        q = q.to(self.device)
        if self.metric == "cosine":
            norms = q.double().norm(dim=1, keepdim=True)
            q = torch.where(norms > 0, q.double() / norms.clamp_min(1e-300), 0.0).float()
        return q

    def error_bound(self, q_cpu: torch.Tensor) -> torch.Tensor:
        """Per-query bound on ``|fp32 score - exact score|`` (float64 ``[B]``)."""
        if self.metric in ("euclidean", "sqeuclidean"):
            # Covers |x|^2 - 2 q.x (torch) and |q|^2 + |x|^2 - 2 q.x (FAISS) in fp32.
            qn = q_cpu.double().norm(dim=1)
            return self.gamma * (self.max_norm + qn).square() + 1e-30
        if self.metric == "cosine":
            return torch.full((len(q_cpu),), 4.0 * self.gamma + 1e-30, dtype=torch.float64)
        qn = q_cpu.double().abs().sum(1)
        return self.gamma * (qn + self.max_norm) + 1e-30

    def exact_score(self, d: torch.Tensor, q_cpu: torch.Tensor) -> torch.Tensor:
        """Exact distances -> the same scale as :meth:`scores`."""
        if self.metric == "euclidean":
            return d.square() - q_cpu.double().square().sum(1, keepdim=True)
        if self.metric == "sqeuclidean":
            return d - q_cpu.double().square().sum(1, keepdim=True)
        if self.metric == "cosine":
            return d - 1.0
        return d


def _faiss_candidates(prep: _Prepared, q: torch.Tensor, c: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``c`` fp32 candidates with FAISS (flat index, GPU when present); scores on our scale."""
    import faiss  # noqa: PLC0415

    index = getattr(prep, "_faiss_index", None)
    if index is None:
        db = prep.db.cpu().numpy()
        if prep.metric in ("euclidean", "sqeuclidean"):
            index = faiss.IndexFlatL2(prep.dim)
        elif prep.metric == "cosine":
            index = faiss.IndexFlatIP(prep.dim)
        else:
            index = faiss.IndexFlat(prep.dim, faiss.METRIC_L1)
        if prep.device.type == "cuda" and faiss_gpu_available():
            res = faiss.StandardGpuResources()
            prep._faiss_res = res  # type: ignore[attr-defined]
            index = faiss.index_cpu_to_gpu(res, prep.device.index or 0, index)
        index.add(db)
        prep._faiss_index = index  # type: ignore[attr-defined]
    dist, idx = index.search(q.cpu().numpy(), c)
    scores = torch.from_numpy(dist)
    if prep.metric in ("euclidean", "sqeuclidean"):
        scores = scores - q.cpu().double().square().sum(1, keepdim=True).float()
    elif prep.metric == "cosine":
        scores = -scores
    return scores, torch.from_numpy(idx)


def _torch_candidates(prep: _Prepared, q: torch.Tensor, c: int, db_block: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``c`` fp32 candidates, blocking the database when it is large."""
    best_s: torch.Tensor | None = None
    best_i: torch.Tensor | None = None
    for start in range(0, prep.n, db_block):
        stop = min(prep.n, start + db_block)
        s = prep.scores(q, start, stop)
        cc = min(c, stop - start)
        vals, idx = torch.topk(s, cc, dim=1, largest=False, sorted=False)
        idx = idx + start
        if best_s is None:
            best_s, best_i = vals, idx
        else:
            assert best_i is not None
            vals = torch.cat([best_s, vals], 1)
            idx = torch.cat([best_i, idx], 1)
            keep = torch.topk(vals, min(c, vals.shape[1]), dim=1, largest=False, sorted=False).indices
            best_s, best_i = vals.gather(1, keep), idx.gather(1, keep)
    assert best_s is not None and best_i is not None
    return best_s.cpu(), best_i.cpu()


def _full_exact(prep: _Prepared, q_cpu: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """float64 search over the whole database for a few queries (the fallback)."""
    out_d, out_i = [], []
    db = prep.cpu
    step = max(1, DEFAULT_BLOCK_ELEMENTS // max(1, 8 * prep.dim))
    for row in q_cpu:
        parts = [_exact_distances(row.unsqueeze(0), db[s : s + step].unsqueeze(0), prep.metric)[0]
                 for s in range(0, prep.n, step)]
        d = torch.cat(parts)
        kth = torch.topk(d, k, largest=False).values.max()
        within = torch.nonzero(d <= kth).squeeze(1)  # ascending index order
        order = torch.sort(d[within], stable=True).indices[:k]
        out_d.append(d[within][order])
        out_i.append(within[order])
    return torch.stack(out_d), torch.stack(out_i)


class KNNIndex:
    """An exact k-nearest-neighbour index over ``database`` (validated and prepared once).

    Args:
        database (array ``[N, D]``): Rows to search (numpy array or tensor; cast to float32).
        metric (str, optional): ``euclidean``/``l2``, ``sqeuclidean``, ``cosine``,
            ``cityblock``/``l1``/``manhattan``. (default: ``"euclidean"``)
        device (str, optional): ``cpu``, ``cuda``, ``cuda:N`` or ``auto``. (default: ``"cpu"``)
        backend (str, optional): Candidate search: ``torch`` (blocked GEMM + top-k),
            ``faiss`` (flat index; a GPU index when FAISS has GPU support and the
            device is CUDA) or ``auto`` (FAISS on a CUDA device when FAISS has GPU
            support, else torch, which measured faster than FAISS's CPU flat index on
            the development machine). (default: ``"auto"``)

    Raises:
        ConfigError: If the metric, device or backend is unknown.
        DataError: If the database is not 2-D or holds NaN or infinite values.
    """

    def __init__(
        self,
        database: Any,
        metric: str = "euclidean",
        *,
        device: str | torch.device = "cpu",
        backend: str = "auto",
    ) -> None:
        self.metric = canonical_metric(metric)
        if backend not in BACKENDS:
            raise ConfigError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
        self.database = as_float_matrix(database, "database")
        self.device = resolve_search_device(device)
        self.use_faiss = backend == "faiss" or (
            backend == "auto" and self.device.type == "cuda" and faiss_gpu_available()
        )
        self.backend = "faiss" if self.use_faiss else "torch"
        self._prep = _Prepared(self.database, self.metric, self.device)

    def __len__(self) -> int:
        return int(self.database.shape[0])

    @property
    def dim(self) -> int:
        """Features per row."""
        return int(self.database.shape[1])

    def search(
        self,
        queries: Any,
        k: int,
        *,
        batch_size: int | None = None,
        margin: int | None = None,
        stats: SearchStats | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Find the ``k`` nearest database rows of each query, exactly.

        Args:
            queries (array ``[M, D]``): Query rows.
            k (int): Number of neighbours; ``1 <= k <= N``.
            batch_size (int, optional): Queries per block; by default chosen so one
                fp32 score block stays under 256 MiB. (default: ``None``)
            margin (int, optional): Extra fp32 candidates kept per query for the exact
                re-ranking (default: ``max(8, k // 4)``).
            stats (SearchStats, optional): Filled with what the search did.

        Returns:
            ``(distances, indices)``: float64 ``[M, k]`` distances sorted ascending
            (ties by index) and int64 ``[M, k]`` database indices.

        Raises:
            ConfigError: If ``k`` or ``batch_size`` is out of range.
            DataError: If the queries are not 2-D, hold NaN, or have another feature size.
        """
        qs = as_float_matrix(queries, "queries")
        if qs.shape[1] != self.dim:
            raise DataError(
                f"feature size mismatch: the database has {self.dim} features per row, "
                f"the queries have {qs.shape[1]}"
            )
        n = len(self)
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ConfigError(f"k must be an integer >= 1, got {k!r}")
        k = int(k)
        if k > n:
            raise ConfigError(f"k={k} is larger than the database ({n} rows); use k <= {n}")
        if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
            raise ConfigError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        stats = stats if stats is not None else SearchStats()
        stats.queries, stats.fallback_queries = len(qs), 0
        stats.backend, stats.device = self.backend, str(self.device)
        m = len(qs)
        if m == 0:
            return torch.zeros(0, k, dtype=torch.float64), torch.zeros(0, k, dtype=torch.long)
        c = min(n, k + (margin if margin is not None else max(8, k // 4)))
        # Database blocks of about DB_BLOCK_ROWS rows, split evenly (no small last block).
        db_block = -(-n // -(-n // DB_BLOCK_ROWS))
        if batch_size is None:
            batch_size = max(1, min(m, DEFAULT_BLOCK_ELEMENTS // max(1, db_block)))
        out_d = torch.empty(m, k, dtype=torch.float64)
        out_i = torch.empty(m, k, dtype=torch.long)
        for start in range(0, m, batch_size):
            q_cpu = qs[start : start + batch_size]
            d_k, i_k, fallbacks = self._search_block(q_cpu, k, c, db_block)
            stats.fallback_queries += fallbacks
            out_d[start : start + len(q_cpu)] = d_k
            out_i[start : start + len(q_cpu)] = i_k
        if stats.fallback_queries:
            log.debug("exact knn search: %d of %d queries needed the float64 fallback", stats.fallback_queries, m)
        return out_d, out_i

    def _search_block(
        self, q_cpu: torch.Tensor, k: int, c: int, db_block: int
    ) -> tuple[torch.Tensor, torch.Tensor, int]:
        prep, db, n = self._prep, self.database, len(self)
        q = prep.prepare_queries(q_cpu)
        if self.use_faiss:
            cand_s, cand_i = _faiss_candidates(prep, q, c)
        else:
            cand_s, cand_i = _torch_candidates(prep, q, c, db_block)
        cand_s, order = torch.sort(cand_s, dim=1)
        cand_i = cand_i.gather(1, order)
        bound = prep.error_bound(q_cpu)
        s64 = cand_s.double()
        # Every database row outside the candidates scores >= the worst candidate (fp32).
        outside = s64[:, -1] if c < n else torch.full((len(q_cpu),), math.inf, dtype=torch.float64)
        # Fast path: the first k by fp32 score are certainly the k nearest when even
        # the fp32 error cannot close the gap to the next candidate (or to the rows
        # outside). Then only those k need exact distances.
        nxt = torch.minimum(s64[:, k], outside) if c > k else outside
        sure = s64[:, k - 1] + bound < nxt - bound
        d_k = torch.empty(len(q_cpu), k, dtype=torch.float64)
        i_k = torch.empty(len(q_cpu), k, dtype=torch.long)
        rows = torch.nonzero(sure).squeeze(1)
        if len(rows):
            idx = cand_i[rows, :k]
            d, i = _sort_by_distance_then_index(_exact_distances(q_cpu[rows], db[idx], self.metric), idx)
            d_k[rows], i_k[rows] = d, i
        rows = torch.nonzero(~sure).squeeze(1)
        fallbacks = 0
        if len(rows):
            # Near-ties: re-rank every candidate exactly, then certify against the outside.
            idx = cand_i[rows]
            d, i = _sort_by_distance_then_index(_exact_distances(q_cpu[rows], db[idx], self.metric), idx)
            d, i = d[:, :k].contiguous(), i[:, :k].contiguous()
            kth_score = prep.exact_score(d[:, -1:], q_cpu[rows]).squeeze(1)
            bad = torch.nonzero(~(kth_score < outside[rows] - bound[rows])).squeeze(1)
            if len(bad):
                fallbacks = len(bad)
                d[bad], i[bad] = _full_exact(prep, q_cpu[rows[bad]], k)
            d_k[rows], i_k[rows] = d, i
        return d_k, i_k, fallbacks


def exact_knn_search(
    database: Any,
    queries: Any,
    k: int,
    metric: str = "euclidean",
    *,
    batch_size: int | None = None,
    device: str | torch.device = "cpu",
    backend: str = "auto",
    margin: int | None = None,
    stats: SearchStats | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Find the ``k`` nearest database rows of each query, exactly (one-shot :class:`KNNIndex`).

    Args:
        database (array ``[N, D]``): Rows to search (numpy array or tensor; cast to float32).
        queries (array ``[M, D]``): Query rows.
        k (int): Number of neighbours; ``1 <= k <= N``.
        metric (str, optional): See :class:`KNNIndex`. (default: ``"euclidean"``)
        batch_size (int, optional): Queries per block. (default: automatic, memory-bounded)
        device (str, optional): ``cpu``, ``cuda``, ``cuda:N`` or ``auto``. (default: ``"cpu"``)
        backend (str, optional): ``auto``, ``torch`` or ``faiss``. (default: ``"auto"``)
        margin (int, optional): Extra fp32 candidates per query. (default: ``max(8, k // 4)``)
        stats (SearchStats, optional): Filled with what the search did.

    Returns:
        ``(distances, indices)``: float64 ``[M, k]`` distances sorted ascending (ties by
        index) and int64 ``[M, k]`` database indices.

    Raises:
        ConfigError: If ``k`` is out of range or the metric/backend is unknown.
        DataError: If the arrays are not 2-D, disagree on the feature size, or hold NaN.
    """
    index = KNNIndex(database, metric, device=device, backend=backend)
    return index.search(queries, k, batch_size=batch_size, margin=margin, stats=stats)


__all__ = [
    "BACKENDS",
    "KNNIndex",
    "METRICS",
    "SearchStats",
    "as_float_matrix",
    "canonical_metric",
    "exact_knn_search",
    "faiss_gpu_available",
    "resolve_search_device",
]
