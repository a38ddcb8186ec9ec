"""Batched KNN graphs with a different k per point set.

:func:`batched_knn` validates its inputs, then runs the native op
``torch.ops.graphforge.batched_knn`` (C++ on CPU, CUDA on GPU) or, when the extension is
missing, the pure-PyTorch reference. The op's fake kernel (for ``torch.compile`` and
meta tensors) and its autograd formula are registered here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from graphforge.errors import ConfigError, DataError
from graphforge.ops import _extension
from graphforge.ops.reference import accumulation_dtype, batched_knn_reference, kernel_metric

__all__ = ["METRICS", "batched_knn", "dense_batched_knn", "knn_backend"]

#: Canonical names (:mod:`graphforge.neighbors.metrics`) of the metrics the op has kernels
#: for; every alias of them works too (``l2``, ``l1``, ``manhattan``, ``chebyshev``, ...).
METRICS: tuple[str, ...] = ("euclidean", "cosine", "cityblock", "linf", "ip")

_OP_NAME = "graphforge::batched_knn"
_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
#: The largest k passed to the kernels (any larger k is clamped to the set size anyway).
_K_MAX = 2**62


def knn_backend() -> str:
    """Which implementation :func:`batched_knn` uses.

    Returns:
        str: ``"native-cuda+cpu"`` (C++ and CUDA kernels), ``"native-cpu"`` (C++ kernels
        only; CUDA tensors then use the reference) or ``"reference"`` (pure PyTorch).
    """
    return _extension.backend_name()


# ----------------------------------------------------------------------------- autograd


def distance_backward(x: Tensor, edge_index: Tensor, grad_dist: Tensor, metric: str) -> Tensor:
    """Gradient of ``sum(grad_dist * dist)`` with respect to ``x``.

    Recomputes the selected pairs only (``O(E * D)``); the neighbour choice itself is
    piecewise constant and has no gradient. At non-differentiable points (``l2`` / ``l1``
    at equal coordinates, ``linf`` ties, zero vectors for ``cosine``) it returns the zero
    / first-index subgradient.
    """
    acc = accumulation_dtype(x.dtype)
    src, dst = edge_index[0], edge_index[1]
    xs, xd = x[src].to(acc), x[dst].to(acc)
    g = grad_dist.to(acc).unsqueeze(-1)
    if metric == "l2":
        diff = xd - xs
        d = diff.square().sum(-1, keepdim=True).sqrt()
        grad_d = torch.where(d > 0, g * diff / torch.where(d > 0, d, torch.ones_like(d)), torch.zeros_like(diff))
        grad_s = -grad_d
    elif metric == "l1":
        grad_d = g * torch.sign(xd - xs)
        grad_s = -grad_d
    elif metric == "linf":
        diff = xd - xs
        arg = diff.abs().argmax(-1, keepdim=True)
        onehot = torch.zeros_like(diff).scatter_(-1, arg, 1.0)
        grad_d = g * torch.sign(diff) * onehot
        grad_s = -grad_d
    elif metric == "ip":
        grad_d = -g * xs
        grad_s = -g * xd
    elif metric == "cosine":
        ns = xs.norm(dim=-1, keepdim=True)
        nd = xd.norm(dim=-1, keepdim=True)
        ok = (ns > 0) & (nd > 0)
        ns1 = torch.where(ok, ns, torch.ones_like(ns))
        nd1 = torch.where(ok, nd, torch.ones_like(nd))
        us, ud = xs / ns1, xd / nd1
        cos = (us * ud).sum(-1, keepdim=True)
        zero = torch.zeros_like(xs)
        grad_s = torch.where(ok, -g * (ud - cos * us) / ns1, zero)
        grad_d = torch.where(ok, -g * (us - cos * ud) / nd1, zero)
    else:  # pragma: no cover - validated before
        raise ConfigError(f"unknown metric {metric!r}")
    grad_x = torch.zeros(x.shape, dtype=acc, device=x.device)
    grad_x = grad_x.index_add(0, dst, grad_d).index_add(0, src, grad_s)
    return grad_x.to(x.dtype)


def _setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, Tensor]) -> None:
    x, _ptr, _k, metric, _loop = inputs
    _dist, edge_index = output
    ctx.mark_non_differentiable(edge_index)
    ctx.save_for_backward(x, edge_index)
    ctx.metric = metric


def _backward(ctx: Any, grad_dist: Tensor | None, grad_edge_index: Tensor | None) -> tuple[Tensor | None, ...]:
    x, edge_index = ctx.saved_tensors
    grad_x = None
    if grad_dist is not None and ctx.needs_input_grad[0]:
        grad_x = distance_backward(x, edge_index, grad_dist, ctx.metric)
    return grad_x, None, None, None, None


class _ReferenceDistance(torch.autograd.Function):
    """Gives the reference path's ``dist`` the same gradient as the native op."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, edge_index: Tensor, dist: Tensor, metric: str) -> Tensor:
        ctx.save_for_backward(x, edge_index)
        ctx.metric = metric
        return dist.clone()

    @staticmethod
    def backward(ctx: Any, grad_dist: Tensor) -> tuple[Tensor | None, ...]:
        x, edge_index = ctx.saved_tensors
        return distance_backward(x, edge_index, grad_dist, ctx.metric), None, None, None


if _extension._C is not None:

    @torch.library.register_fake(_OP_NAME)
    def _batched_knn_fake(x: Tensor, ptr: Tensor, k: Tensor, metric: str = "l2", loop: bool = False) -> tuple[Tensor, Tensor]:
        """Output shapes of the op: ``dist [E]`` and ``edge_index [2, E]``, E data-dependent."""
        torch._check(x.dim() == 2, lambda: "graphforge::batched_knn: x must be 2-D [N, D]")
        torch._check(ptr.dim() == 1 and k.dim() == 1, lambda: "graphforge::batched_knn: ptr and k must be 1-D")
        num_edges = torch.library.get_ctx().new_dynamic_size()
        return x.new_empty((num_edges,)), x.new_empty((2, num_edges), dtype=torch.long)

    torch.library.register_autograd(_OP_NAME, _backward, setup_context=_setup_context)


# --------------------------------------------------------------------------- validation


def _check_points(x: Any, ndim: int, shape: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise DataError(f"x must be a torch.Tensor {shape}, got {type(x).__name__}")
    if x.dim() != ndim:
        raise DataError(f"x must be {ndim}-D {shape}, got shape {tuple(x.shape)}")
    if x.dtype not in _FLOAT_DTYPES:
        raise DataError(f"x must be float16, bfloat16, float32 or float64, got {x.dtype}")
    return x


def _check_metric(metric: Any) -> str:
    """The kernels' name of ``metric`` (any name or alias of :mod:`graphforge.neighbors.metrics`)."""
    if not isinstance(metric, str):
        raise ConfigError(f"metric must be a string such as 'euclidean', got {metric!r}")
    return kernel_metric(metric)


def _as_index_tensor(value: Any, name: str, device: torch.device) -> Tensor:
    if isinstance(value, Sequence) and len(value) == 0:
        value = torch.empty(0, dtype=torch.long)
    t = value if isinstance(value, Tensor) else torch.as_tensor(value)
    if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
        raise DataError(f"{name} must be an integer tensor, got {t.dtype}")
    if t.dim() != 1:
        raise DataError(f"{name} must be 1-D, got shape {tuple(t.shape)}")
    return t.to(device=device, dtype=torch.long)


def _ptr_from_batch(batch: Any, num_points: int, batch_size: int | None, device: torch.device) -> Tensor:
    b = _as_index_tensor(batch, "batch", device)
    if b.numel() != num_points:
        raise DataError(f"batch must have one entry per point ({num_points}), got {b.numel()}")
    if num_points > 0:
        lo, hi, unsorted = torch.stack([b.min(), b.max(), (b[1:] < b[:-1]).any().long()]).tolist()
        if lo < 0:
            raise DataError("batch entries must be >= 0")
        if unsorted:
            raise DataError("batch must be sorted (points of one set contiguous), as PyG batches are")
        if batch_size is not None and hi >= batch_size:
            raise DataError(f"batch has set index {hi} but batch_size is {batch_size}")
    size = batch_size if batch_size is not None else (int(b.max()) + 1 if num_points > 0 else 0)
    counts = torch.bincount(b, minlength=size)
    return torch.cat([counts.new_zeros(1), counts.cumsum(0)])


def _k_tensor(k: Any, num_sets: int, device: torch.device) -> Tensor:
    if k is None:
        raise ConfigError("k is required: an int or one integer per point set")
    if isinstance(k, (bool, np.bool_)):
        raise ConfigError(f"k must be an int or an integer tensor, got {k!r}")
    if isinstance(k, (int, np.integer)):
        if k < 0:
            raise ConfigError(f"k must be >= 0, got {k}")
        # k is clamped to each set's size anyway; a k beyond int64 means "every neighbour".
        return torch.full((num_sets,), min(int(k), _K_MAX), dtype=torch.long, device=device)
    if not isinstance(k, (Tensor, Sequence)):
        raise ConfigError(f"k must be an int or an integer tensor, got {type(k).__name__}")
    if isinstance(k, Tensor):
        kt = k
    else:
        try:
            kt = torch.as_tensor(k, dtype=torch.long if len(k) == 0 else None)
        except (TypeError, ValueError, RuntimeError, OverflowError):
            raise ConfigError(f"k must hold integers between 0 and 2^63 - 1, got {list(k)[:8]!r}") from None
    if kt.dtype.is_floating_point or kt.dtype.is_complex or kt.dtype == torch.bool:
        raise ConfigError(f"k must hold integers, got {kt.dtype}")
    if kt.dim() == 0:
        kt = kt.expand(num_sets)
    if kt.dim() != 1 or kt.numel() != num_sets:
        raise ConfigError(f"k must be an int or have one entry per point set ({num_sets}), got shape {tuple(kt.shape)}")
    return kt.to(device=device, dtype=torch.long)


def _check_data(x: Tensor, ptr: Tensor, k: Tensor) -> None:
    """Data-dependent checks for the reference path (the native op does its own)."""
    n = x.shape[0]
    checks = torch.stack(
        [
            ptr[0] != 0,
            ptr[-1] != n,
            (ptr[1:] < ptr[:-1]).any() if ptr.numel() > 1 else torch.zeros((), dtype=torch.bool, device=ptr.device),
            (k < 0).any() if k.numel() > 0 else torch.zeros((), dtype=torch.bool, device=k.device),
            ~torch.isfinite(x).all() if x.numel() > 0 else torch.zeros((), dtype=torch.bool, device=x.device),
        ]
    ).tolist()
    if checks[0] or checks[1]:
        raise DataError(f"ptr must start at 0 and end at N = {n}, got ptr[0] = {int(ptr[0])}, ptr[-1] = {int(ptr[-1])}")
    if checks[2]:
        raise DataError("ptr must be non-decreasing")
    if checks[3]:
        raise ConfigError("k must be >= 0")
    if checks[4]:
        raise DataError("x contains NaN or Inf")


def _translate(exc: Exception) -> Exception:
    msg = str(exc).splitlines()[0] if str(exc) else repr(exc)
    msg = msg.replace("graphforge::batched_knn: ", "")
    if msg.startswith("k must") or msg.startswith("unknown metric"):
        return ConfigError(msg)
    return DataError(msg)


# ---------------------------------------------------------------------------------- API


#: fp32 / bf16 points whose largest magnitude is outside [2^-40, 2^40] are searched at a
#: power-of-two scale near 1: their squares and products would overflow (every distance
#: inf) or underflow (every distance 0) in the fp32 accumulation.
_SAFE_MAX, _SAFE_MIN = 2.0**40, 2.0**-40


def _range_guard(x: Tensor, metric: str) -> tuple[Tensor, Tensor | None]:
    """``(x * c, c)`` with ``c`` an exact power of two (1 for well-scaled data), without a device sync."""
    if x.dtype not in (torch.float32, torch.bfloat16) or metric == "cosine" or x.numel() == 0:
        return x, None
    amax = x.detach().abs().amax().float()
    outside = (amax > _SAFE_MAX) | ((amax < _SAFE_MIN) & (amax > 0))
    one = torch.ones((), dtype=torch.float32, device=x.device)
    scale = torch.where(outside & torch.isfinite(amax), torch.ldexp(one, -torch.frexp(amax).exponent), one)
    return x * scale.to(x.dtype), scale


def _run(x: Tensor, ptr: Tensor, k: Tensor, metric: str, loop: bool) -> tuple[Tensor, Tensor]:
    x, scale = _range_guard(x, metric)
    edge_index, dist = _run_scaled(x, ptr, k, metric, loop)
    if scale is not None:  # distances of the scaled points -> distances of the points
        dist = dist / (scale * scale if metric == "ip" else scale).to(dist.dtype)
    return edge_index, dist


def _run_scaled(x: Tensor, ptr: Tensor, k: Tensor, metric: str, loop: bool) -> tuple[Tensor, Tensor]:
    if _extension.native_available(x.device.type):
        try:
            dist, edge_index = torch.ops.graphforge.batched_knn(x, ptr, k, metric, loop)
            return edge_index, dist
        except ValueError as exc:  # TORCH_CHECK_VALUE in the kernels
            if "graphforge::batched_knn" in str(exc):
                raise _translate(exc) from None
            raise
    _check_data(x, ptr, k)
    edge_index, dist = batched_knn_reference(x, ptr, k, metric, loop)
    if x.requires_grad and torch.is_grad_enabled():
        dist = _ReferenceDistance.apply(x, edge_index, dist, metric)
    return edge_index, dist


def batched_knn(
    x: Tensor,
    ptr: Tensor | Sequence[int] | None = None,
    k: int | Tensor | Sequence[int] | None = None,
    metric: str = "l2",
    loop: bool = False,
    *,
    batch: Tensor | None = None,
    batch_size: int | None = None,
) -> tuple[Tensor, Tensor]:
    """K nearest neighbours inside each point set of a batch, with a k per set.

    Each set's points are connected to their k nearest neighbours in the same set. k is
    clamped to the points available (``N_b - 1`` without self-loops); ``k = 0`` gives the
    set no edges. Self-loops are excluded by index, so duplicate points still get exactly
    k neighbours; ties are broken by the lower neighbour index, deterministically.

    Args:
        x (Tensor): points of all sets, concatenated, ``float16`` / ``bfloat16`` /
            ``float32`` / ``float64`` (accumulated in fp32, fp64 for fp64).
        ptr (Tensor, optional): CSR offsets of the sets: set ``b`` is
            ``x[ptr[b]:ptr[b+1]]``. Give either ``ptr`` or ``batch``; with neither, ``x``
            is one set.
        k (int or Tensor): neighbours per query, one value for all sets or one per set.
        metric (str, optional): ``"euclidean"`` (alias ``"l2"``), ``"cosine"``
            (``1 - cos``; a zero vector has ``cos = 0``), ``"cityblock"`` (``"l1"``),
            ``"linf"`` or ``"ip"`` (negative inner product, so smaller is nearer); the
            names of :mod:`graphforge.neighbors.metrics`. (default: ``"l2"``)
        loop (bool, optional): whether a point is a candidate neighbour of itself.
            (default: ``False``)
        batch (Tensor, optional): PyG-style sorted set index of every point, instead of
            ``ptr``.
        batch_size (int, optional): number of sets when ``batch`` is given (trailing empty
            sets); by default ``batch.max() + 1``.

    Returns:
        (Tensor, Tensor): ``edge_index`` (``int64``) in PyG's convention
        (``edge_index[0]`` neighbour, ``edge_index[1]`` query), grouped by query in
        ascending order and sorted by (distance, neighbour index) within a query; and
        ``dist``, the distance of every edge, in ``x.dtype``, differentiable w.r.t. ``x``.

    Shapes:
        - **x**: :math:`(N, D)`; **ptr**: :math:`(B + 1)`; **batch**: :math:`(N)`;
          **k**: scalar or :math:`(B)`
        - **edge_index**: :math:`(2, E)` with :math:`E = \\sum_b N_b \\min(k_b, N_b - 1)`;
          **dist**: :math:`(E)`

    Raises:
        ConfigError: an unknown metric, a negative k or a k of the wrong shape.
        DataError: a malformed ``x`` / ``ptr`` / ``batch``, or NaN / Inf in ``x``.
    """
    x = _check_points(x, 2, "[N, D]")
    metric = _check_metric(metric)
    if ptr is not None and batch is not None:
        raise ConfigError("give either ptr or batch, not both")
    if batch is not None:
        ptr_t = _ptr_from_batch(batch, x.shape[0], batch_size, x.device)
    elif ptr is not None:
        ptr_t = _as_index_tensor(ptr, "ptr", x.device)
        if ptr_t.numel() == 0:
            raise DataError("ptr must have B + 1 >= 1 entries")
    else:
        ptr_t = torch.tensor([0, x.shape[0]], dtype=torch.long, device=x.device)
    k_t = _k_tensor(k, ptr_t.numel() - 1, x.device)
    return _run(x, ptr_t, k_t, metric, bool(loop))


def dense_batched_knn(
    x: Tensor, k: int | Tensor | Sequence[int], metric: str = "l2", loop: bool = False
) -> tuple[Tensor, Tensor]:
    """KNN graphs of a dense batch of equally sized point sets (e.g. CNN feature maps).

    The fast path for ``[B, N, D]`` inputs: the set offsets are implied, so no ``ptr``
    is built from data and nothing is synchronised for it.

    Args:
        x (Tensor): ``[B, N, D]`` points (e.g. a feature map reshaped to
            ``[B, H * W, C]``).
        k (int or Tensor): neighbours per query, one value or one per image ``[B]``.
        metric (str, optional): as in :func:`batched_knn`. (default: ``"l2"``)
        loop (bool, optional): as in :func:`batched_knn`. (default: ``False``)

    Returns:
        (Tensor, Tensor): ``edge_index`` over the flattened ``B * N`` nodes (node
        ``b * N + i`` is point ``i`` of image ``b``), and ``dist``; same conventions as
        :func:`batched_knn`.

    Shapes:
        - **x**: :math:`(B, N, D)`; **k**: scalar or :math:`(B)`
        - **edge_index**: :math:`(2, E)`; **dist**: :math:`(E)`
    """
    x = _check_points(x, 3, "[B, N, D]")
    metric = _check_metric(metric)
    num_sets, n, dim = x.shape
    ptr_t = torch.arange(num_sets + 1, dtype=torch.long, device=x.device) * n
    k_t = _k_tensor(k, num_sets, x.device)
    return _run(x.reshape(num_sets * n, dim), ptr_t, k_t, metric, bool(loop))
