"""What this machine's CPU can do: its feature flags, read once from ``/proc/cpuinfo``."""

from __future__ import annotations

from functools import lru_cache

__all__ = ["cpu_flags"]


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
