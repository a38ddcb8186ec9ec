"""Exact k-nearest-neighbour search, shared by ``knn``, similarity graphs and SOM pipelines.

:func:`exact_knn_search` finds the ``k`` nearest database rows of every query row,
exactly, in memory-bounded blocks:

1. **Candidates.** A fast fp32 pass (one GEMM per block for euclidean, cosine and
   inner product, ``torch.cdist`` for city block and L-inf; FAISS when it runs on a GPU)
   keeps the ``k + margin`` best candidates of each query. On the CPU the GEMM runs on
   augmented rows (the norms ride along as one extra column) in the faster of torch's
   and NumPy's BLAS (:mod:`graphforge.gemm`), and the native
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

Ties are broken by database index (the lower index wins), which is what
scikit-learn's brute-force search does, so a neighbour list of length ``k`` is a
prefix of the list for any larger ``k`` (a k sweep can search once at the largest).

Metrics (each a distance, smaller = nearer): ``euclidean`` (``l2``), ``sqeuclidean``,
``cosine`` (``1 - cos``; a zero vector has similarity 0 to everything, as in
scikit-learn), ``chord`` (the euclidean distance between the L2-normalised rows,
``sqrt(2 - 2 cos)``; a zero row stays zero), ``cityblock`` (``l1``, ``manhattan``),
``linf`` (``chebyshev``, ``max``: the largest absolute difference) and ``ip`` (inner
product; its distance is ``-<q, x>``, so the nearest rows have the largest product).

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

from graphforge.config import check_int
from graphforge.errors import ConfigError, DataError
from graphforge.gemm import GemmChooser
from graphforge.ops import smallest_k
from graphforge.ops._extension import native_available

log = logging.getLogger("graphforge")

METRIC_ALIASES: dict[str, str] = {
    "euclidean": "euclidean",
    "l2": "euclidean",
    "sqeuclidean": "sqeuclidean",
    "cosine": "cosine",
    "cityblock": "cityblock",
    "l1": "cityblock",
    "manhattan": "cityblock",
    "chord": "chord",
    "linf": "linf",
    "chebyshev": "linf",
    "max": "linf",
    "maxnorm": "linf",
    "ip": "ip",
    "inner_product": "ip",
    "dot": "ip",
}
#: Metrics whose distance is never negative (a negative radius finds nothing).
NONNEGATIVE_METRICS: frozenset[str] = frozenset({"euclidean", "sqeuclidean", "cosine", "chord", "cityblock", "linf"})
#: FAISS index types: exact ``flat``, approximate ``ivf`` and ``hnsw``.
INDEX_TYPES: tuple[str, ...] = ("flat", "ivf", "hnsw")
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
        cpu_gemm: BLAS of a CPU GEMM search (``torch`` or ``numpy``; ``auto`` while
            still choosing; empty for other searches). See :mod:`graphforge.gemm`.
    """

    queries: int = 0
    fallback_queries: int = 0
    backend: str = ""
    device: str = "cpu"
    cpu_gemm: str = ""


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
        import faiss
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
def _unit64(x: torch.Tensor) -> torch.Tensor:
    """Rows of ``x`` scaled to unit L2 norm in float64 (zero rows stay zero)."""
    x = x.double()
    norms = x.norm(dim=-1, keepdim=True)
    return torch.where(norms > 0, x / norms.clamp_min(1e-300), torch.zeros_like(x))


def _exact_distances(q: torch.Tensor, rows: torch.Tensor, metric: str) -> torch.Tensor:
    """float64 distances of ``q`` ``[B, D]`` to ``rows`` ``[B, C, D]`` -> ``[B, C]``."""
    q64 = q.double().unsqueeze(1)
    r64 = rows.to(torch.float64, copy=True)  # a private copy, updated in place below
    if metric in ("euclidean", "sqeuclidean"):
        d = r64.sub_(q64).square_().sum(-1)
        return d.sqrt_() if metric == "euclidean" else d
    if metric == "cityblock":
        return r64.sub_(q64).abs_().sum(-1)
    if metric == "linf":
        return r64.sub_(q64).abs_().amax(-1)
    if metric == "ip":
        return r64.mul_(q64).sum(-1).neg_()
    if metric == "chord":
        return (_unit64(r64) - _unit64(q64)).square_().sum(-1).sqrt_()
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
_L2_LIKE = frozenset({"euclidean", "sqeuclidean", "chord"})
#: Metrics whose fp32 score is one matrix product.
_GEMM_METRICS = _L2_LIKE | {"cosine", "ip"}
_SHIFT_INVARIANT = frozenset({"euclidean", "sqeuclidean", "cityblock", "linf"})
#: The largest k a FAISS GPU index searches; more candidates use a CPU copy of the index.
_FAISS_GPU_MAX_K = 2048


class _Prepared:
    """The database on the search device, with what every block needs.

    Every metric is searched on a *score* scale (smaller = nearer) that a GEMM or a
    FAISS index gives directly: ``|x|^2 - 2 q.x`` for the euclidean family (the query
    norm is the same for the whole row and is left out), ``-q.x`` for cosine and inner
    product, the distance itself for city block and L-inf.
    """

    def __init__(self, database: torch.Tensor, metric: str, device: torch.device, *, gemm: bool = False) -> None:
        self.metric = metric
        self.device = device
        self.cpu = database  # float32 CPU, for exact re-ranking
        db = database.to(device)
        self.dim = int(db.shape[1])
        self.n = int(db.shape[0])
        if metric in ("cosine", "chord"):
            db = _unit64(db).float()
        # Translation-invariant metrics are searched on data centred at the database
        # mean: the distances are the same, but the fp32 error bound (which grows with
        # the norms) stays tight for data far from the origin.
        self.shift: torch.Tensor | None = None
        if metric in _SHIFT_INVARIANT and self.n:
            self.shift = db.double().mean(0).float()
            db = db - self.shift
        self.db = db
        if metric in _L2_LIKE:
            self.sq_norms = (db * db).sum(1)  # fp32 rounding here is inside the error bound
            self.max_norm = float(self.sq_norms.max().double().sqrt()) * (1 + 1e-6) if self.n else 0.0
        elif metric == "cosine":
            self.max_norm = 1.0
        elif metric == "ip":
            self.max_norm = float(db.double().norm(dim=1).max()) * (1 + 1e-6) if self.n else 0.0
        elif metric == "cityblock":
            self.max_norm = float(db.double().abs().sum(1).max()) if self.n else 0.0  # max L1 norm
        else:  # linf
            self.max_norm = float(db.abs().max()) if self.n else 0.0
        # Worst-case relative rounding of a length-D fp32 reduction (Higham's gamma_D),
        # doubled for the element-wise rounding and the final additions, and half as much
        # again for rounding the centred coordinates.
        self.gamma = 3.0 * (self.dim + 4) * _FP32_EPS
        # CPU GEMM searches (the torch backend): the whole score is one matrix product of
        # augmented rows, [q, 1, 0...] . [-2x, |x|^2, 0...] for the euclidean family and
        # q . (-x) for cosine / ip, so no separate pass adds the norms; the width is padded
        # to a multiple of 8 (faster BLAS kernels). It replaces the centred copy: a single
        # extra copy of the database. The sum has D + 1 terms, inside the bound above.
        self.gemm_db: torch.Tensor | None = None
        self.gemm: GemmChooser | None = None
        if gemm and device.type == "cpu" and metric in _GEMM_METRICS:
            self.gemm = GemmChooser()
            if metric in _L2_LIKE:
                width = -(-(self.dim + 1) // 8) * 8
                aug = torch.zeros(self.n, width, dtype=torch.float32)
                torch.mul(db, -2.0, out=aug[:, : self.dim])
                aug[:, self.dim] = self.sq_norms
            else:
                aug = -db
            self.gemm_db = aug.contiguous()
            self.db = None  # type: ignore[assignment]  # only FAISS and the other metrics read it

    def scores(self, q: torch.Tensor, start: int, stop: int, out: torch.Tensor | None = None) -> torch.Tensor:
        """fp32 scores (smaller = nearer) of prepared queries ``q`` against rows ``start:stop``.

        ``out`` (CPU GEMM searches only) is an optional ``[len(q), stop - start]`` destination.
        """
        if self.gemm_db is not None:
            assert self.gemm is not None
            return self.gemm(q, self.gemm_db[start:stop], out)
        db = self.db[start:stop]
        if self.metric in _L2_LIKE:
            return torch.addmm(self.sq_norms[start:stop].unsqueeze(0), q, db.T, beta=1.0, alpha=-2.0)
        if self.metric in ("cosine", "ip"):
            return -(q @ db.T)
        return torch.cdist(q, db, p=1.0 if self.metric == "cityblock" else math.inf)

    def prepare_queries(self, q: torch.Tensor) -> torch.Tensor:
        q = q.to(self.device)
        if self.metric in ("cosine", "chord"):
            q = _unit64(q).float()
        if self.shift is not None:
            q = q - self.shift
        if self.gemm_db is None:
            return q
        # CPU GEMM searches: the left factor of the augmented product (see ``gemm_db``),
        # built once per query block rather than once per database block.
        if self.metric not in _L2_LIKE:
            return q.contiguous()
        aug = torch.zeros(len(q), self.gemm_db.shape[1], dtype=torch.float32)
        aug[:, : self.dim] = q
        aug[:, self.dim] = 1.0
        return aug

    def _centred64(self, q_cpu: torch.Tensor) -> torch.Tensor:
        """Queries in float64, on the (centred) scale the fp32 scores use."""
        q64 = q_cpu.double()
        return q64 - self.shift.cpu().double() if self.shift is not None else q64

    def error_bound(self, q_cpu: torch.Tensor) -> torch.Tensor:
        """Per-query bound on ``|fp32 score - exact score|`` (float64 ``[B]``)."""
        q64 = self._centred64(q_cpu)
        if self.metric in _L2_LIKE:
            # Covers |x|^2 - 2 q.x (torch) and |q|^2 + |x|^2 - 2 q.x (FAISS) in fp32; for
            # chord, 16 eps more for rounding the normalised rows to fp32.
            qn = _unit64(q64).norm(dim=1) if self.metric == "chord" else q64.norm(dim=1)
            extra = 16 * _FP32_EPS if self.metric == "chord" else 0.0
            return self.gamma * (self.max_norm + qn).square() + extra + 1e-30
        if self.metric == "cosine":
            return torch.full((len(q_cpu),), 4.0 * self.gamma + 1e-30, dtype=torch.float64)
        if self.metric == "ip":
            return self.gamma * q64.norm(dim=1) * self.max_norm + 1e-30
        if self.metric == "cityblock":
            return self.gamma * (q64.abs().sum(1) + self.max_norm) + 1e-30
        # linf: each |q_i - x_i| is rounded once; the maximum itself is exact.
        return 4 * _FP32_EPS * (q64.abs().amax(1) + self.max_norm) + 1e-30

    def exact_score(self, d: torch.Tensor, q_cpu: torch.Tensor) -> torch.Tensor:
        """Exact distances ``d`` (``[B, C]`` or ``[B, 1]``) -> the same scale as :meth:`scores`."""
        if self.metric == "euclidean":
            return d.square() - self._centred64(q_cpu).square().sum(1, keepdim=True)
        if self.metric == "sqeuclidean":
            return d - self._centred64(q_cpu).square().sum(1, keepdim=True)
        if self.metric == "chord":
            return d.square() - _unit64(q_cpu).square().sum(1, keepdim=True)
        if self.metric == "cosine":
            return d - 1.0
        return d


# --- FAISS --------------------------------------------------------------------------
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


#: Rows per IVF list used to train the coarse quantizer (FAISS warns below 39).
IVF_TRAIN_PER_LIST = 64


def ivf_training_sample(data: np.ndarray, nlist: int, seed: int) -> np.ndarray:
    """The rows an IVF index is trained on: all of them, or ``64 * nlist`` drawn with ``seed``.

    k-means needs a few dozen points per list, not millions; training on a sample
    keeps the build time of a 1M-row index in seconds rather than minutes.
    """
    if len(data) <= IVF_TRAIN_PER_LIST * nlist:
        return data
    rows = np.random.default_rng(seed).choice(len(data), IVF_TRAIN_PER_LIST * nlist, replace=False)
    return data[np.sort(rows)]


def _faiss_metric(metric: str) -> int:
    import faiss

    if metric in _L2_LIKE:
        return faiss.METRIC_L2
    if metric in ("cosine", "ip"):
        return faiss.METRIC_INNER_PRODUCT
    return faiss.METRIC_L1 if metric == "cityblock" else faiss.METRIC_Linf


def _build_faiss_index(prep: _Prepared, params: IndexParams) -> Any:
    """Build (train, fill, and move to the GPU where possible) the FAISS index over ``prep.db``."""
    import faiss

    metric = _faiss_metric(prep.metric)
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
        prep._faiss_res = res  # type: ignore[attr-defined]
        index = faiss.index_cpu_to_gpu(res, prep.device.index or 0, index)
    elif prep.device.type == "cuda":
        log.info("FAISS %s index runs on the CPU (%s)", params.index,
                 "HNSW has no GPU version" if params.index == "hnsw" else "faiss has no GPU support here")
    index.add(db)
    return index


def _faiss_to_scores(prep: _Prepared, dist: np.ndarray, q: torch.Tensor) -> torch.Tensor:
    """FAISS distances -> our score scale (float32)."""
    scores = torch.from_numpy(dist)
    if prep.metric in _L2_LIKE:
        return scores - q.cpu().double().square().sum(1, keepdim=True).float()
    if prep.metric in ("cosine", "ip"):
        return -scores
    return scores


def _faiss_candidates(prep: _Prepared, index: Any, params: IndexParams, q: torch.Tensor,
                      c: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``c`` fp32 candidates from a FAISS index; scores on our scale, missing ones ``inf``/-1."""
    if params.index == "hnsw":
        index.hnsw.efSearch = params.resolved_ef_search(c)
    dist, idx = index.search(np.ascontiguousarray(q.cpu().numpy()), c)
    scores = _faiss_to_scores(prep, dist, q)
    idx_t = torch.from_numpy(idx)
    return scores.masked_fill(idx_t < 0, math.inf), idx_t


def _torch_candidates(prep: _Prepared, q: torch.Tensor, c: int, db_block: int) -> tuple[torch.Tensor, torch.Tensor]:
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


def _cpu_candidates(prep: _Prepared, q: torch.Tensor, c: int, db_block: int) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`_torch_candidates` on the CPU: each block's scores go into one reused buffer
    and the native :func:`~graphforge.ops.smallest_k` selects from it in one streaming pass;
    the blocks' selections are merged once at the end (ties keep the lower row)."""
    buf = torch.empty(len(q), min(db_block, prep.n)) if prep.gemm_db is not None else None
    parts_s, parts_i = [], []
    for start in range(0, prep.n, db_block):
        stop = min(prep.n, start + db_block)
        s = prep.scores(q, start, stop, out=None if buf is None else buf[:, : stop - start])
        vals, idx = smallest_k(s, min(c, stop - start))
        parts_s.append(vals)
        parts_i.append(idx + start)
    if len(parts_s) == 1:
        return parts_s[0], parts_i[0]
    vals, pos = smallest_k(torch.cat(parts_s, 1), c)
    return vals, torch.cat(parts_i, 1).gather(1, pos)


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


def pair_distances(a: torch.Tensor, b: torch.Tensor, metric: str) -> torch.Tensor:
    """Exact float64 distances between the rows of ``a`` and ``b`` pairwise (``[P, D]`` each -> ``[P]``).

    Args:
        a, b: Row pairs (same shape).
        metric: Any metric of this module.
    """
    metric = canonical_metric(metric)
    if a.shape != b.shape:
        raise DataError(f"pair_distances needs equal shapes, got {tuple(a.shape)} and {tuple(b.shape)}")
    out = torch.empty(len(a), dtype=torch.float64)
    step = max(1, DEFAULT_BLOCK_ELEMENTS // max(1, 4 * a.shape[1]))
    for s in range(0, len(a), step):
        out[s : s + step] = _exact_distances(a[s : s + step], b[s : s + step].unsqueeze(1), metric)[:, 0]
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
        self.metric = canonical_metric(metric)
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
        self._prep = _Prepared(self.database, self.metric, self.device, gemm=not self.use_faiss)
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
            self._faiss = _build_faiss_index(self._prep, self.params)
        if cpu and getattr(self._prep, "_faiss_res", None) is not None:
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
        stats.queries, stats.fallback_queries = len(qs), 0
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
            d_k, i_k, fallbacks = self._search_block(q_cpu, k, c, db_block)
            stats.fallback_queries += fallbacks
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
            return _faiss_candidates(self._prep, self._faiss_index(cpu=c > _FAISS_GPU_MAX_K), self.params, q, c)
        return _torch_candidates(self._prep, q, c, db_block)

    def _search_block(
        self, q_cpu: torch.Tensor, k: int, c: int, db_block: int
    ) -> tuple[torch.Tensor, torch.Tensor, int]:
        prep, db, n = self._prep, self.database, len(self)
        cand_s, cand_i = self._candidates(prep.prepare_queries(q_cpu), c, db_block)
        cand_s, order = torch.sort(cand_s, dim=1)
        cand_i = cand_i.gather(1, order)
        if not self.exact:
            # Approximate: re-score what the index found exactly; the set stays approximate.
            found = cand_i >= 0
            d = _exact_distances(q_cpu, db[cand_i.clamp_min(0)], self.metric).masked_fill(~found, math.inf)
            d, i = _sort_by_distance_then_index(d, cand_i.masked_fill(~found, n))
            i = i.masked_fill(i == n, -1)
            return d[:, :k].contiguous(), i[:, :k].contiguous(), 0
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
        if m == 0 or n == 0 or (radius < 0 and self.metric in NONNEGATIVE_METRICS):
            return empty
        db_block = _db_block(n)
        if batch_size is None:
            batch_size = max(1, min(m, DEFAULT_BLOCK_ELEMENTS // max(1, db_block)))
        parts = []
        for start in range(0, m, batch_size):
            q_cpu = qs[start : start + batch_size]
            qi, ri = self._range_candidates(q_cpu, radius, db_block)
            if len(qi):
                d = pair_distances(q_cpu[qi], self.database[ri], self.metric)
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
            return self._faiss_range_candidates(q, q_cpu, limit)
        qs, rs = [], []
        limit_f = limit.float().to(prep.device).unsqueeze(1)
        for start in range(0, prep.n, db_block):
            hit = torch.nonzero(prep.scores(q, start, min(prep.n, start + db_block)) <= limit_f).cpu()
            qs.append(hit[:, 0])
            rs.append(hit[:, 1] + start)
        return torch.cat(qs), torch.cat(rs)

    def _faiss_range_candidates(self, q: torch.Tensor, q_cpu: torch.Tensor,
                                limit: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        prep = self._prep
        # FAISS takes one radius per call, on its own scale: add back |q|^2 for L2, flip
        # the sign for inner products; the largest per-query limit keeps every candidate.
        if prep.metric in _L2_LIKE:
            faiss_limit = float((limit + q.cpu().double().square().sum(1)).max())
        elif prep.metric in ("cosine", "ip"):
            faiss_limit = float((-limit).min())
        else:
            faiss_limit = float(limit.max())
        index = self._faiss_index(cpu=True)
        if self.params.index == "hnsw":
            index.hnsw.efSearch = self.params.resolved_ef_search(0)
        lims, _, idx = index.range_search(np.ascontiguousarray(q.cpu().numpy()),
                                             np.float32(faiss_limit))
        counts = torch.from_numpy(np.diff(lims).astype(np.int64))
        qi = torch.repeat_interleave(torch.arange(len(q_cpu)), counts)
        return qi, torch.from_numpy(idx.astype(np.int64))


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
    "INDEX_TYPES",
    "METRICS",
    "NONNEGATIVE_METRICS",
    "IndexParams",
    "KNNIndex",
    "SearchStats",
    "as_float_matrix",
    "canonical_metric",
    "exact_knn_search",
    "faiss_gpu_available",
    "ivf_training_sample",
    "knn_recall",
    "pair_distances",
    "resolve_search_device",
]
