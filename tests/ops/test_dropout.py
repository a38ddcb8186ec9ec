"""The native dropout mask and :mod:`graphforge.nn.fast_dropout`: distribution, determinism, gradients, errors."""

from __future__ import annotations

import warnings

import pytest
import torch

from graphforge.errors import DataError
from graphforge.nn import Dropout, dropout
from graphforge.ops import _extension
from graphforge.ops.dropout import dropout_mask

needs_native = pytest.mark.skipif(not _extension.native_available("cpu"), reason="graphforge._C is not built")


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_mask_values_and_rate(p):
    like = torch.empty(1000, 1000)
    mask = dropout_mask(like, p, seed=7)
    assert mask.shape == like.shape and mask.dtype == like.dtype
    values = torch.unique(mask).tolist()
    assert len(values) == 2 and values[0] == 0.0 and values[1] == pytest.approx(1 / (1 - p), rel=1e-6)
    assert float((mask == 0).float().mean()) == pytest.approx(p, abs=0.005)
    assert float(mask.mean()) == pytest.approx(1.0, abs=0.02)  # unbiased: E[mask] = 1


@needs_native
def test_same_seed_same_mask_for_any_thread_count():
    like = torch.empty(333, 77)  # not a multiple of 4 entries
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = dropout_mask(like, 0.3, seed=11)
        torch.set_num_threads(2)
        two = dropout_mask(like, 0.3, seed=11)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, two)
    assert not torch.equal(one, dropout_mask(like, 0.3, seed=12))
    # neighbouring entries are not correlated (each has its own 16 bits)
    flat = (one.reshape(-1) == 0).float()
    assert abs(float(torch.corrcoef(torch.stack([flat[:-1], flat[1:]]))[0, 1])) < 0.02


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16, torch.float16])
def test_other_dtypes_and_shapes(dtype):
    mask = dropout_mask(torch.empty(5, 3, 2, dtype=dtype), 0.5, seed=1)
    assert mask.dtype == dtype and mask.shape == (5, 3, 2) and mask.is_contiguous()
    assert set(mask.float().unique().tolist()) <= {0.0, 2.0}
    assert dropout_mask(torch.empty(0, 4), 0.2).shape == (0, 4)
    assert dropout_mask(torch.empty(3, 4).T, 0.2).shape == (4, 3)


def test_functional_follows_torch_manual_seed_and_eval_mode():
    x = torch.randn(64, 50)
    torch.manual_seed(3)
    a = dropout(x, 0.25)
    torch.manual_seed(3)
    b = dropout(x, 0.25)
    assert torch.equal(a, b) and not torch.equal(a, x)
    assert dropout(x, 0.25, training=False) is x and dropout(x, 0.0) is x


def test_gradient_is_the_mask():
    x = torch.randn(40, 30, requires_grad=True)
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "autograd kernel was not registered" warning
        y = dropout(x, 0.4)
        y.sum().backward()
    assert torch.equal(x.grad == 0, y.detach() == 0) or torch.equal(x.grad != 0, y.detach() != 0)
    kept = x.grad != 0
    assert torch.allclose(x.grad[kept], torch.full_like(x.grad[kept], 1 / 0.6))


def test_module_is_a_drop_in():
    module = Dropout(0.5)
    assert "p=0.5" in repr(module)
    x = torch.ones(10, 10)
    assert module.eval()(x) is x
    module.train()
    assert set(module(x).unique().tolist()) <= {0.0, 2.0}
    with pytest.raises(ValueError, match=r"dropout probability must be in \[0, 1\)"):
        Dropout(1.0)


@pytest.mark.parametrize(("like", "p", "match"), [
    (torch.zeros(3, dtype=torch.long), 0.1, "floating-point"),
    (torch.zeros(3), 1.0, r"\[0, 1\)"),
    (torch.zeros(3), -0.1, r"\[0, 1\)"),
    (torch.zeros(3), True, r"\[0, 1\)"),
])
def test_clear_errors(like, p, match):
    with pytest.raises(DataError, match=match):
        dropout_mask(like, p)


@needs_native
def test_native_op_checks_and_opcheck():
    op = torch.ops.graphforge.dropout_mask
    with pytest.raises(ValueError, match="p must be in"):
        op(torch.zeros(3), 1.5, 0)
    with pytest.raises(ValueError, match="floating point"):
        op(torch.zeros(3, dtype=torch.int32), 0.1, 0)
    torch.library.opcheck(op.default, (torch.randn(6, 5), 0.3, 42))
