"""How many CPU threads graphforge uses, and how its threads wait.

The policy (applied by :func:`configure_threads` at the start of every run; see
docs/threads.md for the measurements behind it):

* **Respect what the process may use.** The thread count is at most the CPUs in the
  process's affinity mask (``taskset``, Slurm, Kubernetes CPU sets) and the cgroup CPU
  quota (``docker --cpus``, ``cpu.max``), never the machine's core count when those are
  smaller: more threads than CPUs only make threads wait for each other.
* **Never spin.** OpenMP worker threads (torch's intra-op pool and the native kernels,
  which use ``at::parallel_for``) wait *passively* between parallel regions
  (``OMP_WAIT_POLICY=PASSIVE``), so an idle worker sleeps instead of burning a core a
  busy neighbour process needs. The CLI sets this before torch loads; Python users who
  import torch first can set the variable themselves.
* **Override.** ``--threads N`` (``threads=N``) sets the count; without it, a smaller count
  chosen with ``OMP_NUM_THREADS`` or ``torch.set_num_threads`` is kept.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

#: Environment variables the CLI sets (unless the user did) before torch is imported.
PASSIVE_WAIT_ENV: dict[str, str] = {"OMP_WAIT_POLICY": "PASSIVE"}


def set_passive_wait() -> None:
    """Make OpenMP threads sleep when idle (must run before torch is imported to take effect)."""
    for key, value in PASSIVE_WAIT_ENV.items():
        os.environ.setdefault(key, value)


def _cgroup_quota(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPUs allowed by the cgroup quota (v2 ``cpu.max`` or v1 ``cpu.cfs_quota_us``), or ``None``."""
    try:
        text = (root / "cpu.max").read_text().split()
        if text and text[0] != "max":
            return int(text[0]) / int(text[1])
        return None
    except (OSError, ValueError, IndexError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return quota / period if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


def available_cpus() -> int:
    """CPUs this process may run on: the affinity mask and the cgroup quota, at least 1."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    quota = _cgroup_quota()
    if quota is not None:
        cpus = min(cpus, max(1, math.floor(quota)))
    return max(1, cpus)


def configure_threads(threads: int | None = None) -> int:
    """Set torch's intra-op thread count by the policy above; return it.

    Args:
        threads: An explicit count (``--threads``); ``None`` keeps torch's current count (what
            ``OMP_NUM_THREADS`` or ``torch.set_num_threads`` chose) but never more than
            :func:`available_cpus`.
    """
    import torch

    if threads is None:
        threads = min(torch.get_num_threads(), available_cpus())
    threads = max(1, int(threads))
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads
