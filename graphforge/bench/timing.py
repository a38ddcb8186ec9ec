"""Timing helpers shared by the benchmarks: medians of synchronised runs and the
measured matmul speed that compute floors are computed from."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


def sync(device: torch.device) -> None:
    """Wait for queued CUDA work on ``device`` (no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(fn: Callable[[], object], repeats: int, warmup: int, device: torch.device) -> float:
    """Median wall time of ``fn`` in seconds over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def network_steps(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                  precision: str = "fp32") -> tuple[Callable[[], None], Callable[[], None]]:
    """One AdamW training step and one inference batch of ``net`` on the fixed batch ``(x, y)``.

    Both run their forward pass at ``precision`` (``fp32`` or ``bf16``, as ``--precision``),
    with the loss in fp32, as graphforge's training loop does.
    """
    from graphforge.engine.precision import autocast

    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    device = x.device

    def train_step() -> None:
        net.train()
        opt.zero_grad(set_to_none=True)
        with autocast(precision, device):
            logits = net(x)
        torch.nn.functional.cross_entropy(logits.float(), y).backward()
        opt.step()

    @torch.no_grad()
    def infer_step() -> None:
        net.eval()
        with autocast(precision, device):
            net(x)

    return train_step, infer_step


def interleaved_median_seconds(fns: dict[str, Callable[[], object]], repeats: int, warmup: int,
                               device: torch.device) -> dict[str, float]:
    """Median wall time of each of ``fns`` in seconds, timed in turn (A, B, A, B, ...).

    Interleaving spreads a noisy machine's slow spells over every function alike, so their
    ratios hold even when the absolute figures drift.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    sync(device)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def matmul_gflops(device: torch.device | None = None, size: int | None = None, repeats: int = 10,
                  blas: str = "torch") -> float:
    """Measured fp32 matrix-product speed on ``device`` in GFLOP/s: the compute ceiling.

    Args:
        device: Where to measure (default: CPU).
        size: Side of the square matrices (default 2048 on the CPU, 8192 on a GPU).
        repeats: Timed runs (the median is used).
        blas: ``"torch"`` (``torch.mm``) or, on the CPU, ``"numpy"`` (NumPy's BLAS, which
            graphforge's search may use instead: see :mod:`graphforge.neighbors.gemm`).
    """
    device = device or torch.device("cpu")
    n = size or (2048 if device.type == "cpu" else 8192)
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    if blas == "numpy" and device.type == "cpu":
        an, bn = a.numpy(), b.numpy()
        product: Callable[[], object] = lambda: an @ bn  # noqa: E731
    else:
        product = lambda: torch.mm(a, b)  # noqa: E731
    return 2.0 * n**3 / median_seconds(product, repeats, 2, device) / 1e9


def knn_floor_seconds(n_train: int, n_test: int, dim: int, gflops: float) -> float:
    """Seconds the distance GEMM alone needs at ``gflops``: ``2 * n_train * n_test * dim`` FLOPs."""
    return 2.0 * n_train * n_test * dim / (gflops * 1e9)
