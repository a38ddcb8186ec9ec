"""``graphforge bench som``: graphforge's SOM against MiniSom on the same data and grid.

Equal work: MiniSom trains by iterations, one sample per iteration, so ``E`` epochs
over ``N`` samples are ``train(x, N * E, random_order=True)``; graphforge sees every
sample once per epoch too (batch mode: one BMU search over all samples and one
weighted-mean update per epoch; online mode: ``N / batch_size`` mini-batch updates).
Both start from the PCA initialisation, use the same grid, Gaussian neighbourhood,
start radius and learning rate, and radii decaying linearly to 1 (MiniSom's
``linear_decay_to_one``; graphforge ``decay="linear", sigma_end=1``), so the final
quantization errors compare maps trained to the same final radius. Both errors are
measured by one function (mean Euclidean distance to the best-matching unit).
MiniSom is optional (``pip install minisom``); without it only graphforge is timed.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from typing import Any

import click
import torch

from graphforge.bench.timing import sync
from graphforge.som.som import SelfOrganizingMap, nearest_units

DATASETS = ("digits", "synthetic")


def load_bench_data(name: str = "digits", n: int = 20_000, dim: int = 784, seed: int = 0) -> torch.Tensor:
    """Standardised float32 samples ``[N, D]``.

    Args:
        name (str, optional): ``"digits"`` (scikit-learn's 1,797 8x8 digits, 64-d) or
            ``"synthetic"`` (``n`` samples from 10 Gaussian clusters in ``dim`` dimensions,
            MNIST-sized by default). (default: ``"digits"``)
        n (int, optional): Samples of the synthetic set. (default: ``20000``)
        dim (int, optional): Features of the synthetic set. (default: ``784``)
        seed (int, optional): Seed of the synthetic set. (default: ``0``)
    """
    if name == "digits":
        from sklearn.datasets import load_digits

        x = torch.from_numpy(load_digits().data).float()
    elif name == "synthetic":
        g = torch.Generator().manual_seed(seed)
        centres = torch.randn(10, dim, generator=g) * 2.0
        x = centres[torch.randint(10, (n,), generator=g)] + torch.randn(n, dim, generator=g)
    else:
        raise click.BadParameter(f"data must be one of {', '.join(DATASETS)}, got {name!r}")
    return ((x - x.mean(0)) / x.std(0).clamp_min(1e-6)).contiguous()


def quantization_error(weights: torch.Tensor, x: torch.Tensor) -> float:
    """Mean Euclidean distance of the samples to their nearest weight vector."""
    w = weights.to(x.device, torch.float32)
    idx = nearest_units(x, w, 1)[1][:, 0]
    return float((x - w[idx]).norm(dim=1).mean())


def _time_graphforge(x: torch.Tensor, rows: int, cols: int, epochs: int, sigma: float, lr: float, mode: str,
                     batch_size: int, seed: int, device: torch.device, dtype: str) -> dict[str, Any]:
    def make() -> SelfOrganizingMap:
        return SelfOrganizingMap(rows, cols, sigma=sigma, sigma_end=1.0, lr=lr, decay="linear", mode=mode,
                                 init="pca", batch_size=batch_size, seed=seed, device=device, dtype=dtype)

    xd = x.to(device)
    make().fit(xd[:512], 1, track=False)  # warm-up: allocator, kernels, threads
    som = make()
    sync(device)
    start = time.perf_counter()
    som.fit(xd, epochs, track=False)
    sync(device)
    seconds = time.perf_counter() - start
    assert som.weights is not None
    return {"method": f"graphforge ({mode}, {dtype})", "device": str(device), "seconds": seconds,
            "seconds_per_epoch": seconds / epochs, "epochs": epochs,
            "quantization_error": quantization_error(som.weights, xd)}


def _time_minisom(x: torch.Tensor, rows: int, cols: int, epochs: int, sigma: float, lr: float,
                  seed: int) -> dict[str, Any] | None:
    try:
        from minisom import MiniSom
    except ImportError:
        return None
    data = x.cpu().double().numpy()
    som = MiniSom(rows, cols, data.shape[1], sigma=sigma, learning_rate=lr, neighborhood_function="gaussian",
                  decay_function="linear_decay_to_zero", sigma_decay_function="linear_decay_to_one",
                  random_seed=seed)
    som.pca_weights_init(data)
    start = time.perf_counter()
    som.train(data, len(data) * epochs, random_order=True)
    seconds = time.perf_counter() - start
    weights = torch.from_numpy(som.get_weights()).reshape(rows * cols, -1).float()
    return {"method": "minisom", "device": "cpu", "seconds": seconds, "seconds_per_epoch": seconds / epochs,
            "epochs": epochs, "quantization_error": quantization_error(weights, x.cpu())}


def run_som_benchmark(
    data: str = "digits",
    rows: int = 20,
    cols: int = 20,
    epochs: int = 10,
    *,
    n: int = 20_000,
    dim: int = 784,
    sigma: float | None = None,
    lr: float = 0.5,
    modes: tuple[str, ...] = ("batch", "online"),
    dtypes: tuple[str, ...] = ("float64", "float32"),
    batch_size: int = 256,
    device: str = "cpu",
    minisom: bool = True,
    minisom_epochs: int | None = None,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Time graphforge's SOM (each mode) and MiniSom on the same data and grid.

    Args:
        data (str, optional): ``"digits"`` or ``"synthetic"`` (see :func:`load_bench_data`). (default: ``"digits"``)
        rows (int, optional): Grid rows. (default: ``20``)
        cols (int, optional): Grid columns. (default: ``20``)
        epochs (int, optional): Passes over the data for every method. (default: ``10``)
        n (int, optional): Synthetic samples. (default: ``20000``)
        dim (int, optional): Synthetic features. (default: ``784``)
        sigma (float, optional): Start radius. (default: ``max(rows, cols) / 2``)
        lr (float, optional): Start learning rate (online graphforge and MiniSom). (default: ``0.5``)
        modes (tuple of str, optional): graphforge training modes to time. (default: ``("batch", "online")``)
        dtypes (tuple of str, optional): Map precisions to time, each mode in each (float64 is
            the map's default). (default: ``("float64", "float32")``)
        batch_size (int, optional): Mini-batch of graphforge's online mode. (default: ``256``)
        device (str, optional): ``cpu``, ``cuda`` or ``auto`` for graphforge. (default: ``"cpu"``)
        minisom (bool, optional): Also time MiniSom when it is installed. (default: ``True``)
        minisom_epochs (int, optional): Epochs for MiniSom (default: ``epochs``; fewer
            gives its seconds per epoch sooner, but then its error is not comparable).
        seed (int, optional): Seed of the data, initialisation and sample order. (default: ``0``)
        log: Progress messages (default: stderr).

    Returns:
        ``{"config": {...}, "results": [...], "notes": [...]}`` with seconds per epoch and
        final quantization error per method, and ``speedup`` / ``qe_ratio`` (graphforge
        over MiniSom) when MiniSom ran.
    """
    say = log or (lambda msg: click.echo(msg, err=True))
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device))
    x = load_bench_data(data, n, dim, seed)
    sigma = max(rows, cols) / 2.0 if sigma is None else sigma
    config = {"data": data, "samples": int(x.shape[0]), "features": int(x.shape[1]), "grid": f"{rows}x{cols}",
              "epochs": epochs, "sigma": sigma, "sigma_end": 1.0, "lr": lr, "batch_size": batch_size,
              "torch_threads": torch.get_num_threads(), "device": str(dev)}
    say(f"SOM benchmark: {config}")
    results: list[dict[str, Any]] = []
    notes: list[str] = []
    for mode in modes:
        for dtype in dtypes:
            row = _time_graphforge(x, rows, cols, epochs, sigma, lr, mode, batch_size, seed, dev, dtype)
            say(f"  {row['method']:<31} {row['seconds_per_epoch']:.4f} s/epoch  QE {row['quantization_error']:.4f}")
            results.append(row)
    if minisom:
        m_epochs = minisom_epochs or epochs
        row = _time_minisom(x, rows, cols, m_epochs, sigma, lr, seed)
        if row is None:
            notes.append("MiniSom is not installed (pip install minisom); only graphforge was timed")
        else:
            say(f"  {row['method']:<31} {row['seconds_per_epoch']:.4f} s/epoch  QE {row['quantization_error']:.4f}")
            results.append(row)
            if m_epochs != epochs:
                notes.append(f"MiniSom ran {m_epochs} epochs, graphforge {epochs}: compare seconds per epoch only")
            for r in results[:-1]:
                r["speedup"] = row["seconds_per_epoch"] / r["seconds_per_epoch"]
                r["qe_ratio"] = r["quantization_error"] / row["quantization_error"]
    else:
        notes.append("MiniSom skipped (--skip-minisom)")
    return {"config": config, "results": results, "notes": notes}


def format_table(result: dict[str, Any]) -> str:
    """The benchmark result as a text table."""
    c = result["config"]
    header = (f"SOM {c['grid']} on {c['data']} ({c['samples']} x {c['features']}), {c['epochs']} epochs, "
              f"{c['torch_threads']} torch threads")
    lines = [header,
             f"{'method':<31} {'device':<7} {'s/epoch':>10} {'final QE':>10} {'speed-up':>9} {'QE ratio':>9}"]
    for r in result["results"]:
        speed = f"{r['speedup']:.1f}x" if "speedup" in r else "-"
        ratio = f"{r['qe_ratio']:.3f}" if "qe_ratio" in r else "-"
        lines.append(f"{r['method']:<31} {r['device']:<7} {r['seconds_per_epoch']:>10.4f} "
                     f"{r['quantization_error']:>10.4f} {speed:>9} {ratio:>9}")
    lines += [f"note: {n}" for n in result["notes"]]
    if any("speedup" in r for r in result["results"]):
        lines.append("speed-up = MiniSom s/epoch / graphforge s/epoch; QE ratio = graphforge QE / MiniSom QE")
    return "\n".join(lines)


@click.command("som")
@click.option("--data", type=click.Choice(DATASETS), default="digits", show_default=True,
              help="digits: 1,797 x 64; synthetic: --n x --dim Gaussian clusters.")
@click.option("--rows", type=click.IntRange(1), default=20, show_default=True)
@click.option("--cols", type=click.IntRange(1), default=20, show_default=True)
@click.option("--epochs", type=click.IntRange(1), default=10, show_default=True, help="Passes over the data, every method.")
@click.option("--n", "n", type=click.IntRange(1), default=20_000, show_default=True, help="Synthetic samples.")
@click.option("--dim", type=click.IntRange(2), default=784, show_default=True, help="Synthetic features.")
@click.option("--sigma", type=float, default=None, help="Start radius [max(rows, cols) / 2].")
@click.option("--mode", "modes", multiple=True, type=click.Choice(["batch", "online"]),
              help="graphforge modes to time (repeatable) [batch and online].")
@click.option("--dtype", "dtypes", multiple=True, type=click.Choice(["float64", "float32"]),
              help="Map precisions to time (repeatable) [float64 and float32].")
@click.option("--batch-size", type=click.IntRange(1), default=256, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--skip-minisom", is_flag=True, help="Time graphforge only.")
@click.option("--minisom-epochs", type=click.IntRange(1), default=None, help="Epochs for MiniSom [--epochs].")
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
def som_command(data: str, rows: int, cols: int, epochs: int, n: int, dim: int, sigma: float | None,
                modes: tuple[str, ...], dtypes: tuple[str, ...], batch_size: int, device: str, skip_minisom: bool,
                minisom_epochs: int | None, seed: int, as_json: bool) -> None:
    """Seconds per epoch and final quantization error: graphforge's SOM vs MiniSom."""
    from graphforge.errors import GraphforgeError

    if device == "cuda" and not torch.cuda.is_available():
        raise click.BadParameter("CUDA is not available here; use --device cpu or auto", param_hint="--device")
    if sigma is not None and not (sigma > 0 and math.isfinite(sigma)):
        raise click.BadParameter(f"must be > 0, got {sigma}", param_hint="--sigma")
    try:
        result = run_som_benchmark(data, rows, cols, epochs, n=n, dim=dim, sigma=sigma, modes=modes or ("batch", "online"),
                                   dtypes=dtypes or ("float64", "float32"), batch_size=batch_size, device=device, minisom=not skip_minisom,
                                   minisom_epochs=minisom_epochs, seed=seed)
    except GraphforgeError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps(result) if as_json else format_table(result))
