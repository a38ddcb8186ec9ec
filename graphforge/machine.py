"""What this machine's CPU can do: its feature flags, read once from ``/proc/cpuinfo``,
and the instruction-set cap this process sets on oneDNN, torch's CPU kernel library."""

from __future__ import annotations

import os
from functools import lru_cache

__all__ = ["cpu_flags", "onednn_isa_cap", "onednn_isa_setting"]

#: Environment variables that cap the instructions oneDNN uses (the second is its old name).
ONEDNN_ISA_VARIABLES = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (``avx2``, ``avx512_bf16``, ``amx_tile``, ...).

    Read from the first ``flags`` line of ``/proc/cpuinfo``; empty where it cannot be
    read (another OS, a sandbox), so callers keep their portable path.
    """
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def onednn_isa_setting() -> tuple[str, str] | None:
    """The variable that caps oneDNN's instruction set in this process and its value, upper-case.

    oneDNN runs torch's CPU convolutions and matrix products; ``ONEDNN_MAX_CPU_ISA=AVX2``
    (or the older ``DNNL_MAX_CPU_ISA``) makes it use what an AVX2-only CPU has, whatever
    this CPU's flags say. ``ALL`` and ``DEFAULT`` are no cap.

    Returns:
        ``(variable, value)``, e.g. ``("DNNL_MAX_CPU_ISA", "AVX2")``, or None when oneDNN is not capped.
    """
    for name in ONEDNN_ISA_VARIABLES:
        value = os.environ.get(name, "").strip().upper()
        if value and value not in ("ALL", "DEFAULT"):
            return name, value
    return None


def onednn_isa_cap() -> str | None:
    """The instruction set oneDNN is capped at in this process, upper-case, or None (see :func:`onednn_isa_setting`)."""
    setting = onednn_isa_setting()
    return setting[1] if setting else None
