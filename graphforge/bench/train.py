"""Training / inference throughput of ``dyn_knn + sage`` with the native KNN op
against the pure-PyTorch reference path, on synthetic images of a given size.

Synthetic images are enough for throughput: the work per image does not depend
on the pixel values (the k head's output only changes how many edges are kept,
and the benchmark reports the mean k it saw).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from unittest import mock

import torch
from torch import nn

from graphforge.api import get_converter, get_model
from graphforge.bench.timing import median_seconds, network_steps
from graphforge.core.data import InputSpec
from graphforge.ops import _extension

BACKENDS = ("native", "reference")


@contextmanager
def knn_backend(name: str) -> Iterator[None]:
    """Run the KNN op on ``"native"`` kernels or the pure-PyTorch ``"reference"``."""
    if name == "reference":
        with mock.patch.object(_extension, "native_available", lambda device_type="cpu": False):
            yield
    elif name == "native":
        yield
    else:
        raise ValueError(f"backend must be native or reference, got {name!r}")


@dataclass
class TrainBenchResult:
    """Throughput of one backend."""

    backend: str
    device: str
    train_images_per_s: float
    infer_images_per_s: float
    mean_k: float

    def epoch_seconds(self, images: int) -> float:
        """Estimated seconds for one training epoch over ``images`` images."""
        return images / self.train_images_per_s


def run_train_benchmark(
    *,
    image_size: int = 28,
    channels: int = 1,
    batch_size: int = 256,
    num_classes: int = 26,
    steps: int = 10,
    warmup: int = 2,
    device: str = "cpu",
    backends: tuple[str, ...] = BACKENDS,
    converter_options: dict[str, Any] | None = None,
    model_options: dict[str, Any] | None = None,
    progress: Callable[[str], None] = lambda msg: None,
) -> list[TrainBenchResult]:
    """Measure images/s for training steps and inference batches of ``dyn_knn + sage``.

    Args:
        image_size: Height and width of the synthetic images.
        channels: Image channels.
        batch_size: Images per step.
        num_classes: Classes of the classifier head.
        steps: Timed steps per figure (the median is reported).
        warmup: Untimed steps first.
        device: ``"cpu"`` or ``"cuda"``.
        backends: Which KNN paths to measure (``native``, ``reference``).
        converter_options: Options of ``dyn_knn`` (default: its defaults).
        model_options: Options of ``sage`` (default: its defaults).
        progress: Called with a line of progress text.

    Returns:
        One :class:`TrainBenchResult` per backend.
    """
    dev = torch.device(device)
    spec = InputSpec("images", (channels, image_size, image_size))
    results = []
    for backend in backends:
        torch.manual_seed(0)
        conv = get_converter("dyn_knn", **(converter_options or {}))
        conv.check_input(spec)
        model = get_model("sage", **(model_options or {}))
        net = nn.Sequential(conv.build(spec), model.build(conv.output_spec(spec), num_classes)).to(dev)
        x = torch.randn(batch_size, *spec.shape, device=dev)
        y = torch.randint(0, num_classes, (batch_size,), device=dev)
        train_step, infer_step = network_steps(net, x, y)
        with knn_backend(backend):
            progress(f"bench train: {backend} on {device}: training steps ...")
            t_train = median_seconds(train_step, steps, warmup, dev)
            progress(f"bench train: {backend} on {device}: inference ...")
            t_infer = median_seconds(infer_step, steps, warmup, dev)
            net.eval()
            with torch.no_grad():
                mean_k = float(net[0](x).k.float().mean())
        results.append(TrainBenchResult(backend, device, batch_size / t_train, batch_size / t_infer, mean_k))
    return results


def format_table(results: list[TrainBenchResult], epoch_images: int = 124_800) -> str:
    """Format results as a text table with ratios against the reference path."""
    ref = next((r for r in results if r.backend == "reference"), None)
    lines = [f"{'backend':<10} {'device':<6} {'train img/s':>12} {'infer img/s':>12} {'epoch (s)':>10} "
             f"{'train x':>8} {'infer x':>8} {'mean k':>7}"]
    for r in results:
        tx = r.train_images_per_s / ref.train_images_per_s if ref else float("nan")
        ix = r.infer_images_per_s / ref.infer_images_per_s if ref else float("nan")
        lines.append(f"{r.backend:<10} {r.device:<6} {r.train_images_per_s:12.1f} {r.infer_images_per_s:12.1f} "
                     f"{r.epoch_seconds(epoch_images):10.1f} {tx:8.2f} {ix:8.2f} {r.mean_k:7.2f}")
    lines.append(f"epoch = {epoch_images:,} images (EMNIST Letters train); x = speed-up over the reference path")
    return "\n".join(lines)


# --- contention: the Quickstart job idle and next to busy processes ---------------------------
#: A neighbour that keeps one core busy (pure Python: no threads of its own).
_BUSY_LOOP = "while True:\n    pass\n"


def _quickstart_seconds(epochs: int, env: dict[str, str], extra: list[str]) -> tuple[float, float]:
    """``(train seconds, wall seconds)`` of ``graphforge run --converter dyn_knn --model sage`` in a new process."""
    import json
    import subprocess
    import sys
    import tempfile
    import time

    with tempfile.TemporaryDirectory(prefix="graphforge-contend-") as tmp:
        cmd = [sys.executable, "-m", "graphforge", "run", "--converter", "dyn_knn", "--model", "sage",
               "--epochs", str(epochs), "--no-plots", "--json", "-q", "--out", f"{tmp}/run", *extra]
        start = time.perf_counter()
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3600, check=True)
        wall = time.perf_counter() - start
    return float(json.loads(out.stdout)["train_seconds"]), wall


def run_contention_benchmark(contend: int, *, epochs: int = 5, repeats: int = 3,
                             threads: int | None = None, env: dict[str, str] | None = None) -> dict[str, Any]:
    """The Quickstart job (digits, ``dyn_knn`` + ``sage``) idle, then beside ``contend`` busy processes.

    Returns:
        Medians of training and wall seconds for both, and their ratios (contended / idle).
    """
    import os
    import statistics
    import subprocess
    import sys

    env = {**os.environ, **(env or {})}
    extra = ["--threads", str(threads)] if threads else []
    idle = [_quickstart_seconds(epochs, env, extra) for _ in range(repeats)]
    neighbours = [subprocess.Popen([sys.executable, "-c", _BUSY_LOOP]) for _ in range(contend)]
    try:
        busy = [_quickstart_seconds(epochs, env, extra) for _ in range(repeats)]
    finally:
        for p in neighbours:
            p.kill()
            p.wait()
    med = {name: (statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs))
           for name, runs in (("idle", idle), ("busy", busy))}
    return {
        "contend": contend, "epochs": epochs, "repeats": repeats, "threads": threads,
        "idle_train_s": med["idle"][0], "idle_wall_s": med["idle"][1],
        "busy_train_s": med["busy"][0], "busy_wall_s": med["busy"][1],
        "train_ratio": med["busy"][0] / med["idle"][0], "wall_ratio": med["busy"][1] / med["idle"][1],
    }
