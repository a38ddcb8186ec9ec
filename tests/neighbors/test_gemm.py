"""CPU GEMM choice (torch's or NumPy's BLAS) and the exact search on top of it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import graphforge.neighbors as neighbors
import graphforge.neighbors.gemm as gemm
from graphforge.errors import ConfigError
from graphforge.neighbors import KNNIndex, pair_distances


@pytest.fixture(params=["torch", "numpy"])
def cpu_gemm(request, monkeypatch) -> str:
    """Runs the test once with each BLAS."""
    monkeypatch.setattr(gemm, "numpy_blas_threads", torch.get_num_threads)
    monkeypatch.setenv(gemm.CPU_GEMM_ENV, request.param)
    return request.param


def test_environment_forces_and_checks_the_backend(monkeypatch):
    monkeypatch.setattr(gemm, "numpy_blas_threads", torch.get_num_threads)
    monkeypatch.setenv(gemm.CPU_GEMM_ENV, "numpy")
    assert gemm.cpu_gemm_setting() == "numpy" and gemm.GemmChooser().backend == "numpy"
    monkeypatch.setenv(gemm.CPU_GEMM_ENV, "Torch ")
    assert gemm.cpu_gemm_setting() == "torch" and gemm.GemmChooser().backend == "torch"
    monkeypatch.setenv(gemm.CPU_GEMM_ENV, "mkl")
    with pytest.raises(ConfigError, match="GRAPHFORGE_CPU_GEMM='mkl' is not one of: auto, torch, numpy"):
        gemm.cpu_gemm_setting()


def test_numpy_only_with_as_many_threads_as_torch(monkeypatch):
    monkeypatch.setattr(gemm, "numpy_blas_threads", lambda: torch.get_num_threads() + 1)
    for value in ("auto", "numpy"):
        monkeypatch.setenv(gemm.CPU_GEMM_ENV, value)
        assert gemm.cpu_gemm_setting() == "torch"


def test_chooser_times_both_then_keeps_the_faster(monkeypatch):
    monkeypatch.setattr(gemm, "numpy_blas_threads", torch.get_num_threads)
    monkeypatch.setenv(gemm.CPU_GEMM_ENV, "auto")
    calls: list[str] = []
    seconds = {"torch": 3.0, "numpy": 1.0}  # per call, on a fake clock

    def fake_matmul(a, b, out=None, *, backend):
        calls.append(backend)
        return a @ b.T

    def fake_time():
        return sum(seconds[c] for c in calls)

    monkeypatch.setattr(gemm, "matmul_nt", fake_matmul)
    monkeypatch.setattr(gemm.time, "perf_counter", fake_time)
    chooser = gemm.GemmChooser(trials=2)
    assert chooser.backend is None
    a = torch.ones(2, 3)
    for _ in range(7):
        chooser(a, a)
    assert calls[:4] == ["torch", "numpy", "torch", "numpy"]  # alternating trials
    assert chooser.backend == "numpy" and calls[4:] == ["numpy"] * 3


@pytest.mark.parametrize("backend", ["torch", "numpy"])
def test_matmul_nt_into_a_strided_buffer(backend):
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(33, 20, generator=g), torch.randn(50, 20, generator=g)
    buf = torch.full((33, 64), float("nan"))
    out = gemm.matmul_nt(a, b, buf[:, :50], backend=backend)
    assert out.data_ptr() == buf.data_ptr()
    torch.testing.assert_close(buf[:, :50], a @ b.T, rtol=1e-5, atol=1e-5)
    assert torch.isnan(buf[:, 50:]).all(), "only the view is written"
    torch.testing.assert_close(gemm.matmul_nt(a, b, backend=backend), a @ b.T, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("metric", ["euclidean", "sqeuclidean", "chord", "cosine", "ip"])
def test_search_is_exact_with_either_blas_over_several_blocks(cpu_gemm, metric, monkeypatch):
    monkeypatch.setattr(neighbors, "DB_BLOCK_ROWS", 70)  # 4 database blocks of 65 rows
    g = torch.Generator().manual_seed(1)
    x = torch.round(torch.randn(260, 9, generator=g) * 2) / 2 + 50  # ties, far from the origin
    x[7] = x[200]
    q = torch.cat([x[:40], torch.round(torch.randn(30, 9, generator=g) * 2) / 2 + 50])
    index = KNNIndex(x, metric, backend="torch")
    assert index.cpu_gemm == cpu_gemm
    k = 6
    dist, idx = index.search(q, k)
    exact = pair_distances(q.repeat_interleave(len(x), 0), x.repeat(len(q), 1), metric).view(len(q), len(x))
    order = np.lexsort((np.tile(np.arange(len(x)), (len(q), 1)), exact.numpy()), axis=1)[:, :k]
    assert idx.tolist() == order.tolist()
    torch.testing.assert_close(dist, exact.gather(1, torch.from_numpy(order)), rtol=0, atol=1e-12)
    # Range search shares the GEMM path.
    radius = float(exact.kthvalue(5, dim=1).values.median())
    qi, ri, d = index.range_search(q, radius)
    want = torch.nonzero(exact <= radius)
    assert sorted(zip(qi.tolist(), ri.tolist(), strict=True)) == sorted(map(tuple, want.tolist()))
    torch.testing.assert_close(d, exact[qi, ri], rtol=0, atol=1e-12)
