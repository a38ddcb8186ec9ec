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
