"""``graphforge bench knn-classifier``: graphforge's exact kNN classifier against scikit-learn.

Both classify the same problem in process: by default a random one (60,000 x 784 train,
10,000 test, float32, 10 classes), with ``--real DIR`` real Fashion-MNIST / MNIST (k = 5,
euclidean, uniform weights). The table gives the median seconds of each, their ratio, the
fp32 matmul floor for the same work (``2 * n_train * n_test * dim`` FLOPs at the faster of
the measured ``torch.mm`` and NumPy BLAS rates, since the search may use either: see
:mod:`graphforge.neighbors.gemm`), graphforge with its int8 candidate pass switched off
(``GRAPHFORGE_KNN_INT8=off``; the pass only applies to data on an 8-bit grid, such as
images), and whether the predictions are identical. With ``--real`` the whole processes
are timed too. Progress goes to stderr, the table to stdout.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from typing import Any

import click
import numpy as np
import torch

from graphforge.bench.timing import knn_floor_seconds, matmul_gflops
from graphforge.neighbors import SearchStats
from graphforge.neighbors.int8 import INT8_ENV, cpu_int8_features


def run_knn_classifier_benchmark(
    n_train: int = 60_000,
    n_test: int = 10_000,
    dim: int = 784,
    k: int = 5,
    num_classes: int = 10,
    repeats: int = 1,
    sklearn_repeats: int = 1,
    backend: str = "auto",
    seed: int = 0,
    skip_sklearn: bool = False,
    log: Any = None,
    data: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Time graphforge's :class:`KNNClassifier` and scikit-learn's brute-force classifier.

    Args:
        n_train, n_test, dim: Problem size (uniform random float32 features; ignored with ``data``).
        k: Number of neighbours.
        num_classes: Number of random classes.
        repeats: Timed graphforge runs (the median is reported).
        sklearn_repeats: Timed scikit-learn runs.
        backend: graphforge's candidate search backend (``auto``, ``torch`` or ``faiss``).
        seed: Seed of the random data.
        skip_sklearn: Time graphforge only.
        log: ``callable(str)`` for progress (default: print to stderr).
        data: ``(x_train, y_train, x_test)`` to classify instead of random data.

    Returns:
        A dict with the timings, the floor, the ratios and ``identical_predictions``.
    """
    from graphforge.neighbors import KNNClassifier  # noqa: PLC0415

    say = log or (lambda msg: click.echo(msg, err=True))
    if data is None:
        rng = np.random.default_rng(seed)
        x_train = rng.random((n_train, dim), dtype=np.float32)
        x_test = rng.random((n_test, dim), dtype=np.float32)
        y_train = rng.integers(0, num_classes, n_train)
    else:
        x_train, y_train, x_test = data
        (n_train, dim), n_test = x_train.shape, len(x_test)

    clf = KNNClassifier(k=k, backend=backend, device="cpu").fit(x_train, y_train)
    # The same classifier without the int8 candidate pass (read when the index is built).
    before = os.environ.get(INT8_ENV)
    os.environ[INT8_ENV] = "off"
    try:
        clf_fp32 = KNNClassifier(k=k, backend=backend, device="cpu").fit(x_train, y_train)
    finally:
        if before is None:
            os.environ.pop(INT8_ENV, None)
        else:
            os.environ[INT8_ENV] = before
    sk = None
    if not skip_sklearn:
        from sklearn.neighbors import KNeighborsClassifier  # noqa: PLC0415

        sk = KNeighborsClassifier(n_neighbors=k, algorithm="brute", n_jobs=-1).fit(x_train, y_train)
    # Rounds interleave the two (and a matmul-rate probe), so load from other
    # processes on a shared machine hits both alike; medians are reported.
    times: list[float] = []
    fp32_times: list[float] = []
    sk_times: list[float] = []
    rates: list[float] = []
    numpy_rates: list[float] = []
    pred = fp32_pred = sk_pred = None
    for r in range(max(repeats, sklearn_repeats if sk is not None else 0)):
        rates.append(matmul_gflops())
        numpy_rates.append(matmul_gflops(blas="numpy"))
        if r < repeats:
            say(f"graphforge knn run {r + 1}/{repeats} ...")
            start = time.perf_counter()
            pred = clf.predict(x_test)
            times.append(time.perf_counter() - start)
            say(f"graphforge knn run {r + 1}/{repeats}, int8 pass off ...")
            start = time.perf_counter()
            fp32_pred = clf_fp32.predict(x_test)
            fp32_times.append(time.perf_counter() - start)
        if sk is not None and r < sklearn_repeats:
            say(f"scikit-learn run {r + 1}/{sklearn_repeats} ...")
            start = time.perf_counter()
            sk_pred = sk.predict(x_test)
            sk_times.append(time.perf_counter() - start)
    gflops = max(statistics.median(rates), statistics.median(numpy_rates))
    floor = knn_floor_seconds(n_train, n_test, dim, gflops)
    stats = SearchStats()
    # One cheap extra search on a slice, to report the backend used.
    assert clf._index is not None
    clf._index.search(x_test[: min(n_test, 256)], k, stats=stats)
    assert pred is not None and fp32_pred is not None
    result: dict[str, Any] = {
        "data": "random" if data is None else "given",
        "n_train": n_train, "n_test": n_test, "dim": dim, "k": k,
        "threads": torch.get_num_threads(),
        "backend": stats.backend,
        "int8_pass": stats.int8_queries > 0,
        "cpu_int8_features": sorted(cpu_int8_features()),
        "graphforge_seconds": statistics.median(times),
        "graphforge_runs": times,
        "fp32_pass_seconds": statistics.median(fp32_times),
        "fp32_pass_runs": fp32_times,
        "identical_to_fp32_pass": bool(np.array_equal(pred, fp32_pred)),
        "matmul_gflops": gflops,
        "torch_mm_gflops_runs": rates,
        "numpy_matmul_gflops_runs": numpy_rates,
        "cpu_gemm": clf._index.cpu_gemm if clf._index is not None else "",
        "fp32_floor_seconds": floor,
    }
    result["graphforge_vs_floor"] = result["graphforge_seconds"] / floor
    result["fp32_pass_vs_floor"] = result["fp32_pass_seconds"] / floor
    if sk is not None:
        result["sklearn_seconds"] = statistics.median(sk_times)
        result["sklearn_runs"] = sk_times
        result["speedup_vs_sklearn"] = result["sklearn_seconds"] / result["graphforge_seconds"]
        result["sklearn_vs_floor"] = result["sklearn_seconds"] / floor
        assert sk_pred is not None
        result["identical_predictions"] = bool(np.array_equal(pred, sk_pred))
        result["differing_predictions"] = int((pred != sk_pred).sum())
    return result


def _label(result: dict[str, Any]) -> str:
    if result["int8_pass"]:
        return "graphforge (int8 pass)"
    gemm = f", {result['cpu_gemm']} gemm" if result["cpu_gemm"] else ""
    return f"graphforge ({result['backend']}{gemm})"


def format_table(result: dict[str, Any]) -> str:
    """Render a benchmark result as a plain-text table."""
    lines = [
        f"kNN classifier ({result['data']} data): {result['n_train']} x {result['dim']} train, "
        f"{result['n_test']} test, k={result['k']}, euclidean, {result['threads']} threads; "
        f"CPU int8 features: {', '.join(result['cpu_int8_features']) or 'none'}",
        f"{'':28s}{'seconds':>10s}{'x floor':>10s}",
        f"{'fp32 matmul floor':28s}{result['fp32_floor_seconds']:10.2f}{1.0:10.2f}"
        f"   ({result['matmul_gflops']:.1f} GFLOP/s: torch.mm {statistics.median(result['torch_mm_gflops_runs']):.1f},"
        f" numpy {statistics.median(result['numpy_matmul_gflops_runs']):.1f})",
        f"{_label(result):28s}{result['graphforge_seconds']:10.2f}{result['graphforge_vs_floor']:10.2f}",
        f"{'graphforge, int8 pass off':28s}{result['fp32_pass_seconds']:10.2f}{result['fp32_pass_vs_floor']:10.2f}"
        f"   (identical predictions: {'yes' if result['identical_to_fp32_pass'] else 'NO'})",
    ]
    if "sklearn_seconds" in result:
        lines += [
            f"{'scikit-learn brute':28s}{result['sklearn_seconds']:10.2f}{result['sklearn_vs_floor']:10.2f}",
            f"speed-up vs scikit-learn: {result['speedup_vs_sklearn']:.2f}x;  identical predictions: "
            f"{'yes' if result['identical_predictions'] else 'no (' + str(result['differing_predictions']) + ' differ)'}",
        ]
    return "\n".join(lines)


# --- whole processes on real files ------------------------------------------------------
#: The scikit-learn side of ``--real``: a plain script a user would write (read the IDX
#: files, scale to [0, 1], KNeighborsClassifier(k).fit().predict()).
SKLEARN_SCRIPT = """
import gzip, sys, numpy as np
from pathlib import Path
from sklearn.neighbors import KNeighborsClassifier
raw = Path(sys.argv[1]) / sys.argv[2] / "raw"
def images(name):
    with gzip.open(raw / name) as f:
        data = f.read()
    return np.frombuffer(data, np.uint8, offset=16).reshape(-1, 784).astype(np.float32) / 255.0
def labels(name):
    with gzip.open(raw / name) as f:
        return np.frombuffer(f.read(), np.uint8, offset=8)
x, y = images("train-images-idx3-ubyte.gz"), labels("train-labels-idx1-ubyte.gz")
xt, yt = images("t10k-images-idx3-ubyte.gz"), labels("t10k-labels-idx1-ubyte.gz")
pred = KNeighborsClassifier(n_neighbors=int(sys.argv[3]), algorithm="brute").fit(x, y).predict(xt)
print((pred == yt).mean())
"""
_FOLDERS = {"fashion-mnist": "FashionMNIST", "mnist": "MNIST"}


def real_arrays(root: str, dataset: str = "fashion-mnist") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(x_train, y_train, x_test)`` of a real IDX dataset, pixels scaled to [0, 1] like the script."""
    from pathlib import Path  # noqa: PLC0415

    from graphforge.builtin.datasets.idx import read_idx_images, read_idx_labels  # noqa: PLC0415

    raw = Path(root) / _FOLDERS[dataset] / "raw"

    def images(name: str) -> np.ndarray:
        return read_idx_images(raw / name).reshape(-1, 784).astype(np.float32) / 255.0

    return (images("train-images-idx3-ubyte.gz"), read_idx_labels(raw / "train-labels-idx1-ubyte.gz"),
            images("t10k-images-idx3-ubyte.gz"))


def _timed(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    import subprocess

    start = time.perf_counter()
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=3600, env=env)
    return time.perf_counter() - start, out.stdout


def run_real_knn_benchmark(root: str, dataset: str = "fashion-mnist", k: int = 5, repeats: int = 1,
                           log: Any = None) -> dict[str, Any]:
    """Whole processes on real IDX files: ``graphforge run ... --model knn`` against a scikit-learn script.

    graphforge runs with ``-o val_fraction=0`` so both search the same test images against
    the same training images (no validation search), and must reach the same accuracy.
    """
    import os
    import sys
    import tempfile

    say = log or (lambda msg: click.echo(msg, err=True))
    folder = _FOLDERS[dataset]
    gf_times, sk_times, gf_acc, sk_acc = [], [], None, None
    for i in range(repeats):
        with tempfile.TemporaryDirectory(prefix="graphforge-knn-") as tmp:
            argv = [sys.executable, "-m", "graphforge", "run", "--dataset", dataset, "--data-root", root,
                    "--converter", "none", "--model", "knn", "-o", f"k={k}", "-o", "val_fraction=0",
                    "--no-plots", "--json", "-q", "--out", f"{tmp}/run"]
            seconds, out = _timed(argv, {**os.environ})
            gf_times.append(seconds)
            gf_acc = float(json.loads(out)["test_accuracy"])
        say(f"graphforge run {i + 1}/{repeats}: {seconds:.2f} s (test accuracy {gf_acc:.4f})")
        seconds, out = _timed([sys.executable, "-c", SKLEARN_SCRIPT, root, folder, str(k)])
        sk_times.append(seconds)
        sk_acc = float(out.strip())
        say(f"scikit-learn script {i + 1}/{repeats}: {seconds:.2f} s (test accuracy {sk_acc:.4f})")
    gf, sk = statistics.median(gf_times), statistics.median(sk_times)
    return {"dataset": dataset, "k": k, "repeats": repeats, "graphforge_seconds": gf, "sklearn_seconds": sk,
            "speedup": sk / gf, "graphforge_accuracy": gf_acc, "sklearn_accuracy": sk_acc,
            # graphforge reports a float32 accuracy, the script a float64 one
            "same_accuracy": gf_acc is not None and sk_acc is not None and abs(gf_acc - sk_acc) < 1e-6}


@click.command("knn-classifier")
@click.option("--n-train", default=60_000, show_default=True, type=click.IntRange(1), help="Training samples.")
@click.option("--n-test", default=10_000, show_default=True, type=click.IntRange(1), help="Test samples.")
@click.option("--dim", default=784, show_default=True, type=click.IntRange(1), help="Features per sample.")
@click.option("-k", "--k", "k", default=5, show_default=True, type=click.IntRange(1), help="Neighbours.")
@click.option("--repeats", default=1, show_default=True, type=click.IntRange(1), help="Timed graphforge runs (median).")
@click.option("--sklearn-repeats", default=1, show_default=True, type=click.IntRange(1), help="Timed scikit-learn runs.")
@click.option("--backend", default="auto", show_default=True, type=click.Choice(["auto", "torch", "faiss"]))
@click.option("--skip-sklearn", is_flag=True, help="Time graphforge only.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0))
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
@click.option("--real", "real_root", type=click.Path(exists=True, file_okay=False),
              help="Instead: whole processes on real IDX files under this folder (FashionMNIST/raw, MNIST/raw).")
@click.option("--dataset", type=click.Choice(sorted(_FOLDERS)), default="fashion-mnist", show_default=True,
              help="With --real: which dataset.")
def knn_classifier_command(
    n_train: int, n_test: int, dim: int, k: int, repeats: int, sklearn_repeats: int,
    backend: str, skip_sklearn: bool, seed: int, as_json: bool, real_root: str | None, dataset: str,
) -> None:
    """Time graphforge's exact kNN classifier against scikit-learn (brute force).

    With --real DIR: `graphforge run --model knn` as a whole process against a whole
    scikit-learn script on the same IDX files (start-up, loading and search all counted).
    """
    if real_root is not None:
        result = run_real_knn_benchmark(real_root, dataset, k, repeats)
        in_process = run_knn_classifier_benchmark(
            k=k, repeats=repeats, sklearn_repeats=sklearn_repeats, backend=backend, skip_sklearn=skip_sklearn,
            data=real_arrays(real_root, dataset),
        )
        in_process["data"] = dataset
        if as_json:
            click.echo(json.dumps({"whole_process": result, "in_process": in_process}))
            return
        click.echo(
            f"{dataset}, k={k}, whole processes, median of {repeats}: graphforge {result['graphforge_seconds']:.2f} s, "
            f"scikit-learn {result['sklearn_seconds']:.2f} s -> {result['speedup']:.2f}x; test accuracy "
            f"{result['graphforge_accuracy']:.4f} vs {result['sklearn_accuracy']:.4f}")
        click.echo(format_table(in_process))
        return
    if k > n_train:
        raise click.BadParameter(f"k={k} is larger than --n-train={n_train}", param_hint="-k")
    result = run_knn_classifier_benchmark(
        n_train, n_test, dim, k, repeats=repeats, sklearn_repeats=sklearn_repeats,
        backend=backend, seed=seed, skip_sklearn=skip_sklearn,
    )
    click.echo(json.dumps(result) if as_json else format_table(result))
