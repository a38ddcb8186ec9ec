"""graphforge.ops.batched_knn: exactness against a float64 brute force, every metric,
dtype and device present, edge cases, errors, autograd, fake kernels and fallback."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from graphforge.errors import ConfigError, DataError
from graphforge.ops import (
    METRICS,
    _extension,
    batched_knn,
    batched_knn_reference,
    dense_batched_knn,
    knn_backend,
)
from tests.ops.knn_checks import check_knn

NATIVE = _extension._C is not None
needs_native = pytest.mark.skipif(not NATIVE, reason="graphforge._C is not built")

# Set sizes with empty and single-point sets, and k values with 0 and k >= N_b.
SIZES = [0, 1, 2, 3, 7, 16, 33, 64, 100, 150, 5]
KS = [3, 2, 4, 0, 9, 5, 40, 70, 1, 200, 4]
DTYPE_TOL = {  # (tie_rtol, dist_rtol)
    torch.float64: (1e-9, 1e-9),
    torch.float32: (2e-5, 2e-5),
    torch.float16: (2e-5, 2e-3),
    torch.bfloat16: (2e-5, 1e-2),
}


def _ptr(sizes: list[int]) -> list[int]:
    out = [0]
    for s in sizes:
        out.append(out[-1] + s)
    return out


def _points(n: int, d: int, dtype: torch.dtype, device: str, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g).to(dtype).to(device)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_matches_brute_force(device: str, metric: str, dtype: torch.dtype) -> None:
    ptr = _ptr(SIZES)
    x = _points(ptr[-1], 13, dtype, device, seed=1)
    tie, dtol = DTYPE_TOL[dtype]
    for loop in (False, True):
        ei, dist = batched_knn(x, torch.tensor(ptr), torch.tensor(KS), metric=metric, loop=loop)
        assert ei.device.type == device and dist.device.type == device
        check_knn(ei, dist, x, ptr, KS, metric, loop, tie_rtol=tie, dist_rtol=dtol)


@pytest.mark.parametrize("metric", METRICS)
def test_larger_sets_and_dims(device: str, metric: str) -> None:
    """Sets over one candidate block (1024) and query block (128), k over the heap cutoff."""
    sizes, ks = [1100, 300, 129], [5, 64, 1]
    ptr = _ptr(sizes)
    x = _points(ptr[-1], 70, torch.float32, device, seed=2)
    ei, dist = batched_knn(x, ptr, ks, metric=metric)
    check_knn(ei, dist, x, ptr, ks, metric, False, tie_rtol=2e-5, dist_rtol=2e-5)


@pytest.mark.parametrize("metric", ["l2", "l1", "linf"])
@pytest.mark.parametrize("shift", [0.0, 1e4])
def test_large_magnitudes(device: str, metric: str, shift: float) -> None:
    ptr = _ptr([50, 80])
    x = _points(ptr[-1], 16, torch.float32, device, seed=3)
    x = x * 1e4 if shift == 0.0 else x + shift  # large scale, or large offset (cancellation)
    ks = [6, 11]
    ei, dist = batched_knn(x, ptr, ks, metric=metric)
    check_knn(ei, dist, x, ptr, ks, metric, False, tie_rtol=2e-5, dist_rtol=2e-5)


@pytest.mark.parametrize("metric", METRICS)
def test_duplicates_ties_go_to_lower_index(device: str, metric: str) -> None:
    g = torch.Generator().manual_seed(4)
    base = torch.randn(6, 5, generator=g)
    x = base[torch.randint(0, 6, (40,), generator=g)].to(device)  # every point has copies
    for loop in (False, True):
        for k in (1, 3, 8):
            ei, dist = batched_knn(x, [0, 40], k, metric=metric, loop=loop)
            check_knn(ei, dist, x, [0, 40], [k], metric, loop, strict=True, tie_rtol=1e-5, dist_rtol=1e-5)


def test_duplicates_still_get_exactly_k(device: str) -> None:
    x = torch.ones(10, 4, device=device)
    ei, dist = batched_knn(x, [0, 10], 3)
    assert ei.shape == (2, 30)
    assert torch.equal(ei[0, :3].cpu(), torch.tensor([1, 2, 3]))  # query 0: lowest other indices
    assert torch.equal(ei[0, 3:6].cpu(), torch.tensor([0, 2, 3]))  # query 1 skips itself
    assert bool((dist == 0).all())


def test_non_contiguous_input(device: str) -> None:
    big = _points(200, 24, torch.float32, device, seed=5)
    x = big[:, ::2]
    assert not x.is_contiguous()
    ptr, ks = [0, 60, 200], [4, 7]
    for metric in METRICS:
        ei, dist = batched_knn(x, ptr, ks, metric=metric)
        ei2, dist2 = batched_knn(x.contiguous(), ptr, ks, metric=metric)
        assert torch.equal(ei, ei2) and torch.equal(dist, dist2)
        check_knn(ei, dist, x, ptr, ks, metric, False)


def test_k_zero_and_empty_input(device: str) -> None:
    x = _points(10, 3, torch.float32, device)
    ei, dist = batched_knn(x, [0, 4, 10], 0)
    assert ei.shape == (2, 0) and dist.shape == (0,)
    ei, dist = batched_knn(x[:0], [0], [])
    assert ei.shape == (2, 0) and dist.shape == (0,)
    ei, dist = batched_knn(x[:0], [0, 0, 0], 5)
    assert ei.shape == (2, 0)


def test_batch_vector_ptr_and_single_set_agree(device: str) -> None:
    x = _points(30, 4, torch.float32, device)
    ptr = torch.tensor([0, 10, 10, 30])
    batch = torch.tensor([0] * 10 + [2] * 20)
    ks = torch.tensor([3, 5, 2])
    a = batched_knn(x, ptr, ks)
    b = batched_knn(x, k=ks, batch=batch)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    c = batched_knn(x, k=ks.tolist() + [4], batch=batch, batch_size=4)  # trailing empty set
    assert torch.equal(a[0], c[0])
    whole = batched_knn(x, k=3)
    check_knn(*whole, x, [0, 30], [3], "l2", False)


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_dense_batched_knn(device: str, metric: str) -> None:
    x = _points(4 * 49, 8, torch.float32, device).reshape(4, 49, 8)
    ks = torch.tensor([1, 5, 0, 16])
    ei, dist = dense_batched_knn(x, ks, metric=metric)
    ei2, dist2 = batched_knn(x.reshape(-1, 8), torch.arange(5) * 49, ks, metric=metric)
    assert torch.equal(ei, ei2) and torch.equal(dist, dist2)
    check_knn(ei, dist, x.reshape(-1, 8), [0, 49, 98, 147, 196], ks.tolist(), metric, False)


@pytest.mark.parametrize("metric", METRICS)
def test_reference_matches_brute_force(metric: str) -> None:
    ptr = _ptr(SIZES)
    x = _points(ptr[-1], 9, torch.float64, "cpu", seed=6)
    for loop in (False, True):
        ei, dist = batched_knn_reference(x, torch.tensor(ptr), torch.tensor(KS), metric, loop)
        check_knn(ei, dist, x, ptr, KS, metric, loop, tie_rtol=1e-9, dist_rtol=1e-9)


@needs_native
@pytest.mark.parametrize("metric", METRICS)
def test_native_equals_reference(device: str, metric: str) -> None:
    ptr = _ptr(SIZES)
    x = _points(ptr[-1], 6, torch.float64, device, seed=7)
    a = batched_knn(x, ptr, KS, metric=metric)
    b = batched_knn_reference(x, torch.tensor(ptr, device=device), torch.tensor(KS, device=device), metric)
    assert torch.equal(a[0], b[0])
    torch.testing.assert_close(a[1], b[1], rtol=1e-10, atol=1e-10)


# ------------------------------------------------------------------------------ errors


def test_errors_are_clear(device: str) -> None:
    x = _points(10, 3, torch.float32, device)
    with pytest.raises(ConfigError, match="k must be >= 0"):
        batched_knn(x, [0, 10], -1)
    with pytest.raises(ConfigError, match="k must be >= 0"):
        batched_knn(x, [0, 4, 10], torch.tensor([2, -3]))
    with pytest.raises(ConfigError, match="one entry per point set"):
        batched_knn(x, [0, 4, 10], [1, 2, 3])
    with pytest.raises(ConfigError, match="integers"):
        batched_knn(x, [0, 10], torch.tensor([1.5]))
    with pytest.raises(ConfigError, match="unknown metric 'cos'"):
        batched_knn(x, [0, 10], 2, metric="cos")
    with pytest.raises(ConfigError, match="k is required"):
        batched_knn(x, [0, 10])
    with pytest.raises(DataError, match="non-decreasing"):
        batched_knn(x, [0, 6, 4, 10], 2)
    with pytest.raises(DataError, match="end at N = 10"):
        batched_knn(x, [0, 4, 9], 2)
    with pytest.raises(DataError, match="start at 0"):
        batched_knn(x, [1, 4, 10], 2)
    with pytest.raises(DataError, match="2-D"):
        batched_knn(x[0], [0, 3], 1)
    with pytest.raises(DataError, match="float16, bfloat16, float32 or float64"):
        batched_knn(x.long(), [0, 10], 1)
    with pytest.raises(DataError, match="sorted"):
        batched_knn(x, k=2, batch=torch.tensor([0, 1] * 5))
    with pytest.raises(DataError, match="one entry per point"):
        batched_knn(x, k=2, batch=torch.zeros(9, dtype=torch.long))
    with pytest.raises(DataError, match="3-D"):
        dense_batched_knn(x, 2)
    for bad in (float("nan"), float("inf")):
        y = x.clone()
        y[3, 1] = bad
        with pytest.raises(DataError, match="NaN or Inf"):
            batched_knn(y, [0, 10], 2)
        with pytest.raises(DataError, match="NaN or Inf"):
            batched_knn(y, [0, 10], 0)  # even when no edge is asked for


def test_errors_on_reference_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_extension, "_C", None)
    x = _points(10, 3, torch.float32, "cpu")
    with pytest.raises(DataError, match="non-decreasing"):
        batched_knn(x, [0, 6, 4, 10], 2)
    with pytest.raises(ConfigError, match="k must be >= 0"):
        batched_knn(x, [0, 4, 10], torch.tensor([2, -3]))
    x[0, 0] = float("nan")
    with pytest.raises(DataError, match="NaN or Inf"):
        batched_knn(x, [0, 10], 2)


# ---------------------------------------------------------------------------- autograd


@pytest.mark.parametrize("metric", METRICS)
def test_gradcheck_float64(device: str, metric: str) -> None:
    x = _points(23, 4, torch.float64, device, seed=8).requires_grad_()
    ptr, ks = [0, 9, 23], [3, 5]

    def fn(inp: torch.Tensor) -> torch.Tensor:
        return batched_knn(inp, ptr, ks, metric=metric)[1]

    assert torch.autograd.gradcheck(fn, (x,), eps=1e-6, atol=1e-6)


def test_gradient_same_on_reference_path(monkeypatch: pytest.MonkeyPatch) -> None:
    x = _points(30, 5, torch.float32, "cpu", seed=9).requires_grad_()
    w = torch.rand(30 * 4)
    batched_knn(x, [0, 30], 4, metric="cosine")[1].mul(w).sum().backward()
    native_grad = x.grad.clone()
    x.grad = None
    monkeypatch.setattr(_extension, "_C", None)
    batched_knn(x, [0, 30], 4, metric="cosine")[1].mul(w).sum().backward()
    torch.testing.assert_close(x.grad, native_grad)


# ---------------------------------------------------- torch.library: opcheck, compile


@needs_native
@pytest.mark.parametrize("metric", ["l2", "cosine", "linf"])
def test_opcheck(device: str, metric: str) -> None:
    x = _points(40, 6, torch.float32, device, seed=10).requires_grad_()
    ptr = torch.tensor([0, 15, 15, 40], device=device)
    k = torch.tensor([4, 2, 6], device=device)
    torch.library.opcheck(torch.ops.graphforge.batched_knn.default, (x, ptr, k, metric, False))


@needs_native
def test_fake_tensor_shapes() -> None:
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.experimental.symbolic_shapes import ShapeEnv

    with FakeTensorMode(shape_env=ShapeEnv()):
        x = torch.empty(12, 3, dtype=torch.float16)
        dist, ei = torch.ops.graphforge.batched_knn(x, torch.empty(3, dtype=torch.long), torch.empty(2, dtype=torch.long), "l2", False)
    assert ei.shape[0] == 2 and ei.dtype == torch.long and dist.dtype == torch.float16


@needs_native
def test_torch_compile() -> None:
    try:
        import torch._dynamo  # noqa: F401
    except Exception as exc:  # pragma: no cover - depends on the install
        pytest.skip(f"torch.compile unavailable: {exc}")
    torch._dynamo.config.capture_dynamic_output_shape_ops = True
    x = _points(4 * 20, 5, torch.float32, "cpu").reshape(4, 20, 5)
    ks = torch.tensor([1, 3, 0, 7])

    def fn(inp: torch.Tensor) -> torch.Tensor:
        ei, dist = dense_batched_knn(inp, ks)
        return torch.zeros(inp.shape[0] * inp.shape[1]).index_add(0, ei[1], dist)

    eager = fn(x)
    try:
        compiled = torch.compile(fn, backend="aot_eager", fullgraph=True)(x)
    except Exception as exc:  # pragma: no cover
        if "compile" in type(exc).__module__ or "dynamo" in type(exc).__module__:
            pytest.skip(f"torch.compile unavailable here: {exc}")
        raise
    torch.testing.assert_close(compiled, eager)


# ---------------------------------------------------------------------------- fallback


def test_fallback_to_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    ptr = _ptr(SIZES)
    x = _points(ptr[-1], 7, torch.float32, "cpu", seed=11)
    native = batched_knn(x, ptr, KS)
    monkeypatch.setattr(_extension, "_C", None)
    assert knn_backend() == "reference"
    ref = batched_knn(x, ptr, KS)
    check_knn(*ref, x, ptr, KS, "l2", False)
    if NATIVE:
        assert torch.equal(native[0], ref[0])
        torch.testing.assert_close(native[1], ref[1])


def test_missing_extension_warns_once() -> None:
    code = (
        "import sys, warnings\n"
        "sys.modules['graphforge._C'] = None\n"  # makes `from graphforge import _C` fail
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        "    import graphforge.ops as ops\n"
        "    import graphforge.ops.knn, graphforge.ops._extension\n"
        "    import torch\n"
        "    ei, d = ops.batched_knn(torch.randn(8, 2), [0, 8], 2)\n"
        "msgs = [str(x.message) for x in w if 'native extension' in str(x.message)]\n"
        "print(len(msgs), ops.knn_backend(), tuple(ei.shape))\n"
        "print(msgs[0])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    first, message = out.splitlines()[:2]
    assert first == "1 reference (2, 16)"
    assert "graphforge._C not found" in message
    assert "pip install --no-build-isolation -e ." in message


def test_backend_name() -> None:
    assert knn_backend() in {"native-cpu", "native-cuda+cpu", "reference"}
    if NATIVE:
        assert knn_backend().startswith("native")
        assert (knn_backend() == "native-cuda+cpu") == bool(_extension._C.has_cuda())


@pytest.mark.parametrize("scale", [1e19, 1e-25])
@pytest.mark.parametrize("metric", ["l2", "l1", "linf", "ip"])
def test_fp32_points_of_huge_or_tiny_magnitude(device, metric, scale):
    """Squares of 1e19 overflow fp32 and of 1e-25 underflow it: the op searches such points at
    a power-of-two scale, so the neighbours are those of a float64 search."""
    g = torch.Generator().manual_seed(2)
    x64 = torch.randn(90, 5, generator=g, dtype=torch.float64) * scale
    ptr = torch.tensor([0, 40, 90])
    ei, dist = batched_knn(x64.float().to(device), ptr, 4, metric=metric)
    ei64, dist64 = batched_knn(x64.float().double().to(device), ptr, 4, metric=metric)
    assert torch.equal(ei.cpu(), ei64.cpu())
    if metric != "ip":  # an inner product of 1e19-scale points (1e38+) has no fp32 value
        torch.testing.assert_close(dist.double().cpu(), dist64.cpu(), rtol=1e-5, atol=0)
