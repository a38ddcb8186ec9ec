"""Exact k-nearest-neighbour search, shared by ``knn``, similarity graphs and SOM pipelines.

:func:`exact_knn_search` finds the ``k`` nearest database rows of every query row,
exactly, in memory-bounded blocks:

1. **Candidates.** A fast fp32 pass (one GEMM per block for euclidean, cosine and
   inner product, ``torch.cdist`` for city block and L-inf; FAISS when it runs on a GPU)
   keeps the ``k + margin`` best candidates of each query. On the CPU the GEMM runs on
   augmented rows (the norms ride along as one extra column) in the faster of torch's
   and NumPy's BLAS (:mod:`graphforge.neighbors.gemm`), and the native
   :func:`~graphforge.ops.smallest_k` selects the candidates from each block.
2. **Exact re-ranking.** The candidates' distances are recomputed in float64 from
   the differences themselves (no ``|a|^2 + |b|^2 - 2ab`` cancellation), and sorted
   by ``(distance, database index)``.
3. **Certificate.** fp32 rounding can only move a score by a bound ``E`` that is
   computed for each query from the norms. If the exact k-th distance is below the
   worst candidate's fp32 score minus ``E``, no row outside the candidates can be
   closer (or tie): the answer is exact. Queries that fail the check (rare: only
   near-ties at the candidate boundary) are searched again over the whole database
   in float64.

Data on an 8-bit grid (images stored as bytes, scaled by one factor) take a faster
first step where the CPU has VNNI or AMX: an int8 GEMM finds the candidates on the grid,
certified the same way with each row's distance from the grid
(:mod:`graphforge.neighbors.int8`). The answer is the same, bit for bit.

Ties are broken by database index (the lower index wins), deterministically, so a
neighbour list of length ``k`` is a prefix of the list for any larger ``k`` (a k sweep
can search once at the largest). scikit-learn's brute-force search makes no such
promise: it selects with ``argpartition``, and for ``k >= 3`` it may return rows tied at
equal distance in another order (the *sets* of neighbours agree whenever no tie
straddles the k-th place).

Metrics are :class:`~graphforge.neighbors.metrics.Metric` objects (every name and alias
of :mod:`graphforge.neighbors.metrics` works); each is a distance here, smaller =
nearer (``ip``'s is ``-<q, x>``), clamped to its range.

:meth:`KNNIndex.range_search` finds every row within a radius, exactly, by the same
three steps (fp32 candidates within the radius plus the error bound, exact float64
distances, keep those within the radius).

FAISS indexes (``backend="faiss"``): flat (exact, as above), or approximate ``ivf``
(``IndexIVFFlat``) and ``hnsw`` (``IndexHNSWFlat``), whose candidates are re-scored
exactly but whose neighbour *sets* are approximate (measure their recall with
:func:`knn_recall`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from graphforge.checks import check_int
from graphforge.errors import ConfigError, DataError
from graphforge.neighbors.arrays import as_float_matrix, resolve_search_device
from graphforge.neighbors.faiss_index import (
    FAISS_GPU_MAX_K,
    IndexParams,
    build_faiss_index,
    faiss_candidates,
    faiss_gpu_available,
    faiss_range_candidates,
)
from graphforge.neighbors.gemm import GemmChooser
from graphforge.neighbors.int8 import (
    AUTO_MIN_ROWS,
    GRID_TOLERANCE,
    Int8Database,
    cpu_int8_features,
    detect_grid,
    int8_setting,
)
from graphforge.neighbors.metrics import Metric, get_metric, unit_rows
from graphforge.ops import merge_smallest_k, smallest_k
from graphforge.ops._extension import native_available

log = logging.getLogger("graphforge")

BACKENDS: tuple[str, ...] = ("auto", "torch", "faiss")

#: Upper bound on the fp32 score block held at once (elements): 64 Mi floats = 256 MiB.
DEFAULT_BLOCK_ELEMENTS = 64 * 1024 * 1024
#: Target rows per database block.
DB_BLOCK_ROWS = 32768
_FP32_EPS = 2.0**-24  # unit roundoff of float32
#: Data whose largest magnitude is outside [2^-40, 2^40] is searched at a power-of-two scale
#: (squares of 2^40 values over thousands of dimensions stay far from fp32's 2^128).
_FP32_SAFE_MAX = 2.0**40
_FP32_SAFE_MIN = 2.0**-40


@dataclass
class SearchStats:
    """What a search did (for benchmarks and logs).

    Attributes:
        queries: Number of queries.
        fallback_queries: Queries whose fp32 candidates could not be certified and
            were searched again in float64.
        backend: Candidate backend used (``torch`` or ``faiss``).
        device: Device of the candidate search.
        cpu_gemm: BLAS of a CPU GEMM search (``torch`` or ``numpy``; ``auto`` while
            still choosing; empty for other searches). See :mod:`graphforge.neighbors.gemm`.
        int8_queries: Queries answered by the int8 candidate pass (data on an 8-bit
            grid; see :mod:`graphforge.neighbors.int8`); the rest took the fp32 pass.
    """

    queries: int = 0
    fallback_queries: int = 0
    backend: str = ""
    device: str = "cpu"
    cpu_gemm: str = ""
    int8_queries: int = 0


def _sort_by_distance_then_index(dist: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sort each row by distance, ties by index (lexicographic, two stable sorts)."""
    order = torch.sort(idx, dim=1, stable=True).indices
    idx = idx.gather(1, order)
    dist = dist.gather(1, order)
    order = torch.sort(dist, dim=1, stable=True).indices
    return dist.gather(1, order), idx.gather(1, order)


# --- fp32 candidate scores -----------------------------------------------------------
class Prepared:
    """The database on the search device, with what every block needs.

    Every metric is searched on a *score* scale (smaller = nearer) that a GEMM or a
    FAISS index gives directly, chosen by the metric's :attr:`~Metric.family`:
    ``|x|^2 - 2 q.x`` for the ``l2`` family (the query norm is the same for the whole
    row and is left out), ``-q.x`` for ``ip`` (cosine and inner product), the distance
    itself for ``l1`` and ``linf``.
    """

    def __init__(self, database: torch.Tensor, metric: Metric, device: torch.device, *, gemm: bool = False) -> None:
        self.metric = metric
        self.device = device
        self.cpu = database  # float32 CPU, for exact re-ranking
        self.faiss_resources: Any = None  # set when a FAISS GPU index is built
        db = database.to(device)
        self.dim = int(db.shape[1])
        self.n = int(db.shape[0])
        family = metric.family
        # fp32 range guard: data near 1e19 overflows the fp32 squares and products (every
        # score inf), data near 1e-25 underflows them (every score 0). Such data is searched
        # at an exact power-of-two scale that puts it near 1; distances stay exact (the
        # re-ranking reads the original rows in float64).
        self.scale = 1.0
        if not metric.normalized and self.n:
            amax = float(db.abs().max())
            if amax > _FP32_SAFE_MAX or 0 < amax < _FP32_SAFE_MIN:
                self.scale = 2.0 ** -math.frexp(amax)[1]
                db = db * self.scale
        if metric.normalized:
            db = unit_rows(db).float()
        # Translation-invariant metrics are searched on data centred at the database
        # mean: the distances are the same, but the fp32 error bound (which grows with
        # the norms) stays tight for data far from the origin.
        self.shift: torch.Tensor | None = None
        if metric.translation_invariant and self.n:
            self.shift = db.double().mean(0).float()
            db = db - self.shift
        self.db = db
        if family == "l2":
            self.sq_norms = (db * db).sum(1)  # fp32 rounding here is inside the error bound
            self.max_norm = float(self.sq_norms.max().double().sqrt()) * (1 + 1e-6) if self.n else 0.0
        elif family == "ip":
            norm = 1.0 if metric.normalized else float(db.double().norm(dim=1).max()) * (1 + 1e-6)
            self.max_norm = norm if self.n else 0.0
        elif family == "l1":
            self.max_norm = float(db.double().abs().sum(1).max()) if self.n else 0.0  # max L1 norm
        else:  # linf
            self.max_norm = float(db.abs().max()) if self.n else 0.0
        # Worst-case relative rounding of a length-D fp32 reduction (Higham's gamma_D),
        # doubled for the element-wise rounding and the final additions, and half as much
        # again for rounding the centred coordinates.
        self.gamma = 3.0 * (self.dim + 4) * _FP32_EPS
        # CPU GEMM searches (the torch backend): the whole score is one matrix product of
        # augmented rows, [q, 1, 0...] . [-2x, |x|^2, 0...] for the l2 family and
        # q . (-x) for the ip family, so no separate pass adds the norms; the width is padded
        # to a multiple of 8 (faster BLAS kernels). It replaces the centred copy: a single
        # extra copy of the database, built on first use (:attr:`gemm_db`), so a search that
        # the int8 pass answers whole never pays for it. The sum has D + 1 terms, inside the
        # bound above.
        self.uses_gemm = gemm and device.type == "cpu" and family in ("l2", "ip")
        self.gemm: GemmChooser | None = GemmChooser() if self.uses_gemm else None
        self.gemm_width = -(-(self.dim + 1) // 8) * 8 if family == "l2" else self.dim
        self._gemm_db: torch.Tensor | None = None
        self.int8 = self._int8_database(database) if self.uses_gemm else None

    @property
    def gemm_db(self) -> torch.Tensor | None:
        """The augmented fp32 database of CPU GEMM searches (``None`` for the other searches).

        Built on first use from the centred copy, which it then replaces.
        """
        if not self.uses_gemm:
            return None
        if self._gemm_db is None:
            db = self.db
            if self.metric.family == "l2":
                aug = torch.zeros(self.n, self.gemm_width, dtype=torch.float32)
                torch.mul(db, -2.0, out=aug[:, : self.dim])
                aug[:, self.dim] = self.sq_norms
            else:
                aug = -db
            self._gemm_db = aug.contiguous()
            self.db = None  # type: ignore[assignment]  # only FAISS and the other metrics read it
        return self._gemm_db

    def _int8_database(self, database: torch.Tensor) -> Int8Database | None:
        """The int8 grid copy of the database, when the int8 candidate pass applies."""
        setting = int8_setting()
        if setting == "off" or self.metric.family != "l2" or self.metric.normalized or self.scale != 1.0:
            return None
        if setting == "auto" and (not cpu_int8_features() or self.n < AUTO_MIN_ROWS):
            return None
        grid = detect_grid(database) if Int8Database.fits(self.dim) else None
        if grid is None:
            return None
        int8 = Int8Database(database, grid)
        if not int8.on_grid:
            log.debug("int8 candidates: off (largest row residual %.3g of a step)", int8.residual / grid.step)
            return None
        log.debug("int8 candidates: on (grid step %.6g, largest residual %.3g of a step)",
                  grid.step, int8.residual / grid.step)
        return int8

    def scores(self, q: torch.Tensor, start: int, stop: int, out: torch.Tensor | None = None) -> torch.Tensor:
        """fp32 scores (smaller = nearer) of prepared queries ``q`` against rows ``start:stop``.

        ``out`` (CPU GEMM searches only) is an optional ``[len(q), stop - start]`` destination.
        """
        gemm_db = self.gemm_db
        if gemm_db is not None:
            assert self.gemm is not None
            return self.gemm(q, gemm_db[start:stop], out)
        db = self.db[start:stop]
        family = self.metric.family
        if family == "l2":
            return torch.addmm(self.sq_norms[start:stop].unsqueeze(0), q, db.T, beta=1.0, alpha=-2.0)
        if family == "ip":
            return -(q @ db.T)
        return torch.cdist(q, db, p=1.0 if family == "l1" else math.inf)

    def prepare_queries(self, q: torch.Tensor) -> torch.Tensor:
        """Queries on the search scale: normalised / centred like the database, augmented for a CPU GEMM."""
        q = q.to(self.device)
        if self.scale != 1.0:
            q = q * self.scale
        if self.metric.normalized:
            q = unit_rows(q).float()
        if self.shift is not None:
            q = q - self.shift
        if not self.uses_gemm:
            return q
        # CPU GEMM searches: the left factor of the augmented product (see ``gemm_db``),
        # built once per query block rather than once per database block.
        if self.metric.family != "l2":
            return q.contiguous()
        aug = torch.zeros(len(q), self.gemm_width, dtype=torch.float32)
        aug[:, : self.dim] = q
        aug[:, self.dim] = 1.0
        return aug

    def _scaled64(self, q_cpu: torch.Tensor) -> torch.Tensor:
        """Queries in float64, on the (normalised or centred) scale the fp32 scores use."""
        if self.metric.normalized:
            return unit_rows(q_cpu)
        q64 = q_cpu.double() * self.scale
        return q64 - self.shift.cpu().double() if self.shift is not None else q64

    def error_bound(self, q_cpu: torch.Tensor) -> torch.Tensor:
        """Per-query bound on ``|fp32 score - exact score|`` (float64 ``[B]``)."""
        q64 = self._scaled64(q_cpu)
        family = self.metric.family
        if family == "l2":
            # Covers |x|^2 - 2 q.x (torch) and |q|^2 + |x|^2 - 2 q.x (FAISS) in fp32; for
            # normalised rows (chord), 16 eps more for rounding them to fp32.
            extra = 16 * _FP32_EPS if self.metric.normalized else 0.0
            return self.gamma * (self.max_norm + q64.norm(dim=1)).square() + extra + 1e-30
        if family == "ip" and self.metric.normalized:  # cosine: unit rows
            return torch.full((len(q_cpu),), 4.0 * self.gamma + 1e-30, dtype=torch.float64)
        if family == "ip":
            return self.gamma * q64.norm(dim=1) * self.max_norm + 1e-30
        if family == "l1":
            return self.gamma * (q64.abs().sum(1) + self.max_norm) + 1e-30
        # linf: each |q_i - x_i| is rounded once; the maximum itself is exact.
        return 4 * _FP32_EPS * (q64.abs().amax(1) + self.max_norm) + 1e-30

    def exact_score(self, d: torch.Tensor, q_cpu: torch.Tensor) -> torch.Tensor:
        """Exact distances ``d`` (``[B, C]`` or ``[B, 1]``) -> the same scale as :meth:`scores`."""
        family = self.metric.family
        if self.scale != 1.0:  # squared distances and inner products scale with scale^2
            d = d * (self.scale ** 2 if self.metric.squared or family == "ip" else self.scale)
        if family == "l2":
            sq = d if self.metric.squared else d.square()
            return sq - self._scaled64(q_cpu).square().sum(1, keepdim=True)
        if family == "ip" and self.metric.normalized:  # cosine: -cos = d - 1
            return d - 1.0
        return d


def _torch_candidates(prep: Prepared, q: torch.Tensor, c: int, db_block: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``c`` fp32 candidates, blocking the database when it is large."""
    if prep.device.type == "cpu" and native_available("cpu"):
        return _cpu_candidates(prep, q, c, db_block)
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


def _cpu_candidates(prep: Prepared, q: torch.Tensor, c: int, db_block: int) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`_torch_candidates` on the CPU: each block's scores go into one reused buffer
    and the native :func:`~graphforge.ops.smallest_k` selects from it in one streaming pass;
    the blocks' selections are merged once at the end (ties keep the lower row)."""
    buf = torch.empty(len(q), min(db_block, prep.n)) if prep.uses_gemm else None
    parts_s, parts_i = [], []
    for start in range(0, prep.n, db_block):
        stop = min(prep.n, start + db_block)
        s = prep.scores(q, start, stop, out=None if buf is None else buf[:, : stop - start])
        vals, idx = smallest_k(s, min(c, stop - start))
        parts_s.append(vals)
        parts_i.append(idx + start)
    return merge_smallest_k(parts_s, parts_i, c)


def _certified_top_k(
    metric: Metric,
    q_cpu: torch.Tensor,
    db: torch.Tensor,
    s64: torch.Tensor,
    cand_i: torch.Tensor,
    bound: torch.Tensor,
    k: int,
    exact_score: Any,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The exact ``k`` nearest among candidates, and which queries that is certain for.

    Args:
        metric: The search metric (exact float64 distances from the rows themselves).
        q_cpu: ``[B, D]`` queries; ``db``: the database rows.
        s64: ``[B, c]`` candidate scores (float64, ascending); every row outside the
            candidates scores at least the last one.
        cand_i: ``[B, c]`` their database rows.
        bound: ``[B]`` the most a score can differ from the exact one on its scale.
        k: Neighbours wanted, ``k <= c``.
        exact_score: ``(distances [B', j], queries [B', D]) -> scores`` on the candidates' scale.

    Returns:
        ``(distances [B, k], indices [B, k], bad [B] bool)``: sorted by (distance, row);
        where ``bad`` is set a row outside the candidates might be nearer (or tie), and the
        row's answer must come from elsewhere.
    """
    b, c = s64.shape
    n = len(db)
    outside = s64[:, -1] if c < n else torch.full((b,), math.inf, dtype=torch.float64)
    # Fast path: the first k by score are certainly the k nearest when even the error
    # cannot close the gap to the next candidate (or to the rows outside). Then only
    # those k need exact distances.
    nxt = torch.minimum(s64[:, k], outside) if c > k else outside
    sure = s64[:, k - 1] + bound < nxt - bound
    d_k = torch.empty(b, k, dtype=torch.float64)
    i_k = torch.empty(b, k, dtype=torch.long)
    bad = torch.zeros(b, dtype=torch.bool)
    rows = torch.nonzero(sure).squeeze(1)
    if len(rows):
        idx = cand_i[rows, :k]
        d_k[rows], i_k[rows] = _sort_by_distance_then_index(metric.distances(q_cpu[rows], db[idx]), idx)
    rows = torch.nonzero(~sure).squeeze(1)
    if len(rows):
        # Near-ties: re-rank every candidate exactly, then certify against the outside.
        idx = cand_i[rows]
        d, i = _sort_by_distance_then_index(metric.distances(q_cpu[rows], db[idx]), idx)
        d, i = d[:, :k].contiguous(), i[:, :k].contiguous()
        kth_score = exact_score(d[:, -1:], q_cpu[rows]).squeeze(1)
        bad[rows] = ~(kth_score < outside[rows] - bound[rows])
        d_k[rows], i_k[rows] = d, i
    return d_k, i_k, bad


def _full_exact(prep: Prepared, q_cpu: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """float64 search over the whole database for a few queries (the fallback)."""
    out_d, out_i = [], []
    db = prep.cpu
    step = max(1, DEFAULT_BLOCK_ELEMENTS // max(1, 8 * prep.dim))
    for row in q_cpu:
        parts = [prep.metric.distances(row.unsqueeze(0), db[s : s + step].unsqueeze(0))[0]
                 for s in range(0, prep.n, step)]
        d = torch.cat(parts)
        kth = torch.topk(d, k, largest=False).values.max()
        within = torch.nonzero(d <= kth).squeeze(1)  # ascending index order
        order = torch.sort(d[within], stable=True).indices[:k]
        out_d.append(d[within][order])
        out_i.append(within[order])
    return torch.stack(out_d), torch.stack(out_i)


def pair_distances(a: torch.Tensor, b: torch.Tensor, metric: str | Metric) -> torch.Tensor:
    """Exact float64 distances between the rows of ``a`` and ``b`` pairwise (``[P, D]`` each -> ``[P]``).

    Args:
        a, b: Row pairs (same shape).
        metric: Any metric name or alias of :mod:`graphforge.neighbors.metrics`, or a :class:`Metric`.
    """
    m = get_metric(metric)
    if a.shape != b.shape:
        raise DataError(f"pair_distances needs equal shapes, got {tuple(a.shape)} and {tuple(b.shape)}")
    out = torch.empty(len(a), dtype=torch.float64)
    step = max(1, DEFAULT_BLOCK_ELEMENTS // max(1, 4 * a.shape[1]))
    for s in range(0, len(a), step):
        out[s : s + step] = m.distances(a[s : s + step], b[s : s + step].unsqueeze(1))[:, 0]
    return out


class KNNIndex:
    """A k-nearest-neighbour and range-search index over ``database`` (validated and prepared once).

    Args:
        database (array ``[N, D]``): Rows to search (numpy array or tensor; cast to float32).
        metric (str, optional): ``euclidean``/``l2``, ``sqeuclidean``, ``cosine``, ``chord``,
            ``cityblock``/``l1``/``manhattan``, ``linf``/``chebyshev``/``max`` or
            ``ip``/``inner_product``. (default: ``"euclidean"``)
        device (str, optional): ``cpu``, ``cuda``, ``cuda:N`` or ``auto``. (default: ``"cpu"``)
        backend (str, optional): Candidate search: ``torch`` (blocked GEMM + top-k),
            ``faiss`` (a FAISS index; on the GPU when FAISS has GPU support and the
            device is CUDA) or ``auto`` (FAISS for approximate indexes and on a CUDA
            device when FAISS has GPU support, else torch, which measured faster than
            FAISS's CPU flat index on the development machine). (default: ``"auto"``)
        index (str or IndexParams, optional): ``flat`` (exact), or ``ivf`` / ``hnsw``
            (approximate, FAISS only); an :class:`IndexParams` sets their knobs.
            (default: ``"flat"``)

    Raises:
        ConfigError: If the metric, device, backend or index is unknown.
        DataError: If the database is not 2-D or holds NaN or infinite values.
    """

    def __init__(
        self,
        database: Any,
        metric: str = "euclidean",
        *,
        device: str | torch.device = "cpu",
        backend: str = "auto",
        index: str | IndexParams = "flat",
    ) -> None:
        self.metric_info = get_metric(metric)
        self.metric = self.metric_info.name
        if backend not in BACKENDS:
            raise ConfigError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
        self.params = index if isinstance(index, IndexParams) else IndexParams(index=index)
        if self.params.index != "flat" and backend == "torch":
            raise ConfigError(f"the {self.params.index} index is a FAISS index; use backend=faiss or auto")
        self.database = as_float_matrix(database, "database")
        self.device = resolve_search_device(device)
        self.use_faiss = backend == "faiss" or self.params.index != "flat" or (
            backend == "auto" and self.device.type == "cuda" and faiss_gpu_available()
        )
        self.backend = "faiss" if self.use_faiss else "torch"
        self._prep = Prepared(self.database, self.metric_info, self.device, gemm=not self.use_faiss)
        self._faiss: Any = None
        self._faiss_cpu: Any = None

    def __len__(self) -> int:
        return int(self.database.shape[0])

    @property
    def dim(self) -> int:
        """Features per row."""
        return int(self.database.shape[1])

    @property
    def exact(self) -> bool:
        """Whether searches are exact (a flat index)."""
        return self.params.index == "flat"

    def _faiss_index(self, *, cpu: bool = False) -> Any:
        """The FAISS index; with ``cpu=True`` a CPU copy of a GPU index (FAISS GPU indexes
        have no range search, and search at most k = 2048 neighbours)."""
        if self._faiss is None:
            self._faiss = build_faiss_index(self._prep, self.params)
        if cpu and self._prep.faiss_resources is not None:
            if self._faiss_cpu is None:
                import faiss

                self._faiss_cpu = faiss.index_gpu_to_cpu(self._faiss)
            return self._faiss_cpu
        return self._faiss

    def _queries(self, queries: Any) -> torch.Tensor:
        qs = as_float_matrix(queries, "queries")
        if qs.shape[1] != self.dim:
            raise DataError(
                f"feature size mismatch: the database has {self.dim} features per row, "
                f"the queries have {qs.shape[1]}"
            )
        return qs

    def search(
        self,
        queries: Any,
        k: int,
        *,
        batch_size: int | None = None,
        margin: int | None = None,
        stats: SearchStats | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Find the ``k`` nearest database rows of each query (exactly, with a flat index).

        Args:
            queries (array ``[M, D]``): Query rows.
            k (int): Number of neighbours; ``1 <= k <= N``.
            batch_size (int, optional): Queries per block; by default chosen so one
                fp32 score block stays under 256 MiB. (default: ``None``)
            margin (int, optional): Extra fp32 candidates kept per query for the exact
                re-ranking (default: ``max(8, k // 4)``; 0 for approximate indexes).
            stats (SearchStats, optional): Filled with what the search did.

        Returns:
            ``(distances, indices)``: float64 ``[M, k]`` distances sorted ascending
            (ties by index) and int64 ``[M, k]`` database indices. An approximate
            index may find fewer than ``k`` rows for a query: the missing entries are
            ``inf`` with index ``-1``.

        Raises:
            ConfigError: If ``k`` or ``batch_size`` is out of range.
            DataError: If the queries are not 2-D, hold NaN, or have another feature size.
        """
        qs = self._queries(queries)
        n = len(self)
        k = check_int(k, "k", minimum=1)
        if k > n:
            raise ConfigError(f"k={k} is larger than the database ({n} rows); use k <= {n}")
        batch_size = check_int(batch_size, "batch_size", minimum=1, optional=True)
        stats = stats if stats is not None else SearchStats()
        stats.queries, stats.fallback_queries, stats.int8_queries = len(qs), 0, 0
        stats.backend, stats.device = self.backend, str(self.device)
        m = len(qs)
        if m == 0:
            return torch.zeros(0, k, dtype=torch.float64), torch.zeros(0, k, dtype=torch.long)
        # Exact search keeps a margin of fp32 candidates for the certificate; an
        # approximate index's answer is re-scored as it is.
        default_margin = max(8, k // 4) if self.exact else 0
        c = min(n, k + (margin if margin is not None else default_margin))
        db_block = _db_block(n)
        if batch_size is None:
            # Bounded by the fp32 score block and by the float64 re-ranking of c candidates
            # of D features per query (about three [B, c, D] float64 temporaries).
            rerank = DEFAULT_BLOCK_ELEMENTS // max(1, 6 * c * self.dim)
            batch_size = max(1, min(m, DEFAULT_BLOCK_ELEMENTS // max(1, db_block), rerank))
        out_d = torch.empty(m, k, dtype=torch.float64)
        out_i = torch.empty(m, k, dtype=torch.long)
        for start in range(0, m, batch_size):
            q_cpu = qs[start : start + batch_size]
            d_k, i_k, fallbacks, int8_queries = self._search_block(q_cpu, k, c, db_block)
            stats.fallback_queries += fallbacks
            stats.int8_queries += int8_queries
            out_d[start : start + len(q_cpu)] = d_k
            out_i[start : start + len(q_cpu)] = i_k
        stats.cpu_gemm = self.cpu_gemm
        if stats.fallback_queries:
            log.debug("exact knn search: %d of %d queries needed the float64 fallback", stats.fallback_queries, m)
        return out_d, out_i

    @property
    def cpu_gemm(self) -> str:
        """BLAS of this index's CPU GEMM searches: ``torch`` or ``numpy`` once chosen,
        ``auto`` before, empty when its searches use no CPU GEMM (see :mod:`graphforge.gemm`)."""
        gemm = self._prep.gemm
        return "" if gemm is None else (gemm.backend or "auto")

    def _candidates(self, q: torch.Tensor, c: int, db_block: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.use_faiss:
            return faiss_candidates(self._prep, self._faiss_index(cpu=c > FAISS_GPU_MAX_K), self.params, q, c)
        return _torch_candidates(self._prep, q, c, db_block)

    def _search_block(
        self, q_cpu: torch.Tensor, k: int, c: int, db_block: int
    ) -> tuple[torch.Tensor, torch.Tensor, int, int]:
        """The ``k`` nearest of a block of queries: ``(distances, indices, fp64 fallbacks, int8 queries)``."""
        int8 = self._prep.int8
        if int8 is None:
            return (*self._search_block_fp32(q_cpu, k, c, db_block), 0)
        # Queries on the database's grid: int8 candidates, certified with the residuals.
        levels, q_sq, q_res = int8.quantize(q_cpu)
        on = torch.nonzero(q_res <= GRID_TOLERANCE * int8.grid.step).squeeze(1)
        d_k = torch.empty(len(q_cpu), k, dtype=torch.float64)
        i_k = torch.empty(len(q_cpu), k, dtype=torch.long)
        redo = torch.ones(len(q_cpu), dtype=torch.bool)
        if len(on):
            g, cand_i = int8.candidates(levels[on], q_sq[on], c, db_block)
            # |d(q, x) - grid distance| <= residual(q) + residual(x), plus float64 rounding.
            bound = q_res[on] + int8.residual + 1e-12 * (g[:, -1] + 1.0)
            squared = self.metric_info.squared
            d, i, bad = _certified_top_k(
                self.metric_info, q_cpu[on], self.database, g, cand_i, bound, k,
                lambda dist, _q: dist.sqrt() if squared else dist,
            )
            d_k[on], i_k[on] = d, i
            redo[on] = bad
        rows = torch.nonzero(redo).squeeze(1)
        fallbacks = 0
        if len(rows):  # off the grid, or not certified: the fp32 pass
            d_k[rows], i_k[rows], fallbacks = self._search_block_fp32(q_cpu[rows], k, c, db_block)
        return d_k, i_k, fallbacks, len(q_cpu) - len(rows)

    def _search_block_fp32(
        self, q_cpu: torch.Tensor, k: int, c: int, db_block: int
    ) -> tuple[torch.Tensor, torch.Tensor, int]:
        prep, db, n = self._prep, self.database, len(self)
        cand_s, cand_i = self._candidates(prep.prepare_queries(q_cpu), c, db_block)
        cand_s, order = torch.sort(cand_s, dim=1)
        cand_i = cand_i.gather(1, order)
        if not self.exact:
            # Approximate: re-score what the index found exactly; the set stays approximate.
            found = cand_i >= 0
            d = self.metric_info.distances(q_cpu, db[cand_i.clamp_min(0)]).masked_fill(~found, math.inf)
            d, i = _sort_by_distance_then_index(d, cand_i.masked_fill(~found, n))
            i = i.masked_fill(i == n, -1)
            return d[:, :k].contiguous(), i[:, :k].contiguous(), 0
        d_k, i_k, bad = _certified_top_k(
            self.metric_info, q_cpu, db, cand_s.double(), cand_i, prep.error_bound(q_cpu), k, prep.exact_score
        )
        bad_rows = torch.nonzero(bad).squeeze(1)
        if len(bad_rows):
            d_k[bad_rows], i_k[bad_rows] = _full_exact(prep, q_cpu[bad_rows], k)
        return d_k, i_k, len(bad_rows)

    def range_search(
        self, queries: Any, radius: float, *, batch_size: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Find every database row within distance ``radius`` of each query (``d <= radius``).

        With a flat index the result is exact: fp32 candidates within the radius plus
        the error bound are re-scored in float64 and kept when ``d <= radius``. Memory
        grows with the number of pairs found, never with ``M x N``.

        Args:
            queries (array ``[M, D]``): Query rows.
            radius (float): Largest distance kept (for ``cosine`` the distance is
                ``1 - cos``; for ``ip`` it is ``-<q, x>``).
            batch_size (int, optional): Queries per block. (default: automatic)

        Returns:
            ``(query_index, row_index, distance)``: int64, int64 and float64 ``[P]``,
            sorted by query, then row.

        Raises:
            ConfigError: If ``radius`` is not a finite number.
            DataError: If the queries are not 2-D, hold NaN, or have another feature size.
        """
        if isinstance(radius, bool) or not isinstance(radius, (int, float, np.floating)) or not math.isfinite(radius):
            raise ConfigError(f"radius must be a finite number, got {radius!r}")
        radius = float(radius)
        qs = self._queries(queries)
        batch_size = check_int(batch_size, "batch_size", minimum=1, optional=True)
        m, n = len(qs), len(self)
        empty = (torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.float64))
        if m == 0 or n == 0 or (radius < 0 and self.metric_info.nonnegative):
            return empty
        db_block = _db_block(n)
        if batch_size is None:
            batch_size = max(1, min(m, DEFAULT_BLOCK_ELEMENTS // max(1, db_block)))
        parts = []
        for start in range(0, m, batch_size):
            q_cpu = qs[start : start + batch_size]
            qi, ri = self._range_candidates(q_cpu, radius, db_block)
            if len(qi):
                d = pair_distances(q_cpu[qi], self.database[ri], self.metric_info)
                keep = d <= radius
                parts.append((qi[keep] + start, ri[keep], d[keep]))
        if not parts:
            return empty
        qi, ri, d = (torch.cat(p) for p in zip(*parts))
        order = torch.argsort(qi * n + ri)
        return qi[order], ri[order], d[order]

    def _range_candidates(self, q_cpu: torch.Tensor, radius: float, db_block: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Candidate ``(query, row)`` pairs whose fp32 score could be within ``radius``."""
        prep = self._prep
        q = prep.prepare_queries(q_cpu)
        bound = prep.error_bound(q_cpu)
        r = torch.full((len(q_cpu), 1), radius, dtype=torch.float64)
        limit = prep.exact_score(r, q_cpu).squeeze(1) + bound
        limit = limit + limit.abs() * 4 * _FP32_EPS  # rounding the limit itself to fp32
        if self.use_faiss:
            return faiss_range_candidates(prep, self._faiss_index(cpu=True), self.params, q, limit)
        qs, rs = [], []
        limit_f = limit.float().to(prep.device).unsqueeze(1)
        for start in range(0, prep.n, db_block):
            hit = torch.nonzero(prep.scores(q, start, min(prep.n, start + db_block)) <= limit_f).cpu()
            qs.append(hit[:, 0])
            rs.append(hit[:, 1] + start)
        return torch.cat(qs), torch.cat(rs)


def _db_block(n: int) -> int:
    """Database blocks of about DB_BLOCK_ROWS rows, split evenly (no small last block)."""
    return -(-n // -(-n // DB_BLOCK_ROWS))


def knn_recall(approx: torch.Tensor, exact: torch.Tensor) -> float:
    """Mean recall@k of approximate neighbour lists against exact ones (``[M, k]`` indices each).

    Ties make several exact answers possible; this counts index overlap, so it is a
    lower bound where distances tie.
    """
    if approx.shape != exact.shape:
        raise DataError(f"recall needs equal shapes, got {tuple(approx.shape)} and {tuple(exact.shape)}")
    if exact.numel() == 0:
        return 1.0
    hits = (approx.unsqueeze(2) == exact.unsqueeze(1)).any(2) & (approx >= 0)
    return float(hits.float().mean())


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
    "Prepared",
    "SearchStats",
    "exact_knn_search",
    "knn_recall",
    "pair_distances",
]
