"""Numeric precision of network training: fp32, or bf16 mixed precision.

``bf16`` runs every forward pass under :func:`torch.autocast` with ``bfloat16``: matrix
products and convolutions compute in bf16 (fp32 accumulation), while the weights, the
optimiser state, BatchNorm statistics, the loss and the gradients reaching the optimiser
stay fp32 ("bf16-mixed" in Lightning's words). bf16 keeps fp32's exponent range, so no
loss scaling is needed. It is worth it where the hardware has bf16 units: GPUs from
compute capability 8.0 (A100, H100, H200) and CPUs with ``avx512_bf16`` or AMX; elsewhere
the conversions cost more than they save, and graphforge warns.
"""

from __future__ import annotations

import contextlib
import logging
import warnings

import torch

from graphforge.errors import ConfigError
from graphforge.machine import cpu_flags, onednn_isa_cap, onednn_isa_setting

__all__ = ["PRECISIONS", "autocast", "check_precision", "has_native_bf16", "prepare_precision"]

log = logging.getLogger(__name__)

#: The precisions a run may ask for (``--precision``).
PRECISIONS = ("fp32", "bf16")
#: CPU flags of native bf16 arithmetic (AVX-512 BF16 dot products, AMX tiles).
_BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def check_precision(value: object) -> str:
    """Return ``value`` if it is a known precision.

    Raises:
        ConfigError: Naming the valid ones otherwise.
    """
    if value not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {value!r}")
    return str(value)


def _onednn_cap_has_bf16(cap: str | None) -> bool:
    """Whether oneDNN, capped at ``cap`` (None: no cap), may use bf16 dot products.

    oneDNN's ISA names with them: ``AVX512_CORE_BF16`` and everything above it
    (``AVX512_CORE_FP16``, the ``..._AMX...`` levels, ``AVX10_...``).
    """
    return cap is None or "BF16" in cap or "FP16" in cap or "AMX" in cap or cap.startswith("AVX10")


def has_native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes in bf16 natively.

    CUDA: compute capability >= 8.0. CPU: ``avx512_bf16`` or AMX, unless this process caps
    oneDNN below them (``ONEDNN_MAX_CPU_ISA`` or ``DNNL_MAX_CPU_ISA``; see
    :func:`graphforge.machine.onednn_isa_setting`).
    """
    if device.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.get_device_capability(device)[0] >= 8)
    return bool(cpu_flags() & _BF16_CPU_FLAGS) and _onednn_cap_has_bf16(onednn_isa_cap())


def prepare_precision(precision: str, device: torch.device) -> None:
    """Check that ``device`` can train at ``precision`` before a run starts.

    Raises:
        ConfigError: bf16 on a GPU without bf16 support (before compute capability 8.0).

    Warns:
        UserWarning: bf16 on a CPU without ``avx512_bf16`` / AMX or below them under a oneDNN cap (emulated: slower).
    """
    check_precision(precision)
    if precision != "bf16":
        return
    if device.type == "cuda":
        if not has_native_bf16(device):
            major, minor = torch.cuda.get_device_capability(device)
            raise ConfigError(f"--precision bf16 needs a GPU of compute capability 8.0 or newer; "
                              f"{torch.cuda.get_device_name(device)} is {major}.{minor}: use --precision fp32")
    elif device.type == "cpu" and not has_native_bf16(device):
        variable, cap = onednn_isa_setting() or ("", "")
        where = (f"oneDNN is capped at {cap} ({variable}), below native bf16 instructions"
                 if cpu_flags() & _BF16_CPU_FLAGS else "this CPU has no native bf16 instructions (avx512_bf16 or AMX)")
        warnings.warn(f"--precision bf16: {where}, so bf16 is emulated: measured 1.5-2x slower than fp32 to "
                      "train with oneDNN held to plain AVX-512 and 9-11x slower held to AVX2; use --precision fp32", stacklevel=2)
    log.info("precision: bf16 mixed (autocast on %s; weights, optimiser and loss in fp32)", device.type)


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The context a forward pass runs in at ``precision`` on ``device``.

    ``fp32`` is a no-op context; ``bf16`` is :func:`torch.autocast` to ``bfloat16``.
    """
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
