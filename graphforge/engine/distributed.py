"""Training past one process: ``torch.distributed`` under ``torchrun`` (see docs/distributed.md).

``torchrun --nproc-per-node N -m graphforge run ...`` starts N processes with ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` set; :func:`setup`
joins the process group (NCCL on GPUs, gloo on CPUs) and the engine then trains with
``DistributedDataParallel``: every rank takes its share of each epoch's shuffled
mini-batches, gradients are all-reduced, epoch metrics summed across ranks, and rank 0
alone writes the run directory, the progress and the ``--json`` line.
"""

from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass
from typing import Any

import torch

from graphforge.errors import ConfigError, GraphforgeError

log = logging.getLogger("graphforge")

#: Seconds a collective waits for the other ranks before failing (a dead rank is an error,
#: never a hang): ``GRAPHFORGE_DIST_TIMEOUT`` overrides.
DEFAULT_TIMEOUT_S = 300
_TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in the job.

    Attributes:
        rank: This process's rank (0 when not distributed).
        world_size: Number of processes (1 when not distributed).
        local_rank: Rank on this machine (picks the GPU).
        backend: ``nccl``, ``gloo`` or ``""`` (not distributed).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str = ""

    @property
    def main(self) -> bool:
        """Whether this process writes the run directory and prints."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        """Whether more than one process takes part."""
        return self.world_size > 1


SINGLE = DistInfo()


def launched_by_torchrun() -> bool:
    """Whether the environment names a distributed job (any of torchrun's variables is set)."""
    return any(v in os.environ for v in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))


def current() -> DistInfo:
    """The running job's :class:`DistInfo` (:data:`SINGLE` without a process group)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return SINGLE
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)), dist.get_backend())


def setup(device: str) -> DistInfo:
    """Join the process group torchrun describes (once per process); :data:`SINGLE` otherwise.

    Raises:
        ConfigError: For an incomplete launch environment (say which variable is missing).
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return current()
    if not launched_by_torchrun():
        return SINGLE
    missing = [v for v in _TORCHRUN_VARS if not os.environ.get(v)]
    if missing:
        raise ConfigError(f"a distributed launch needs {', '.join(_TORCHRUN_VARS)}; {', '.join(missing)} "
                          f"{'is' if len(missing) == 1 else 'are'} not set. Launch with "
                          "torchrun --nproc-per-node N -m graphforge run ...")
    try:
        world = int(os.environ["WORLD_SIZE"])
        rank = int(os.environ["RANK"])
    except ValueError:
        raise ConfigError("RANK and WORLD_SIZE must be integers") from None
    if world < 1 or not 0 <= rank < world:
        raise ConfigError(f"RANK={rank} is not a rank of WORLD_SIZE={world}")
    if world == 1:
        return SINGLE
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    use_cuda = device != "cpu" and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
    timeout = datetime.timedelta(seconds=float(os.environ.get("GRAPHFORGE_DIST_TIMEOUT", DEFAULT_TIMEOUT_S)))
    try:
        dist.init_process_group("nccl" if use_cuda else "gloo", timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - a failed rendezvous is the user's launch, not a bug
        raise ConfigError(f"could not join the distributed job (rank {rank} of {world}): "
                          f"{' '.join(str(exc).split())[:200]}") from None
    info = current()
    log.info("distributed: rank %d of %d (%s)", info.rank, info.world_size, info.backend)
    return info


def _dist() -> Any:
    import torch.distributed as dist

    return dist


def _device(info: DistInfo) -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if info.backend == "nccl" else torch.device("cpu")


def broadcast_object(obj: Any, info: DistInfo) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not info.active:
        return obj
    box = [obj if info.main else None]
    _dist().broadcast_object_list(box, src=0)
    return box[0]


def all_reduce_sums(values: list[float], info: DistInfo) -> list[float]:
    """Element-wise sums of ``values`` over every rank."""
    if not info.active:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=_device(info))
    _dist().all_reduce(t)
    return t.cpu().tolist()


def merge_epoch_metrics(metrics: dict[str, Any], info: DistInfo) -> dict[str, Any]:
    """Plugin epoch metrics of every rank as one: histograms (dicts of counts) summed,
    numbers averaged (every rank sees the same number of samples per epoch)."""
    if not info.active:
        return metrics
    gathered: list[Any] = [None] * info.world_size
    _dist().all_gather_object(gathered, metrics)
    merged: dict[str, Any] = {}
    for key in dict.fromkeys(k for m in gathered for k in m):
        values = [m[key] for m in gathered if key in m]
        if all(isinstance(v, dict) for v in values):
            total: dict[str, Any] = {}
            for v in values:
                for kk, c in v.items():
                    total[kk] = total.get(kk, 0) + c
            merged[key] = total
        elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            merged[key] = sum(values) / len(values)
        else:
            merged[key] = values[0]
    return merged


def sync_buffers(module: torch.nn.Module, info: DistInfo) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank, so evaluation is
    identical everywhere."""
    if not info.active:
        return
    for buf in module.buffers():
        if buf.is_floating_point() or buf.dtype in (torch.long, torch.int):
            _dist().broadcast(buf.data, src=0)


def shard_indices(order: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """This rank's share of one epoch's sample order (``DistributedSampler``'s rule): padded by
    wrapping round so every rank gets the same count (every rank must take the same number of
    optimiser steps), then every ``world_size``-th sample from ``rank``."""
    if not info.active:
        return order
    n, world = len(order), info.world_size
    total = -(-n // world) * world
    if total > n:
        order = torch.cat([order, order[: total - n]])
    return order[info.rank::world]


def wrap_ddp(net: torch.nn.Module, info: DistInfo, sync_batchnorm: bool = False) -> torch.nn.Module:
    """The module to train: ``net`` under ``DistributedDataParallel`` (``net`` itself when not distributed).

    Gradients are all-reduced by DDP; the returned wrapper shares ``net``'s parameters, so
    checkpoints keep saving ``net``.
    """
    if not info.active:
        return net
    from torch.nn.parallel import DistributedDataParallel

    if sync_batchnorm:
        net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(net)
    ids = [torch.cuda.current_device()] if info.backend == "nccl" else None
    return DistributedDataParallel(net, device_ids=ids)


class RankFailure(GraphforgeError):
    """Another rank died or stopped answering; the run directory stays resumable."""


def translate_failure(exc: BaseException, info: DistInfo) -> BaseException:
    """A lost peer (closed connection, collective timeout) as a one-line :class:`RankFailure`."""
    text = " ".join(str(exc).split())
    lost = ("Connection closed", "Connection reset", "timed out", "Timeout", "peer", "Broken pipe", "NCCL")
    if info.active and isinstance(exc, RuntimeError) and any(w in text for w in lost):
        return RankFailure(f"rank {info.rank} lost contact with the other ranks ({text[:160]}); the run directory "
                           "keeps the last finished epoch: relaunch with the same torchrun command and --resume DIR")
    return exc


#: The launcher's loggers: its warnings and tracebacks about a failed rank repeat, in 40 lines,
#: the one-line error the rank printed itself.
_LAUNCHER_LOGGERS = ("torch.distributed.elastic", "torch.distributed.launcher", "torch.distributed.run")


def launch(nproc: int, args: list[str]) -> int:
    """Run ``python ARGS`` (``["-m", "graphforge", ...]``) as ``nproc`` local processes under torch's launcher (``torchrun
    --standalone``) in this process; return the exit status.

    The ranks print their own errors; when one fails this adds one line (which rank, its exit
    status) in place of the launcher's log and traceback.

    Raises:
        ConfigError: If the launcher itself cannot start the processes.
        KeyboardInterrupt: If this process gets SIGINT or SIGTERM while they run.
    """
    import signal

    import click
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    loggers = [logging.getLogger(name) for name in _LAUNCHER_LOGGERS]
    kept = [(lg.propagate, lg.handlers[:]) for lg in loggers]
    omp = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = omp or "1"  # torchrun's default for its ranks, without its warning
    for lg in loggers:
        lg.propagate = False
        lg.handlers[:] = [logging.NullHandler()]
    try:
        run(parse_args(["--standalone", f"--nproc-per-node={nproc}", *args]))
    except ChildFailedError as exc:
        rank, failure = exc.get_first_failure()
        code = failure.exitcode
        how = (f"was killed by {signal.Signals(-code).name}" if code < 0 and -code in signal.valid_signals()
               else f"exited with status {code}")
        click.echo(f"Error: torchrun: rank {rank} (pid {failure.pid}) {how} ({len(exc.failures)} of {nproc} "
                   "processes failed); its error is printed above", err=True)
        return code if code > 0 else 1
    except SignalException as exc:
        from graphforge.engine.runner import Terminated

        raise (Terminated(str(exc)) if exc.sigval == signal.SIGTERM else KeyboardInterrupt(str(exc))) from None
    except Exception as exc:  # noqa: BLE001 - the launcher's own failure (rendezvous, ports) is one line
        raise ConfigError(f"torchrun could not start {nproc} processes: "
                          f"{' '.join(str(exc).split())[:200] or type(exc).__name__}") from None
    finally:
        for lg, (propagate, handlers) in zip(loggers, kept, strict=True):
            lg.propagate, lg.handlers[:] = propagate, handlers
        if omp is None:
            os.environ.pop("OMP_NUM_THREADS", None)
    return 0
