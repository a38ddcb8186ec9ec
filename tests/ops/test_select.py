"""``smallest_k``: the native row selection against a stable sort, ties, views, errors, opcheck."""

from __future__ import annotations

import pytest
import torch

from graphforge.errors import DataError
from graphforge.ops import _extension, smallest_k, smallest_k_reference

NATIVE = _extension.native_available("cpu")
needs_native = pytest.mark.skipif(not NATIVE, reason="graphforge._C is not built")


def _check(scores: torch.Tensor, k: int) -> None:
    values, indices = smallest_k(scores, k)
    ref_values, ref_indices = smallest_k_reference(scores, k)
    assert values.dtype == scores.dtype and indices.dtype == torch.long
    assert values.shape == indices.shape == (scores.shape[0], k)
    torch.testing.assert_close(values, ref_values, rtol=0, atol=0)
    assert torch.equal(indices, ref_indices)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("k", [0, 1, 5, 16, 17, 48, 49, 100, 300])
def test_matches_a_stable_sort_with_many_ties(dtype, k):
    # Small integers: most values tie, so the (value, column) order decides everything;
    # k crosses the sorted-array / heap switch (48) and the 16-wide blocks.
    g = torch.Generator().manual_seed(k)
    _check(torch.randint(0, 7, (37, 300), generator=g).to(dtype), k)


@pytest.mark.parametrize("k", [1, 13, 64])
def test_wide_random_rows(k):
    g = torch.Generator().manual_seed(1)
    _check(torch.randn(64, 5000, generator=g), k)


def test_strided_and_transposed_views():
    g = torch.Generator().manual_seed(2)
    buf = torch.randn(20, 100, generator=g)
    _check(buf[:, :53], 9)  # rows strided by 100, each row contiguous: no copy
    _check(buf.T, 4)  # non-contiguous rows: copied first
    _check(buf[3:4, 10:90], 80)  # one row, k = N


def test_infinities_sort_last_and_decreasing_rows():
    s = torch.tensor([[float("inf"), 3.0, -float("inf"), 3.0, 1.0] * 8])
    _check(s, 12)
    _check(torch.arange(1000, 0, -1, dtype=torch.float32).repeat(3, 1), 20)


def test_empty_inputs():
    _check(torch.empty(0, 10), 3)
    _check(torch.empty(4, 0), 0)


@pytest.mark.parametrize(
    ("scores", "k", "match"),
    [
        (torch.zeros(3), 1, "2-D"),
        (torch.zeros(3, 4, dtype=torch.long), 1, "floating point"),
        (torch.zeros(3, 4), 5, r"k must be an integer in \[0, 4\]"),
        (torch.zeros(3, 4), -1, r"k must be an integer in \[0, 4\]"),
        (torch.zeros(3, 4), 1.5, "k must be an integer"),
        ([[1.0, 2.0]], 1, "2-D tensor"),
    ],
)
def test_clear_errors(scores, k, match):
    with pytest.raises(DataError, match=match):
        smallest_k(scores, k)


@needs_native
def test_native_op_checks_its_arguments():
    with pytest.raises(ValueError, match="k must be in"):
        torch.ops.graphforge.smallest_k(torch.zeros(2, 3), 4)
    with pytest.raises(ValueError, match="float32 or float64"):
        torch.ops.graphforge.smallest_k(torch.zeros(2, 3, dtype=torch.float16), 1)


@needs_native
def test_opcheck():
    g = torch.Generator().manual_seed(3)
    torch.library.opcheck(torch.ops.graphforge.smallest_k.default, (torch.randn(7, 40, generator=g), 5))


def test_other_dtypes_use_the_reference():
    s = torch.tensor([[3.0, 1.0, 2.0, 1.0]], dtype=torch.bfloat16)
    values, indices = smallest_k(s, 3)
    assert indices.tolist() == [[1, 3, 2]] and values.dtype == torch.bfloat16


# --- smallest_k_affine: bias[j] + alpha * dots[i, j] of int32 dots ----------------------
def _check_affine(dots: torch.Tensor, bias: torch.Tensor, alpha: int, k: int) -> None:
    from graphforge.ops import smallest_k_affine, smallest_k_affine_reference

    values, indices = smallest_k_affine(dots, bias, alpha, k)
    ref_values, ref_indices = smallest_k_affine_reference(dots, bias, alpha, k)
    assert values.dtype == torch.int32 and indices.dtype == torch.long
    assert values.shape == indices.shape == (dots.shape[0], k)
    assert torch.equal(values, ref_values) and torch.equal(indices, ref_indices)
    # and the reference is the plain definition
    full = bias.long() + alpha * dots.long()
    assert torch.equal(values.long(), torch.sort(full, dim=1, stable=True).values[:, :k])


@pytest.mark.parametrize("k", [0, 1, 5, 16, 48, 49, 200])
def test_affine_matches_the_definition_with_ties(k):
    # Few distinct values: ties everywhere; N crosses the native op's 4096-column chunks.
    g = torch.Generator().manual_seed(k)
    dots = torch.randint(-3, 4, (9, 9000), generator=g, dtype=torch.int32)
    bias = torch.randint(0, 5, (9000,), generator=g, dtype=torch.int32)
    _check_affine(dots, bias, -2, k)


def test_affine_large_values_views_and_empty():
    g = torch.Generator().manual_seed(5)
    dots = torch.randint(-(2**29), 2**29, (30, 777), generator=g, dtype=torch.int32)
    bias = torch.randint(0, 2**29, (777,), generator=g, dtype=torch.int32)
    _check_affine(dots, bias, -1, 7)
    _check_affine(dots, bias, 1, 7)
    wide = torch.randint(-100, 100, (12, 900), generator=g, dtype=torch.int32)
    _check_affine(wide[:, :500], bias[:500], 3, 11)  # strided rows
    _check_affine(wide.T, torch.zeros(12, dtype=torch.int32), -2, 12)  # non-contiguous: copied
    _check_affine(torch.empty(0, 4, dtype=torch.int32), bias[:4], -2, 2)


@pytest.mark.parametrize(
    ("dots", "bias", "alpha", "k", "match"),
    [
        (torch.zeros(3, 4), torch.zeros(4, dtype=torch.int32), -2, 1, "dots must be a 2-D int32"),
        (torch.zeros(3, dtype=torch.int32), torch.zeros(3, dtype=torch.int32), -2, 1, "dots must be a 2-D int32"),
        (torch.zeros(3, 4, dtype=torch.int32), torch.zeros(5, dtype=torch.int32), -2, 1, r"bias must be an int32 tensor \[4\]"),
        (torch.zeros(3, 4, dtype=torch.int32), torch.zeros(4), -2, 1, "bias must be an int32"),
        (torch.zeros(3, 4, dtype=torch.int32), torch.zeros(4, dtype=torch.int32), 2**31, 1, "alpha must be"),
        (torch.zeros(3, 4, dtype=torch.int32), torch.zeros(4, dtype=torch.int32), -2, 5, r"k must be an integer in \[0, 4\]"),
    ],
)
def test_affine_clear_errors(dots, bias, alpha, k, match):
    from graphforge.ops import smallest_k_affine

    with pytest.raises(DataError, match=match):
        smallest_k_affine(dots, bias, alpha, k)


@needs_native
def test_affine_native_op_checks_and_opcheck():
    op = torch.ops.graphforge.smallest_k_affine
    with pytest.raises(ValueError, match="int32"):
        op(torch.zeros(2, 3), torch.zeros(3, dtype=torch.int32), -2, 1)
    with pytest.raises(ValueError, match="bias must be int32"):
        op(torch.zeros(2, 3, dtype=torch.int32), torch.zeros(2, dtype=torch.int32), -2, 1)
    g = torch.Generator().manual_seed(4)
    args = (torch.randint(-50, 50, (6, 40), generator=g, dtype=torch.int32),
            torch.randint(0, 50, (40,), generator=g, dtype=torch.int32), -2, 5)
    torch.library.opcheck(op.default, args)
