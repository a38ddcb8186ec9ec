"""One vocabulary of metrics: a :class:`Metric` object per metric, looked up by name or alias.

Every part of graphforge that measures how near two rows are — the native
:func:`~graphforge.ops.batched_knn` op, ``dyn_knn``, similarity graphs, the ``knn``
classifier, ``scores`` and the SOM — resolves its ``metric`` option here, so the same
names and aliases work everywhere:

============  ==========================================  =====================  ===========
name          aliases                                     distance               range
============  ==========================================  =====================  ===========
euclidean     ``l2``                                      ``|a - b|``            [0, inf)
sqeuclidean                                               ``|a - b|^2``          [0, inf)
cosine                                                    ``1 - cos(a, b)``      [0, 2]
chord                                                     ``|a/|a| - b/|b||``    [0, 2]
cityblock     ``l1``, ``manhattan``                       ``sum |a_i - b_i|``    [0, inf)
linf          ``chebyshev``, ``max``, ``maxnorm``          ``max |a_i - b_i|``    [0, inf)
ip            ``inner_product``, ``dot``                  ``-<a, b>``            (-inf, inf)
============  ==========================================  =====================  ===========

A zero vector has cosine similarity 0 to everything (as in scikit-learn) and stays the
origin under ``chord``. Every distance is clamped to its metric's range, so rounding can
never give a negative cosine distance or a similarity above 1.

``cosine`` and ``ip`` are *similarities* to a user: a similarity graph's threshold and
edge scores are ``cos`` and ``<a, b>``; :meth:`Metric.score` and
:meth:`Metric.radius` convert between that score and the distance.

This module imports only torch and graphforge's error types.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from graphforge.errors import ConfigError

__all__ = [
    "METRICS",
    "METRIC_ALIASES",
    "NONNEGATIVE_METRICS",
    "Metric",
    "canonical_metric",
    "get_metric",
    "list_metrics",
    "unit_rows",
]


def unit_rows(x: Tensor) -> Tensor:
    """Rows of ``x`` scaled to unit L2 norm in float64 (zero rows stay zero)."""
    x = x.double()
    norms = x.norm(dim=-1, keepdim=True)
    return torch.where(norms > 0, x / norms.clamp_min(1e-300), torch.zeros_like(x))


# Exact float64 distances between ``q`` ``[B, 1, D]`` and ``rows`` ``[B, C, D]`` (a private
# float64 copy each function may overwrite) -> ``[B, C]``.
def _euclidean(q: Tensor, rows: Tensor) -> Tensor:
    return rows.sub_(q).square_().sum(-1).sqrt_()


def _sqeuclidean(q: Tensor, rows: Tensor) -> Tensor:
    return rows.sub_(q).square_().sum(-1)


def _cityblock(q: Tensor, rows: Tensor) -> Tensor:
    return rows.sub_(q).abs_().sum(-1)


def _linf(q: Tensor, rows: Tensor) -> Tensor:
    if rows.shape[-1] == 0:
        return rows.new_zeros(rows.shape[:-1])
    return rows.sub_(q).abs_().amax(-1)


def _ip(q: Tensor, rows: Tensor) -> Tensor:
    return rows.mul_(q).sum(-1).neg_()


def _chord(q: Tensor, rows: Tensor) -> Tensor:
    return (unit_rows(rows) - unit_rows(q)).square_().sum(-1).sqrt_()


def _cosine(q: Tensor, rows: Tensor) -> Tensor:
    denom = q.norm(dim=-1) * rows.norm(dim=-1)
    dots = (rows * q).sum(-1)
    sim = torch.where(denom > 0, dots / denom.clamp_min(1e-300), torch.zeros_like(dots))
    return 1.0 - sim


@dataclass(frozen=True, eq=False)
class Metric:
    """One metric: its names, how to compute it exactly, and what the search needs to know.

    Attributes:
        name: Canonical name (``euclidean``, ``cosine``, ...).
        aliases: Other accepted names (``l2``, ``l1``, ``manhattan``, ...).
        summary: One line for listings and docs.
        family: The fp32 search scale: ``l2`` (``|x|^2 - 2 q.x``: euclidean, sqeuclidean,
            chord), ``ip`` (``-q.x``: cosine, ip), ``l1`` or ``linf`` (the distance itself).
        squared: Whether the distance is the squared euclidean one (``sqeuclidean``).
        normalized: Whether rows are compared after scaling to unit norm (cosine, chord).
        translation_invariant: Whether shifting every row by one vector keeps the distances
            (so the search may centre the data for tighter fp32 error bounds).
        similarity: Whether users see a similarity (``cos``, ``<a, b>``) instead of the
            distance (similarity-graph thresholds, edge scores, ``scores``).
        lower, upper: The range of the distance; results are clamped to it.
        score_offset: A similarity's score is ``score_offset - distance`` (1 for cosine,
            0 for ip).
        op_name: The metric's name in the native :func:`~graphforge.ops.batched_knn` op
            (``None``: the op has no kernel for it).
    """

    name: str
    aliases: tuple[str, ...]
    summary: str
    family: str
    _exact: Callable[[Tensor, Tensor], Tensor] = field(repr=False)
    squared: bool = False
    normalized: bool = False
    translation_invariant: bool = False
    similarity: bool = False
    lower: float = 0.0
    upper: float = math.inf
    op_name: str | None = None
    score_offset: float = 0.0

    @property
    def names(self) -> tuple[str, ...]:
        """The canonical name followed by the aliases."""
        return (self.name, *self.aliases)

    @property
    def nonnegative(self) -> bool:
        """Whether the distance is never negative (a negative radius finds nothing)."""
        return self.lower >= 0

    @property
    def score_name(self) -> str:
        """``"similarity"`` or ``"distance"``: what :meth:`score` returns."""
        return "similarity" if self.similarity else "distance"

    def clamp(self, distances: Tensor) -> Tensor:
        """``distances`` clamped to the metric's range (in place when possible)."""
        if self.lower > -math.inf or self.upper < math.inf:
            return distances.clamp_(min=None if self.lower == -math.inf else self.lower,
                                    max=None if self.upper == math.inf else self.upper)
        return distances

    def distances(self, q: Tensor, rows: Tensor) -> Tensor:
        """Exact float64 distances of queries ``q`` ``[B, D]`` to their own rows ``[B, C, D]`` -> ``[B, C]``.

        Computed from the differences themselves (no ``|a|^2 + |b|^2 - 2ab`` cancellation)
        and clamped to the metric's range.
        """
        return self.clamp(self._exact(q.double().unsqueeze(1), rows.to(torch.float64, copy=True)))

    def pairwise(self, a: Tensor, b: Tensor, *, block_elements: int = 1 << 24) -> Tensor:
        """Exact float64 distances between every row of ``a`` ``[M, D]`` and every row of ``b`` ``[N, D]`` -> ``[M, N]``.

        Rows of ``a`` are taken in blocks so at most ``block_elements`` float64 values of
        differences are held at once.
        """
        if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
            raise ConfigError(f"pairwise distances need [M, D] and [N, D], got {tuple(a.shape)} and {tuple(b.shape)}")
        out = torch.empty(len(a), len(b), dtype=torch.float64)
        step = max(1, block_elements // max(1, b.numel()))
        for s in range(0, len(a), step):
            out[s : s + step] = self.distances(a[s : s + step], b.unsqueeze(0).expand(len(a[s : s + step]), -1, -1))
        return out

    def score(self, distances: Tensor) -> Tensor:
        """The user-facing score of ``distances``: ``1 - d`` for cosine, ``-d`` for ip, else ``d``."""
        if not self.similarity:
            return distances
        return self.score_offset - distances

    def radius(self, threshold: float) -> float:
        """The distance radius that keeps exactly the pairs whose :meth:`score` passes ``threshold``."""
        return float(self.score_offset - threshold) if self.similarity else float(threshold)

    def passes(self, scores: Tensor, threshold: float) -> Tensor:
        """Which ``scores`` pass ``threshold`` (``>=`` for similarities, ``<=`` for distances)."""
        return scores >= threshold if self.similarity else scores <= threshold

    def op(self) -> str:
        """The metric's name in the native op.

        Raises:
            ConfigError: If the op has no kernel for this metric.
        """
        if self.op_name is None:
            supported = ", ".join(m.name for m in _METRICS if m.op_name)
            raise ConfigError(f"metric {self.name!r} is not supported by batched_knn; choose one of: {supported}")
        return self.op_name

    def __repr__(self) -> str:
        return f"Metric({self.name!r})"


_METRICS: tuple[Metric, ...] = (
    Metric("euclidean", ("l2",), "euclidean distance |a - b|", "l2", _euclidean,
           translation_invariant=True, op_name="l2"),
    Metric("sqeuclidean", (), "squared euclidean distance |a - b|^2", "l2", _sqeuclidean,
           squared=True, translation_invariant=True),
    Metric("cosine", (), "cosine distance 1 - cos(a, b); its score is the cosine similarity", "ip", _cosine,
           normalized=True, similarity=True, upper=2.0, op_name="cosine", score_offset=1.0),
    Metric("chord", (), "euclidean distance between the unit-normalised rows, sqrt(2 - 2 cos)", "l2", _chord,
           normalized=True, upper=2.0),
    Metric("cityblock", ("l1", "manhattan"), "city block (L1) distance sum |a_i - b_i|", "l1", _cityblock,
           translation_invariant=True, op_name="l1"),
    Metric("linf", ("chebyshev", "max", "maxnorm"), "max-norm (L-inf) distance max |a_i - b_i|", "linf", _linf,
           translation_invariant=True, op_name="linf"),
    Metric("ip", ("inner_product", "dot"), "inner product; its distance is -<a, b>, its score <a, b>", "ip", _ip,
           similarity=True, lower=-math.inf, op_name="ip"),
)

_BY_NAME: dict[str, Metric] = {name: m for m in _METRICS for name in m.names}
#: Every accepted name -> canonical name.
METRIC_ALIASES: dict[str, str] = {name: m.name for name, m in _BY_NAME.items()}
#: Every accepted name (canonical names and aliases), sorted.
METRICS: tuple[str, ...] = tuple(sorted(_BY_NAME))
#: Canonical names of the metrics whose distance is never negative.
NONNEGATIVE_METRICS: frozenset[str] = frozenset(m.name for m in _METRICS if m.nonnegative)


def get_metric(metric: str | Metric, choices: tuple[str, ...] | None = None, *, user: str | None = None) -> Metric:
    """Look a metric up by name or alias (case-insensitive).

    Args:
        metric: A name, an alias, or a :class:`Metric` (returned as is).
        choices: Canonical names the caller supports; others are refused.
        user: What refuses them, for the message (``"similarity graphs"``).

    Raises:
        ConfigError: If the name is unknown (or not among ``choices``), listing the valid ones.
    """
    found = metric if isinstance(metric, Metric) else _BY_NAME.get(str(metric).strip().lower())
    if found is None or (choices is not None and found.name not in choices):
        valid = choices if choices is not None else tuple(m.name for m in _METRICS)
        aliases = sorted(a for m in _METRICS if m.name in valid for a in m.aliases)
        hint = f" (aliases: {', '.join(aliases)})" if aliases else ""
        if found is not None:
            where = f"by {user}" if user else "here"
            raise ConfigError(f"metric {found.name!r} is not supported {where}; choose one of: {', '.join(valid)}{hint}")
        raise ConfigError(f"unknown metric {metric!r}; choose one of: {', '.join(valid)}{hint}")
    return found


def canonical_metric(metric: str | Metric) -> str:
    """Return the canonical name of ``metric`` (``l2`` -> ``euclidean``, ``l1`` -> ``cityblock``).

    Raises:
        ConfigError: If the metric is unknown.
    """
    return get_metric(metric).name


def list_metrics() -> list[Metric]:
    """Every metric, in the order of the table above."""
    return list(_METRICS)
