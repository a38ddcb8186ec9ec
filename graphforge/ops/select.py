"""Row-wise selection of the k smallest scores.

:func:`smallest_k` is the selection step of graphforge's dataset-scale exact search
(:mod:`graphforge.neighbors`): for each row of a ``[M, N]`` score block it returns the k
smallest values and their columns, sorted by (value, column). On the CPU the native op
``torch.ops.graphforge.smallest_k`` streams each row once with a vectorised
reject-16-at-a-time scan (several times faster than ``torch.topk`` on the wide blocks a
search produces); elsewhere, or without the extension, a stable sort gives the same
answer.

:func:`smallest_k_affine` does the same for the scores ``bias[j] + alpha * dots[i, j]`` of
an int32 matrix (the int8 candidate pass of the exact search: ``dots`` from an int8 GEMM),
forming them a cache-sized chunk at a time instead of as a full matrix.
"""

from __future__ import annotations

import torch
from torch import Tensor

from graphforge.errors import DataError
from graphforge.ops import _extension

__all__ = ["merge_smallest_k", "smallest_k", "smallest_k_affine", "smallest_k_affine_reference", "smallest_k_reference"]

_OP_NAME = "graphforge::smallest_k"
_AFFINE_OP_NAME = "graphforge::smallest_k_affine"
_INT32 = (-(2**31), 2**31 - 1)


def smallest_k_reference(scores: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Pure-PyTorch :func:`smallest_k`: a stable sort of each row, cut at ``k``."""
    values, indices = torch.sort(scores, dim=1, stable=True)
    return values[:, :k].contiguous(), indices[:, :k].contiguous()


def smallest_k(scores: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The ``k`` smallest entries of each row, sorted by (value, column).

    Ties are broken by the lower column, so the result is deterministic (``torch.topk``
    makes no such promise).

    Args:
        scores: ``[M, N]`` float32 or float64, free of NaN (the order of NaN entries is
            unspecified); rows may be a strided view as long as each row is contiguous.
        k: How many entries per row, ``0 <= k <= N``.

    Returns:
        ``(values [M, k], indices [M, k] int64)``.

    Raises:
        DataError: If ``scores`` is not a 2-D floating-point tensor or ``k`` is out of range.
    """
    if not isinstance(scores, Tensor) or scores.dim() != 2:
        shape = tuple(scores.shape) if isinstance(scores, Tensor) else type(scores).__name__
        raise DataError(f"scores must be a 2-D tensor [M, N], got {shape}")
    if not scores.is_floating_point():
        raise DataError(f"scores must be floating point, got {scores.dtype}")
    n = scores.shape[1]
    if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= n:
        raise DataError(f"k must be an integer in [0, {n}] (the number of columns), got {k!r}")
    if (
        scores.device.type == "cpu"
        and scores.dtype in (torch.float32, torch.float64)
        and _extension.native_available("cpu")
    ):
        return torch.ops.graphforge.smallest_k(scores, k)
    return smallest_k_reference(scores, k)


def merge_smallest_k(values: list[Tensor], indices: list[Tensor], k: int) -> tuple[Tensor, Tensor]:
    """The ``k`` smallest over per-block selections, ties to the lower index.

    Args:
        values: Each block's selection, ``[M, k_b]`` floating point, sorted by (value, index)
            as :func:`smallest_k` returns it.
        indices: Their global indices, ``[M, k_b]``; the blocks in ascending index order, so
            the stable merge breaks ties by the lower index.
        k: How many to keep, at most the total.

    Returns:
        ``(values [M, k], indices [M, k])``.
    """
    if len(values) == 1:
        return values[0], indices[0]
    merged, pos = smallest_k(torch.cat(values, 1), k)
    return merged, torch.cat(indices, 1).gather(1, pos)


def smallest_k_affine_reference(dots: Tensor, bias: Tensor, alpha: int, k: int) -> tuple[Tensor, Tensor]:
    """Pure-PyTorch :func:`smallest_k_affine`: the scores in int64, a stable sort, cut at ``k``."""
    scores = bias.long().unsqueeze(0) + alpha * dots.long()
    values, indices = smallest_k_reference(scores, k)
    return values.to(torch.int32), indices


def smallest_k_affine(dots: Tensor, bias: Tensor, alpha: int, k: int) -> tuple[Tensor, Tensor]:
    """The ``k`` smallest of ``bias[j] + alpha * dots[i, j]`` in each row, sorted by (value, column).

    Integer scores, so the order is exact; ties are broken by the lower column. The caller
    must keep every score inside int32 (``|bias| + |alpha| * |dots| < 2**31``); the native
    op does not check it.

    Args:
        dots: ``[M, N]`` int32; rows may be a strided view as long as each row is contiguous.
        bias: ``[N]`` int32, one per column.
        alpha: Integer factor of ``dots``.
        k: How many entries per row, ``0 <= k <= N``.

    Returns:
        ``(values [M, k] int32, indices [M, k] int64)``.

    Raises:
        DataError: If the shapes or dtypes are wrong, or ``alpha`` or ``k`` is out of range.
    """
    if not isinstance(dots, Tensor) or dots.dim() != 2 or dots.dtype != torch.int32:
        raise DataError(f"dots must be a 2-D int32 tensor [M, N], got {_describe(dots)}")
    n = dots.shape[1]
    if not isinstance(bias, Tensor) or bias.dtype != torch.int32 or tuple(bias.shape) != (n,):
        raise DataError(f"bias must be an int32 tensor [{n}] (one per column), got {_describe(bias)}")
    if isinstance(alpha, bool) or not isinstance(alpha, int) or not _INT32[0] <= alpha <= _INT32[1]:
        raise DataError(f"alpha must be an integer that fits in int32, got {alpha!r}")
    if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= n:
        raise DataError(f"k must be an integer in [0, {n}] (the number of columns), got {k!r}")
    if dots.device.type == "cpu" and bias.device.type == "cpu" and _extension.native_available("cpu"):
        return torch.ops.graphforge.smallest_k_affine(dots, bias, alpha, k)
    return smallest_k_affine_reference(dots, bias, alpha, k)


def _describe(t: object) -> str:
    return f"{tuple(t.shape)} {t.dtype}" if isinstance(t, Tensor) else type(t).__name__


if _extension._C is not None:

    @torch.library.register_fake(_OP_NAME)
    def _smallest_k_fake(scores: Tensor, k: int) -> tuple[Tensor, Tensor]:
        """Output shapes of the op: ``[M, k]`` values and int64 indices."""
        torch._check(scores.dim() == 2, lambda: "graphforge::smallest_k: scores must be 2-D")
        return scores.new_empty((scores.shape[0], k)), scores.new_empty((scores.shape[0], k), dtype=torch.long)

    @torch.library.register_fake(_AFFINE_OP_NAME)
    def _smallest_k_affine_fake(dots: Tensor, bias: Tensor, alpha: int, k: int) -> tuple[Tensor, Tensor]:
        """Output shapes of the op: ``[M, k]`` int32 values and int64 indices."""
        torch._check(dots.dim() == 2, lambda: "graphforge::smallest_k_affine: dots must be 2-D")
        return dots.new_empty((dots.shape[0], k)), dots.new_empty((dots.shape[0], k), dtype=torch.long)
