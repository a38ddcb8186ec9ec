"""Moved to :mod:`graphforge.neighbors.gemm`; this name stays importable."""

from graphforge.neighbors.gemm import (  # noqa: F401
    CPU_GEMM_BACKENDS,
    CPU_GEMM_ENV,
    GemmChooser,
    __all__,  # noqa: F401
    cpu_gemm_setting,
    matmul_nt,
    numpy_blas_threads,
)
