"""Loads the native extension ``graphforge._C`` (or notes that it is missing).

Importing ``graphforge._C`` registers the ``torch.ops.graphforge.*`` operators. When it
is absent (a source checkout that was never built), one warning is emitted and the ops
fall back to the pure-PyTorch reference in :mod:`graphforge.ops.reference`.
"""

from __future__ import annotations

import warnings
from types import ModuleType

import torch  # noqa: F401  (loads libtorch before the extension that links it)


class NativeExtensionWarning(UserWarning):
    """The native extension is missing, so slower reference ops are used."""


def _load() -> tuple[ModuleType | None, str | None]:
    try:
        from graphforge import _C
    except ImportError as exc:
        return None, str(exc)
    return _C, None


_C, LOAD_ERROR = _load()
if _C is None:
    warnings.warn(
        f"graphforge: native extension graphforge._C not found ({LOAD_ERROR}); using the "
        "pure-PyTorch reference ops, which are slower. Build it with: "
        "pip install --no-build-isolation -e .",
        NativeExtensionWarning,
        stacklevel=2,
    )


def native_available(device_type: str = "cpu") -> bool:
    """Whether the native kernels can run on tensors of ``device_type`` (``"cpu"``/``"cuda"``)."""
    if _C is None:
        return False
    if device_type == "cpu":
        return True
    if device_type == "cuda":
        return bool(_C.has_cuda())
    return False


def backend_name() -> str:
    """``"native-cuda+cpu"``, ``"native-cpu"`` or ``"reference"``."""
    if _C is None:
        return "reference"
    return "native-cuda+cpu" if _C.has_cuda() else "native-cpu"
