"""Input checks shared by the neighbour search and the kNN classifier."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from graphforge.errors import ConfigError, DataError

__all__ = ["as_float_matrix", "resolve_search_device"]


def _is_sparse(x: Any) -> bool:
    """Whether ``x`` is a SciPy sparse matrix or array (without importing SciPy)."""
    return type(x).__module__.startswith("scipy.sparse") and hasattr(x, "toarray")


def as_float_matrix(x: Any, name: str) -> torch.Tensor:
    """Return ``x`` as a contiguous float32 ``[N, D]`` CPU tensor.

    Accepts tensors, NumPy arrays, nested lists, pandas frames and SciPy sparse matrices
    (densified: the search itself is dense).

    Raises:
        DataError: If ``x`` is not numeric, not 2-D, or holds NaN or infinite values.
    """
    if isinstance(x, torch.Tensor):
        t = x.detach()
    else:
        if _is_sparse(x):
            x = x.toarray()
        try:
            arr = np.asarray(x)
            if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
                raise TypeError(arr.dtype)
            t = torch.as_tensor(arr)
        except (TypeError, ValueError):
            raise DataError(f"{name} must be a numeric array [samples, features], got {type(x).__name__}") from None
    if t.ndim != 2:
        raise DataError(f"{name} must be a 2-D array [samples, features], got shape {tuple(t.shape)}")
    if t.is_complex():
        raise DataError(f"{name} must be real-valued, got {t.dtype}")
    t = t.to(device="cpu", dtype=torch.float32).contiguous()
    # A float64 sum of float32 values cannot overflow, so it is finite exactly when
    # every value is (and it is much faster than an element-wise isfinite).
    if t.numel() and not math.isfinite(float(t.sum(dtype=torch.float64))):
        raise DataError(f"{name} contains NaN or infinite values")
    return t


def resolve_search_device(device: str | torch.device) -> torch.device:
    """``auto`` -> CUDA when available, else CPU.

    Raises:
        ConfigError: If CUDA is asked for but not available, or the device is unknown.
    """
    text = str(device)
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if text.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {text!r} asked for, but CUDA is not available")
    try:
        return torch.device(text)
    except RuntimeError:
        raise ConfigError(f"unknown device {text!r}; use auto, cpu, cuda or cuda:N") from None
