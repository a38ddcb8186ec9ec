"""How many CPU threads graphforge uses.

The policy (applied by :class:`ThreadPolicy` at the start of every run and again
before every epoch; docs/threads.md has the measurements behind it):

* **Respect what the process may use.** The thread count is at most the CPUs in the
  process's affinity mask (``taskset``, Slurm, Kubernetes CPU sets) and the cgroup CPU
  quota (``docker --cpus``, ``cpu.max``), never the machine's core count when those are
  smaller: more threads than CPUs only make threads wait for each other.
* **Leave the cores busy neighbours hold.** Torch's intra-op pool meets at a barrier after
  every parallel region, so one of its threads descheduled by another process stalls all
  of them: on the 2-core machine the Quickstart job trained 4x slower beside one busy
  process with 2 threads, and at idle speed with 1. Before the run and before every epoch
  the runnable tasks of *other* processes are counted (``/proc/stat``'s ``procs_running``
  less this process's running threads, scaled to this process's share of the machine's
  CPUs) and the count drops to the CPUs left over, at least 1; it rises again when they go.
* **Override.** ``--threads N`` (``threads=N``) fixes the count and turns the adaptation
  off (do that for bit-identical reruns: results can differ in the last bits between
  thread counts), as does ``GRAPHFORGE_ADAPT_THREADS=0``; without it, a smaller count
  chosen with ``OMP_NUM_THREADS`` or ``torch.set_num_threads`` is the ceiling.
"""

from __future__ import annotations

import math
import os
from pathlib import Path


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


def _procs_running(stat: Path = Path("/proc/stat")) -> int | None:
    """Runnable tasks on the machine right now (``procs_running``), or ``None`` where unknown."""
    try:
        for line in stat.read_text().splitlines():
            if line.startswith("procs_running "):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _own_running(tasks: Path = Path("/proc/self/task")) -> int:
    """This process's threads in state ``R`` (the reading thread included)."""
    count = 0
    try:
        for task in tasks.iterdir():
            try:
                stat = (task / "stat").read_text()
            except OSError:
                continue
            # "pid (comm) S ...": the state follows the last ')' (comm may hold spaces or parens)
            if stat[stat.rfind(")") + 2:stat.rfind(")") + 3] == "R":
                count += 1
    except OSError:
        return 1
    return max(1, count)


def busy_elsewhere(samples: int = 3, interval: float = 0.005, *, cpus: int | None = None) -> int:
    """CPUs of this process's share that other processes keep busy (median of a few samples).

    The machine-wide count of runnable tasks less this process's own running threads, scaled
    by the fraction of the machine's CPUs this process may use (a 2-CPU container on a
    64-core host sees 1/32 of the host's load), rounded down; 0 where ``/proc`` is missing.
    ``cpus`` is this process's :func:`available_cpus` when the caller has it already.
    """
    import statistics
    import time

    counts = []
    for i in range(max(1, samples)):
        total = _procs_running()
        if total is None:
            return 0
        counts.append(max(0, total - _own_running()))
        if i + 1 < samples:
            time.sleep(interval)
    share = (cpus or available_cpus()) / max(1, os.cpu_count() or 1)
    return int(statistics.median(counts) * min(1.0, share))


#: ``(ceiling, count)`` of the last :meth:`ThreadPolicy.apply`: a later run in the same process
#: that finds torch still at ``count`` starts again from ``ceiling`` rather than from what an
#: earlier run lowered it to (a count the user set in between is respected).
_LAST_SET: tuple[int, int] | None = None


def _torch_ceiling() -> int:
    import torch

    now = torch.get_num_threads()
    if _LAST_SET is not None and now == _LAST_SET[1]:
        return _LAST_SET[0]
    return now


class ThreadPolicy:
    """The thread count of one run: fixed by ``--threads`` or adapted to the machine's load.

    Args:
        threads: An explicit count, or ``None`` to adapt (between 1 and the ceiling: torch's
            count at construction, at most :func:`available_cpus`).
        adapt: Without an explicit count, leave the CPUs busy neighbours hold.
    """

    def __init__(self, threads: int | None = None, *, adapt: bool = True) -> None:
        self.fixed = None if threads is None else max(1, int(threads))
        self.base = min(_torch_ceiling(), available_cpus())
        self.ceiling = self.fixed or self.base
        off = os.environ.get("GRAPHFORGE_ADAPT_THREADS", "1").strip().lower() in ("0", "false", "no", "off")
        self.adapt = adapt and not off and self.fixed is None and self.ceiling > 1

    def choose(self) -> int:
        """The count for now: fixed, or the ceiling less the CPUs busy elsewhere (at least 1)."""
        if not self.adapt:
            return self.ceiling
        cpus = available_cpus()
        return max(1, min(self.ceiling, cpus - busy_elsewhere(cpus=cpus)))

    def apply(self) -> int:
        """Set torch's intra-op count to :meth:`choose` and return it."""
        import torch

        global _LAST_SET
        threads = self.choose()
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        _LAST_SET = (self.base, threads)
        return threads
