"""The faster fp32 matrix product on this CPU: torch's BLAS or NumPy's.

The exact dataset-scale search (:mod:`graphforge.neighbors`) spends almost all its time
in one large fp32 GEMM per block. torch's x86 wheels use Intel MKL, NumPy's PyPI wheels
OpenBLAS, and which is faster depends on the processor and on the shape: on the AMD EPYC
development machine OpenBLAS ran the search's ``[1097 x 784] x [784 x 30000]`` blocks at
~150-170 GFLOP/s against MKL's ~125-140, while square products were within 5 %.

So a search does not guess: a :class:`GemmChooser` runs its first blocks alternately in
both libraries, timed, and then keeps the faster per FLOP for the rest of the search (and
later searches of the same index). Both give correct results; only the speed differs. The
environment variable ``GRAPHFORGE_CPU_GEMM=torch|numpy`` forces one (``auto``, the default,
chooses). NumPy is only tried when its BLAS runs as many threads as torch
(``torch.set_num_threads`` is respected), so the choice never oversubscribes the cores.
"""

from __future__ import annotations

import logging
import time
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

from graphforge.checks import check_env_choice

__all__ = [
    "CPU_GEMM_BACKENDS",
    "CPU_GEMM_ENV",
    "GemmChooser",
    "cpu_gemm_setting",
    "matmul_nt",
    "numpy_blas_threads",
]

log = logging.getLogger(__name__)

#: Accepted values of ``GRAPHFORGE_CPU_GEMM``.
CPU_GEMM_BACKENDS: tuple[str, ...] = ("auto", "torch", "numpy")
#: The environment variable that forces a backend.
CPU_GEMM_ENV = "GRAPHFORGE_CPU_GEMM"


@lru_cache(maxsize=1)
def numpy_blas_threads() -> int | None:
    """Threads of NumPy's BLAS (via threadpoolctl), or ``None`` when it cannot be told."""
    try:
        from threadpoolctl import threadpool_info  # noqa: PLC0415
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return None
    for lib in threadpool_info():
        if lib.get("user_api") == "blas" and "numpy" in str(lib.get("filepath", "")):
            return int(lib["num_threads"])
    return None


def cpu_gemm_setting() -> str:
    """The requested CPU GEMM library: ``auto`` (default), ``torch`` or ``numpy``.

    ``numpy`` falls back to ``torch`` when NumPy's BLAS runs a different number of
    threads than torch (it would oversubscribe or underuse the cores).

    Raises:
        ConfigError: If ``GRAPHFORGE_CPU_GEMM`` holds an unknown value.
    """
    value = check_env_choice(CPU_GEMM_ENV, CPU_GEMM_BACKENDS)
    if value != "torch" and numpy_blas_threads() != torch.get_num_threads():
        return "torch"
    return value


def matmul_nt(a: Tensor, b: Tensor, out: Tensor | None = None, *, backend: str = "torch") -> Tensor:
    """``a @ b.T`` for 2-D float32 CPU tensors, written into ``out`` when given.

    Args:
        a: ``[M, K]`` float32, C-contiguous.
        b: ``[N, K]`` float32 (rows are the columns of the product), C-contiguous.
        out: Optional ``[M, N]`` float32 destination with contiguous rows (it may be a row
            slice of a larger buffer).
        backend: ``"torch"`` or ``"numpy"``.

    Returns:
        The ``[M, N]`` product (``out`` itself when given).
    """
    if out is None:
        out = torch.empty((a.shape[0], b.shape[0]), dtype=a.dtype, device=a.device)
    if backend == "numpy" and a.dtype == torch.float32 and a.device.type == "cpu":
        np.matmul(a.numpy(), b.numpy().T, out=out.numpy())
        return out
    return torch.mm(a, b.T, out=out)


class GemmChooser:
    """Runs a recurring CPU GEMM in the library that proves faster on it.

    While choosing, calls alternate between torch and NumPy and are timed (seconds per
    FLOP); after ``trials`` calls of each, the faster one is used from then on. With
    ``GRAPHFORGE_CPU_GEMM`` set (or NumPy unusable) there is nothing to choose.

    Args:
        trials: Timed calls of each library before choosing. (default: ``2``)
    """

    def __init__(self, trials: int = 2) -> None:
        self.trials = trials
        setting = cpu_gemm_setting()
        self.backend: str | None = None if setting == "auto" else setting
        self._times: dict[str, list[float]] = {"torch": [], "numpy": []}

    def __call__(self, a: Tensor, b: Tensor, out: Tensor | None = None) -> Tensor:
        """``a @ b.T`` (see :func:`matmul_nt`)."""
        if self.backend is not None:
            return matmul_nt(a, b, out, backend=self.backend)
        backend = "torch" if len(self._times["torch"]) <= len(self._times["numpy"]) else "numpy"
        start = time.perf_counter()
        result = matmul_nt(a, b, out, backend=backend)
        flops = max(1, a.shape[0] * b.shape[0] * a.shape[1])
        self._times[backend].append((time.perf_counter() - start) / flops)
        if len(self._times["numpy"]) >= self.trials:
            best = {name: min(times) for name, times in self._times.items()}
            self.backend = min(best, key=best.__getitem__)
            log.debug("cpu gemm: torch %.3g s/GFLOP, numpy %.3g s/GFLOP -> %s",
                      1e9 * best["torch"], 1e9 * best["numpy"], self.backend)
        return result
