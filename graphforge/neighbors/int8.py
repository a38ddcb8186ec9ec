"""An int8 candidate pass for data on an 8-bit grid, made exact by re-ranking.

Images stored as bytes (MNIST, Fashion-MNIST, CIFAR, most photos) take at most 256 values
per pixel, and stay on an evenly spaced grid of 256 levels through the usual scaling
(``x / 255``, ``(x - mean) / std`` with one mean and std for all pixels). Such data can be
written exactly as ``low + step * level`` with an integer ``level`` in ``[0, 255]``, and
euclidean distances between such rows are ``step * |level_q - level_x|``: an integer
computation. On processors with VNNI (or AMX) an int8 matrix product runs 2-3x faster than
an fp32 one, so :class:`Int8Database` finds the candidates of the exact search
(:mod:`graphforge.neighbors.search`) with one int8 GEMM per block (``torch._int_mm``)
and the native :func:`~graphforge.ops.smallest_k_affine`, which selects the smallest
``|x|^2 - 2 q.x`` of each row straight from the int32 products.

Nothing is approximate: each row's distance from its grid point (its *residual*, at
fp32 rounding level for grid data) is measured, and the search certifies every answer
with ``|d(q, x) - step * |level_q - level_x|| <= residual(q) + residual(x)``, re-ranking the
candidates from the original rows in float64. Queries that are off the grid, or whose
candidates cannot be certified, are searched by the fp32 pass, so the answer is the same
as without the int8 pass, bit for bit.

``GRAPHFORGE_KNN_INT8`` chooses: ``auto`` (default: when the CPU has VNNI or AMX and the
database is on a grid), ``on`` (whenever the database is on a grid, on any CPU: slower
without VNNI, but the same answer; the tests use it), ``off``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch

from graphforge.checks import check_env_choice
from graphforge.machine import cpu_flags
from graphforge.ops import merge_smallest_k, smallest_k_affine

__all__ = [
    "INT8_ENV",
    "INT8_SETTINGS",
    "Grid",
    "Int8Database",
    "cpu_int8_features",
    "detect_grid",
    "int8_setting",
]

log = logging.getLogger("graphforge")

#: The environment variable that chooses the int8 candidate pass.
INT8_ENV = "GRAPHFORGE_KNN_INT8"
#: Its accepted values.
INT8_SETTINGS: tuple[str, ...] = ("auto", "on", "off")
#: Levels of the grid (int8).
LEVELS = 256
#: A row is on the grid when its residual norm is at most this fraction of a step.
GRID_TOLERANCE = 0.01
#: Below this many rows ``auto`` does not bother (the fp32 pass is already quick).
AUTO_MIN_ROWS = 2048
#: Values sampled to find the grid step before the full check.
_SAMPLE = 1 << 18
_ROW_CHUNK = 8192
_FP32_EPS = 2.0**-24
_CPU_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


def cpu_int8_features() -> frozenset[str]:
    """The CPU's fast int8 dot-product features (``avx512_vnni``, ``avx_vnni``, ``amx_int8``).

    Read from ``/proc/cpuinfo``; empty where it cannot be read (then ``auto`` keeps the
    fp32 pass).
    """
    return cpu_flags() & frozenset(_CPU_FLAGS)


def int8_setting() -> str:
    """``GRAPHFORGE_KNN_INT8``: ``auto`` (default), ``on`` or ``off``.

    Raises:
        ConfigError: If it holds another value.
    """
    return check_env_choice(INT8_ENV, INT8_SETTINGS)


@dataclass(frozen=True)
class Grid:
    """Values ``low + step * level`` for integer ``level`` in ``[0, 255]``."""

    low: float
    step: float


def detect_grid(x: torch.Tensor) -> Grid | None:
    """The 256-level grid that the values of ``x`` lie on, or ``None``.

    The step is the range of ``x`` over the number of smallest gaps (between distinct
    values of a sample) that it spans, which must be at most 255. Whether each row really is on it is
    measured afterwards (:class:`Int8Database`).

    Args:
        x: float32 ``[N, D]``.
    """
    flat = x.reshape(-1)
    if flat.numel() == 0:
        return None
    sample = flat[:: max(1, flat.numel() // _SAMPLE)]
    values = torch.unique(sample)
    if len(values) < 2 or len(values) > LEVELS:
        return None
    lo, hi = (float(v) for v in torch.aminmax(flat))
    gaps = torch.diff(values.double())
    step = float(gaps.min())
    if not math.isfinite(step) or step <= 0 or not math.isfinite(lo) or not math.isfinite(hi):
        return None
    spans = round((hi - lo) / step)
    if spans > LEVELS - 1:
        return None
    # The smallest gap carries the fp32 rounding of two values; the whole range, over
    # its number of steps, is as precise as one value.
    return Grid(low=lo, step=(hi - lo) / spans)


class Int8Database:
    """The database as int8 grid levels, with each row's squared level norm and residual.

    Args:
        database: float32 ``[N, D]`` CPU rows.
        grid: Their grid (:func:`detect_grid`).

    Attributes:
        on_grid: Whether every row is within :data:`GRID_TOLERANCE` of a step of the grid
            (the pass is only worth using then).
        residual: The largest row residual norm (float, upper bound).
    """

    def __init__(self, database: torch.Tensor, grid: Grid) -> None:
        self.grid = grid
        self.n, self.dim = (int(s) for s in database.shape)
        self.levels, sq, res = self.quantize(database)
        self.sq_norms = sq.to(torch.int32)  # the bias of smallest_k_affine: |x_int|^2
        self.residual = float(res.max()) if self.n else 0.0
        self.on_grid = self.residual <= GRID_TOLERANCE * grid.step
        self._buffers: dict[tuple[int, int], torch.Tensor] = {}

    @staticmethod
    def fits(dim: int) -> bool:
        """Whether every score of ``dim`` features fits in int32 (``|S| <= 3 * D * 128^2``)."""
        return 3 * dim * 128 * 128 < 2**31

    def quantize(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Grid levels of ``rows`` (as int8, ``level - 128``), their squared norms and residuals.

        Returns:
            ``(levels int8 [M, D], squared norms int64 [M], residual norms float64 [M])``.
            The residual is an upper bound on ``|row - (low + step * level)|`` (it covers
            the fp32 rounding of its own computation). Values off the grid's range are
            clamped, so their residual is large.
        """
        low, step = self.grid.low, self.grid.step
        m, d = rows.shape
        levels = torch.empty(m, d, dtype=torch.int8)
        sq = torch.empty(m, dtype=torch.int64)
        res = torch.empty(m, dtype=torch.float64)
        # fp32 rounding of (low + step * level) and of the difference: a few ulps per
        # element of the largest magnitude, over sqrt(D) elements.
        mag = max(abs(low), abs(low + step * (LEVELS - 1)))
        slack = 8 * _FP32_EPS * mag * math.sqrt(max(d, 1))
        norm_rounding = 1 + 2 * d * _FP32_EPS  # the fp32 norm of the residual itself
        for s in range(0, m, _ROW_CHUNK):
            x = rows[s : s + _ROW_CHUNK]
            t = torch.round((x - low) / step).clamp_(0, LEVELS - 1)
            res[s : s + len(x)] = torch.linalg.vector_norm(x - (t * step + low), dim=1).double() * norm_rounding + slack
            t -= 128
            levels[s : s + len(x)] = t
            # Integers below 2^24 (D * 128^2 for D <= 1024): exact in float32; else int64.
            sq[s : s + len(x)] = (t.square() if d <= 1024 else t.long().square()).sum(1)
        return levels, sq, res

    def _buffer(self, rows: int, cols: int) -> torch.Tensor:
        buf = self._buffers.get((rows, cols))
        if buf is None:
            self._buffers.clear()
            buf = self._buffers[(rows, cols)] = torch.empty(rows, cols, dtype=torch.int32)
        return buf

    def candidates(
        self, q_levels: torch.Tensor, q_sq: torch.Tensor, c: int, db_block: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``c`` nearest rows of each query on the grid, by ``(grid distance, row)``.

        Args:
            q_levels: int8 ``[B, D]`` query levels (:meth:`quantize`).
            q_sq: int64 ``[B]`` their squared level norms.
            c: Candidates per query, ``1 <= c <= N``.
            db_block: Database rows per int8 GEMM.

        Returns:
            ``(grid distances float64 [B, c] ascending, row indices int64 [B, c])``; the
            distances are ``step * |level_q - level_x|``, exact up to float64 rounding.
        """
        a = q_levels.contiguous()
        parts_s, parts_i = [], []
        for start in range(0, self.n, db_block):
            stop = min(self.n, start + db_block)
            dots = torch._int_mm(a, self.levels[start:stop].T, out=self._buffer(len(a), stop - start))
            vals, idx = smallest_k_affine(dots, self.sq_norms[start:stop], -2, min(c, stop - start))
            parts_s.append(vals)
            parts_i.append(idx + start)
        scores, idx = merge_smallest_k([s.double() for s in parts_s], parts_i, c)
        squared = (scores + q_sq.double().unsqueeze(1)).clamp_min_(0)  # exact integers
        return squared.sqrt_().mul_(self.grid.step), idx
