"""``graphforge bench results``: every seed experiment rerun on real data, one table.

The experiments of the four systems graphforge unifies, with a fixed protocol, through the
same :func:`graphforge.run` path as the CLI (each row names the equivalent command):

* ``fashion-10k`` — Fashion-MNIST, seeded stratified 10,000 training / 2,000 validation /
  2,000 test images (the original's 10k / 2k setting): ``dyn_knn`` + ``sage`` with the
  learned k and with fixed k in {4, 8, 16}, ``cnn``, ``mlp``, and ``knn`` for k in
  {1, 3, 5, 9, 50} (the original's sweep; one search at k = 50) next to scikit-learn's
  ``KNeighborsClassifier`` on the same images.
* ``fashion-full`` — the same on every image (train minus the validation split, 10,000 test).
* ``mnist-som`` — MNIST: ``som_select`` + ``knn`` k = 3 on 100 pixels with every selection
  rule, against ``knn`` k = 3 on all 784 pixels.
* ``fashion-similarity`` — a 2,000-image Fashion subset split 80/10/10 as the original:
  one similarity graph per embedding (raw pixels; the penultimate features of a ``cnn``
  trained on the training split) x metric (cosine, euclidean) x threshold (for each seed's
  embeddings, the one that gives a mean degree of 5, 10 or 20: the converter's ``degree``),
  classified by ``gcn``, ``sage``, ``mlp`` (the same embeddings, no graph) and ``label_prop``.

Every run is recorded in ``runs.csv`` as soon as it finishes, so an interrupted benchmark
resumes where it stopped; ``results.md`` and ``summary.csv`` give mean ± std over the
seeds, the median test accuracy and the wall time per cell. Choices are made on
validation accuracy; test accuracy is reported, never used to choose.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
import shlex
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from graphforge.errors import ConfigError, DataError

log = logging.getLogger("graphforge")

GROUPS: tuple[str, ...] = ("fashion-10k", "fashion-full", "mnist-som", "fashion-similarity")
KNN_SWEEP: tuple[int, ...] = (1, 3, 5, 9, 50)
FIXED_KS: tuple[int, ...] = (4, 8, 16)
SOM_SELECTIONS: tuple[str, ...] = ("decorrelated", "residual", "between", "variance", "norm")
SIMILARITY_METRICS: tuple[str, ...] = ("cosine", "euclidean")
TARGET_DEGREES: tuple[int, ...] = (5, 10, 20)
SIMILARITY_MODELS: tuple[str, ...] = ("gcn", "sage", "mlp", "label_prop")
RUN_COLUMNS = ("group", "cell", "seed", "status", "val_accuracy", "test_accuracy", "sklearn_test_accuracy",
               "train_seconds", "wall_seconds", "extra", "command", "error")
SUMMARY_COLUMNS = ("group", "cell", "seeds", "val_mean", "val_std", "test_mean", "test_std", "test_median",
                   "sklearn_test_mean", "wall_seconds_mean", "command")


@dataclass(frozen=True)
class Cell:
    """One configuration of the table (a row), run once per seed.

    Attributes:
        group: Experiment group (one of :data:`GROUPS`).
        name: Row label.
        converter, model, dataset: As for :func:`graphforge.run`.
        options: Plugin options (``-o``).
        settings: Other run settings (``limit_train``, ``epochs``, ...).
        shown_options, shown_settings: What the row's command writes for some of ``options`` /
            ``settings`` (a path under the benchmark's folder as ``OUT/...``, so the command does
            not name this machine's folders).
    """

    group: str
    name: str
    converter: str
    model: str
    dataset: str
    options: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    shown_options: dict[str, Any] = field(default_factory=dict)
    shown_settings: dict[str, Any] = field(default_factory=dict)


#: How commands name the data folder and the benchmark's own folder (the table's header says so).
DATA = "DATA"
OUT = "OUT"


def command_line(cell: Cell, seed: int, data_root: str | None, settings: dict[str, Any]) -> str:
    """The ``graphforge run`` command that reproduces one run of ``cell`` (the data folder written ``DATA``)."""
    parts = ["graphforge", "run", "--dataset", cell.dataset, "--converter", cell.converter, "--model", cell.model]
    if data_root:
        parts += ["--data-root", DATA]
    for key, value in {**settings, **cell.shown_settings}.items():
        parts += [f"--{key.replace('_', '-')}", str(value)]
    for key, value in {**cell.options, **cell.shown_options}.items():
        text = json.dumps(value, separators=(",", ":")) if isinstance(value, (list, dict, bool)) else str(value)
        parts += ["-o", f"{key}={text}"]
    parts += ["--seed", str(seed)]
    return shlex.join(parts)


# --- the protocol ------------------------------------------------------------------------
FASHION_10K = {"limit_train": 10_000, "limit_test": 2_000}
#: --quick: the same experiments on 2,000 / 500 / 500 images and few epochs (a smoke run).
FASHION_QUICK = {"limit_train": 2_000, "limit_test": 500}
SIMILARITY_SPLIT = {"limit_train": 1_600, "limit_test": 200}


def fashion_cells(group: str, settings: dict[str, Any], quick: bool) -> list[Cell]:
    """The Fashion-MNIST rows of one group (``fashion-10k`` or ``fashion-full``)."""
    epochs = {"epochs": 2} if quick else {}
    cells = [Cell(group, "dyn_knn + sage (learned k)", "dyn_knn", "sage", "fashion-mnist", {}, {**settings, **epochs})]
    cells += [Cell(group, f"dyn_knn + sage (k = {k})", "dyn_knn", "sage", "fashion-mnist",
                   {"learn_k": False, "k": k}, {**settings, **epochs}) for k in (FIXED_KS[:1] if quick else FIXED_KS)]
    cells += [Cell(group, "cnn", "none", "cnn", "fashion-mnist", {}, {**settings, **epochs}),
              # The flagship's encoder (one convolution per block) with the CNN's pooled linear head:
              # what the graph part of dyn_knn + sage is measured against.
              Cell(group, "cnn (convs_per_block = 1)", "none", "cnn", "fashion-mnist", {"convs_per_block": 1},
                   {**settings, **epochs}),
              Cell(group, "mlp", "none", "mlp", "fashion-mnist", {}, {**settings, **epochs}),
              Cell(group, "knn", "none", "knn", "fashion-mnist", {"k": 5, "sweep": list(KNN_SWEEP)}, dict(settings))]
    return cells


def som_cells(quick: bool) -> list[Cell]:
    """MNIST: SOM feature selection + kNN with every rule, and kNN on all pixels."""
    settings = {"limit_train": 2_000, "limit_test": 400} if quick else {}
    rules = SOM_SELECTIONS[:1] + SOM_SELECTIONS[-1:] if quick else SOM_SELECTIONS
    cells = [Cell("mnist-som", f"som_select ({rule}) + knn k=3, 100 pixels", "som_select", "knn", "mnist",
                  {"k": 3, "features": 100, "selection": rule}, dict(settings)) for rule in rules]
    cells.append(Cell("mnist-som", "knn k=3, all 784 pixels", "none", "knn", "mnist", {"k": 3}, dict(settings)))
    return cells


def cells_for(groups: Sequence[str], quick: bool) -> list[Cell]:
    """The fixed (non-similarity) cells of ``groups``."""
    cells: list[Cell] = []
    for group in groups:
        if group == "fashion-10k":
            cells += fashion_cells(group, FASHION_QUICK if quick else FASHION_10K, quick)
        elif group == "fashion-full":
            cells += fashion_cells(group, FASHION_QUICK if quick else {}, quick)
        elif group == "mnist-som":
            cells += som_cells(quick)
    return cells


# --- the record --------------------------------------------------------------------------
class RunsFile:
    """``runs.csv``: one row per finished run, appended as each finishes (resumable)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> list[dict[str, str]]:
        if not self.path.is_file():
            return []
        text = self.path.read_text(encoding="utf-8")
        lines = text.splitlines(keepends=True)
        if lines and not lines[-1].endswith("\n"):  # torn last line of a killed run
            lines = lines[:-1]
        reader = csv.DictReader(io.StringIO("".join(lines)))
        if reader.fieldnames is not None and tuple(reader.fieldnames) != RUN_COLUMNS:
            raise DataError(f"{self.path} has columns {reader.fieldnames}, expected {list(RUN_COLUMNS)}")
        return list(reader)

    def append(self, row: dict[str, Any]) -> None:
        new = not self.path.is_file() or self.path.stat().st_size == 0
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=RUN_COLUMNS, extrasaction="ignore", lineterminator="\n")
        if new:
            writer.writeheader()
        writer.writerow({c: _text(row.get(c)) for c in RUN_COLUMNS})
        with self.path.open("a", encoding="utf-8") as f:
            f.write(buf.getvalue())
            f.flush()


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6f}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    return str(value)


def _accuracy(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _key(group: str, cell: str, seed: int | str) -> tuple[str, str, str]:
    return (group, cell, str(seed))


# --- running -----------------------------------------------------------------------------
@dataclass
class Bench:
    """One benchmark invocation: where it writes, what it has done, how it runs a cell."""

    out: Path
    data_root: str
    seeds: list[int]
    device: str = "auto"
    quick: bool = False
    keep_runs: bool = False
    only: tuple[str, ...] = ()
    precision: str = "fp32"
    done: dict[tuple[str, str, str], dict[str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        self.runs = RunsFile(self.out / "runs.csv")
        self.done = {_key(r["group"], r["cell"], r["seed"]): r for r in self.runs.load() if r["status"] == "ok"}
        for r in self.done.values():
            recorded = _precision_of(r["command"])
            if recorded != self.precision:
                raise ConfigError(f"{self.out} holds runs at precision {recorded} ({r['cell']}, seed {r['seed']}); "
                                  f"give --precision {recorded} to resume them, or another --out for {self.precision}")

    def run_dir(self, group: str, cell: str, seed: int) -> Path:
        slug = "".join(ch if ch.isalnum() else "-" for ch in cell.lower()).strip("-")
        while "--" in slug:
            slug = slug.replace("--", "-")
        return self.out / "runs" / group / f"{slug}-seed{seed}"

    def record(self, row: dict[str, Any]) -> None:
        self.runs.append(row)
        if row["status"] == "ok":
            self.done[_key(row["group"], row["cell"], row["seed"])] = {k: _text(v) for k, v in row.items()}

    def reuse(self, cell: Cell, seed: int, command: str, companions: Sequence[str]) -> bool:
        """Record ``cell``'s run from a finished run with the very same command, if there is one.

        Two groups can hold the same run (``--quick`` gives ``fashion-10k`` and ``fashion-full``
        the same subset): it is run once and its row (and its ``companions``, the rows its run
        also wrote, e.g. the k sweep's ``knn k=K``) recorded again under this group.
        """
        source = next((r for r in self.done.values() if r["command"] == command and r["seed"] == str(seed)
                       and r["group"] != cell.group), None)
        if source is None:
            return False
        extra = [self.done.get(_key(source["group"], name, seed)) for name in companions]
        if any(r is None for r in extra):
            return False
        for r in [source, *extra]:
            self.record({**r, "group": cell.group, "cell": cell.name if r is source else r["cell"]})
        log.info("bench results: %s / %s, seed %d: the same run as %s / %s (recorded again, not rerun)",
                 cell.group, cell.name, seed, source["group"], source["cell"])
        return True

    def run_cell(self, cell: Cell, seed: int, *, after: Callable[[Any, dict[str, Any]], list[dict[str, Any]]] | None = None,
                 companions: Sequence[str] = (), keep: bool = False, run_dir: Path | None = None) -> Any:
        """Run one cell for one seed unless ``runs.csv`` has it; return the run result (or ``None``).

        ``after`` makes more rows from the run (named ``companions``); a run another group already
        made with the same command is recorded again, not rerun (:meth:`reuse`). ``keep`` keeps
        the run directory (``run_dir``, by default one under ``out/runs``) and always runs.
        """
        import shutil

        import graphforge

        if self.only and not any(cell.name.lower().startswith(p.lower()) for p in self.only):
            return None
        run_dir = run_dir or self.run_dir(cell.group, cell.name, seed)
        if _key(cell.group, cell.name, seed) in self.done:
            if not keep or (run_dir / "checkpoint.pt").is_file():
                return None
            del self.done[_key(cell.group, cell.name, seed)]  # its kept run directory is gone: run it again
        settings = dict(cell.settings)
        if self.precision != "fp32":  # fp32, the default, stays out of the commands
            settings["precision"] = self.precision
        command = command_line(cell, seed, self.data_root, settings)
        if not keep and self.reuse(cell, seed, command, companions):
            return None
        if run_dir.exists():
            shutil.rmtree(run_dir)
        log.info("bench results: %s / %s, seed %d", cell.group, cell.name, seed)
        start = time.perf_counter()
        row: dict[str, Any] = {"group": cell.group, "cell": cell.name, "seed": seed, "command": command}
        try:
            result = graphforge.run(cell.converter, cell.model, cell.dataset, options=dict(cell.options), seed=seed,
                                    data_root=self.data_root, device=self.device, out=str(run_dir),
                                    plots=self.keep_runs, **settings)
        except Exception as exc:  # noqa: BLE001 - a failed cell is recorded, the benchmark goes on
            row.update(status="failed", error=" ".join(f"{type(exc).__name__}: {exc}".split()),
                       wall_seconds=time.perf_counter() - start)
            self.record(row)
            log.warning("bench results: %s / %s, seed %d failed: %s", cell.group, cell.name, seed, row["error"])
            return None
        m = result.metrics
        row.update(status="ok", val_accuracy=m["val_accuracy"], test_accuracy=m["test_accuracy"],
                   train_seconds=m.get("train_seconds"), wall_seconds=time.perf_counter() - start,
                   extra=_extras(m))
        log.info("bench results: %s / %s, seed %d: validation %s, test %s (%.0f s)", cell.group, cell.name, seed,
                 _accuracy(m.get("val_accuracy")), _accuracy(m.get("test_accuracy")), row["wall_seconds"])
        rows = [row] + (after(result, row) if after is not None else [])
        for r in rows:
            self.record(r)
        if not (self.keep_runs or keep):
            shutil.rmtree(run_dir, ignore_errors=True)
        return result


def _precision_of(command: str) -> str:
    """The ``--precision`` of a recorded ``graphforge run`` command (``fp32`` when it has none)."""
    parts = shlex.split(command)
    return parts[parts.index("--precision") + 1] if "--precision" in parts[:-1] else "fp32"


def _extras(metrics: dict[str, Any]) -> dict[str, Any]:
    """What the table shows besides accuracy: the learned k on the test set, graph size, epochs."""
    keys = ("test_mean_k", "test_k_std", "test_k_hist", "epochs", "best_epoch", "graph_edges", "graph_mean_degree",
            "graph_isolated_nodes", "graph_edge_homophily", "graph_threshold")
    return {k: metrics[k] for k in keys if metrics.get(k) is not None}


def _knn_rows(bench: Bench, cell: Cell, seed: int) -> Callable[[Any, dict[str, Any]], list[dict[str, Any]]]:
    """Rows ``knn k=K`` from the k sweep of one run, each next to scikit-learn on the same images."""

    def after(result: Any, row: dict[str, Any]) -> list[dict[str, Any]]:
        sklearn = _sklearn_knn(bench, cell, seed, [r["k"] for r in result.metrics["k_sweep"]])
        rows = []
        for r in result.metrics["k_sweep"]:
            k = int(r["k"])
            options = {**cell.options, "k": k}
            options.pop("sweep", None)
            rows.append({"group": cell.group, "cell": f"knn k={k}", "seed": seed, "status": "ok",
                         "val_accuracy": r.get("val_accuracy"), "test_accuracy": r.get("test_accuracy"),
                         "sklearn_test_accuracy": sklearn.get(k), "train_seconds": row.get("train_seconds"),
                         "wall_seconds": row.get("wall_seconds"),
                         "command": command_line(Cell(cell.group, "", "none", "knn", cell.dataset, options),
                                                 seed, bench.data_root, cell.settings)})
        return rows

    return after


def _sklearn_knn(bench: Bench, cell: Cell, seed: int, ks: list[int]) -> dict[int, float]:
    """scikit-learn's ``KNeighborsClassifier`` (brute force, euclidean) on the same split and images."""
    from sklearn.neighbors import KNeighborsClassifier

    from graphforge.config import RunConfig
    from graphforge.engine.runner import load_data, plan_run

    config = RunConfig.from_dict({"dataset": cell.dataset, "converter": "none", "model": "knn", "seed": seed,
                                  "data_root": bench.data_root, **cell.settings})
    data = load_data(plan_run(config))  # the very split the run used
    x_train = data.train.x.reshape(len(data.train), -1).float().numpy() / 255.0
    x_test = data.test.x.reshape(len(data.test), -1).float().numpy() / 255.0
    out = {}
    for k in ks:
        clf = KNeighborsClassifier(n_neighbors=k, algorithm="brute").fit(x_train, data.train.y.numpy())
        out[k] = float((clf.predict(x_test) == data.test.y.numpy()).mean())
    return out


def run_fixed_cells(bench: Bench, cells: Sequence[Cell]) -> None:
    """Run every fixed cell for every seed."""
    for cell in cells:
        for seed in bench.seeds:
            if cell.model == "knn" and "sweep" in cell.options:
                if all(_key(cell.group, f"knn k={k}", seed) in bench.done for k in KNN_SWEEP):
                    continue
                bench.done.pop(_key(cell.group, cell.name, seed), None)
                bench.run_cell(cell, seed, after=_knn_rows(bench, cell, seed),
                               companions=[f"knn k={k}" for k in KNN_SWEEP])
            else:
                bench.run_cell(cell, seed)


def run_similarity(bench: Bench) -> None:
    """The similarity-graph experiment (see the module docstring)."""
    group = "fashion-similarity"
    epochs = {"epochs": 20} if bench.quick else {}
    metrics = SIMILARITY_METRICS[:1] if bench.quick else SIMILARITY_METRICS
    degrees = TARGET_DEGREES[1:2] if bench.quick else TARGET_DEGREES
    for seed in bench.seeds:
        cnn_dir = bench.run_dir(group, "embedder-cnn", seed)
        cnn_shown = f"{OUT}/{cnn_dir.relative_to(bench.out).as_posix()}"
        cnn = Cell(group, "cnn (embedder, trained on the 1,600 training images)", "none", "cnn", "fashion-mnist",
                   {"convs_per_block": 1}, {**SIMILARITY_SPLIT, **({"epochs": 2} if bench.quick else {})},
                   shown_settings={"out": cnn_shown})
        bench.run_cell(cnn, seed, keep=True, run_dir=cnn_dir)
        if not (cnn_dir / "checkpoint.pt").is_file():
            log.warning("bench results: no cnn embedder for seed %d; its similarity rows are skipped", seed)
        # Each embedding: its converter options, and how the command shows them (OUT/..., not this machine's path).
        embeddings: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {"pixels": ({"embedder": "pixels"}, {})}
        if (cnn_dir / "checkpoint.pt").is_file():
            embeddings["cnn"] = ({"embedder": "trained", "embedder_options": {"run": str(cnn_dir)}},
                                 {"embedder_options": {"run": cnn_shown}})
        for emb_name, (emb_options, shown) in embeddings.items():
            for metric in metrics:
                for degree in degrees:
                    for model in SIMILARITY_MODELS:
                        # Each seed's graph gets the threshold that gives this mean degree on its own
                        # embeddings (the converter's ``degree``), so one command serves every seed.
                        options = {**emb_options, "metric": metric, "degree": degree}
                        cell = Cell(group, f"{emb_name} {metric} degree {degree}: {model}", "similarity", model,
                                    "fashion-mnist", options, {**SIMILARITY_SPLIT, **epochs}, shown)
                        bench.run_cell(cell, seed)


# --- summary -----------------------------------------------------------------------------
def summarize(rows: Sequence[dict[str, str]]) -> list[dict[str, Any]]:
    """Mean ± std over seeds per (group, cell), in the order cells first appear."""
    cells: dict[tuple[str, str], list[dict[str, str]]] = {}
    for r in rows:
        if r["status"] == "ok" and r["test_accuracy"]:
            cells.setdefault((r["group"], r["cell"]), []).append(r)
    out = []
    for (group, cell), runs in cells.items():
        if cell == "knn":
            continue  # the k sweep's own run: its "knn k=K" rows stand for it
        val = [float(r["val_accuracy"]) for r in runs if r["val_accuracy"]]
        test = [float(r["test_accuracy"]) for r in runs]
        sk = [float(r["sklearn_test_accuracy"]) for r in runs if r.get("sklearn_test_accuracy")]
        wall = [float(r["wall_seconds"]) for r in runs if r["wall_seconds"]]
        seeds = sorted({int(r["seed"]) for r in runs})
        # One command for every seed: its --seed, and a per-seed run folder (``...-seedN``), say S.
        first = runs[0]["command"].rsplit(" --seed ", 1)[0]
        command = re.sub(rf"-seed{int(runs[0]['seed'])}\b", "-seedS", first) + " --seed S"
        out.append({
            "group": group, "cell": cell, "seeds": len(seeds),
            "val_mean": statistics.fmean(val) if val else None,
            "val_std": statistics.pstdev(val) if len(val) > 1 else 0.0 if val else None,
            "test_mean": statistics.fmean(test), "test_std": statistics.pstdev(test) if len(test) > 1 else 0.0,
            "test_median": statistics.median(test), "sklearn_test_mean": statistics.fmean(sk) if sk else None,
            "wall_seconds_mean": statistics.fmean(wall) if wall else None, "command": command,
        })
    return out


def _pm(mean: float | None, std: float | None) -> str:
    return "" if mean is None else f"{mean:.4f} ± {std or 0.0:.4f}"


def write_summary(out: Path, summary: Sequence[dict[str, Any]], header: str) -> list[Path]:
    """Write ``summary.csv`` and ``results.md`` (atomically); return their paths."""
    from graphforge.io import write_text

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=SUMMARY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({c: _text(s.get(c)) for c in SUMMARY_COLUMNS} for s in summary)
    write_text(out / "summary.csv", buf.getvalue())
    lines = [f"# graphforge bench results\n\n{header}\n"]
    for group in dict.fromkeys(s["group"] for s in summary):
        lines += [f"\n## {group}\n", "| cell | seeds | validation | test | test median | scikit-learn test "
                  "| wall s / run | command |", "|---|---|---|---|---|---|---|---|"]
        for s in (s for s in summary if s["group"] == group):
            sk = "" if s["sklearn_test_mean"] is None else f"{s['sklearn_test_mean']:.4f}"
            wall = "" if s["wall_seconds_mean"] is None else f"{s['wall_seconds_mean']:.0f}"
            lines.append(f"| {s['cell']} | {s['seeds']} | {_pm(s['val_mean'], s['val_std'])} | "
                         f"{_pm(s['test_mean'], s['test_std'])} | {s['test_median']:.4f} | {sk} | {wall} | "
                         f"`{s['command']}` |")
    write_text(out / "results.md", "\n".join(lines) + "\n")
    return [out / "summary.csv", out / "results.md"]


def machine_header(threads: int | None = None) -> str:
    """The machine the figures come from: CPU model and flags, threads, torch, device.

    Args:
        threads: The runs' thread ceiling (default: torch's count now).
    """
    import os
    import platform

    import torch

    from graphforge.machine import cpu_flags, onednn_isa_setting

    model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    have = cpu_flags()
    flags = [f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile") if f in have]
    setting = onednn_isa_setting()
    if setting:
        flags.append(f"oneDNN capped at {setting[1]} by {setting[0]}")
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"Machine: {model} ({', '.join(flags) or 'no AVX2'}), {os.cpu_count()} CPUs, torch "
            f"{torch.__version__} with up to {threads or torch.get_num_threads()} threads per run, {gpu}.")


def run_results(out: str | Path, data_root: str | Path, *, groups: Sequence[str] = GROUPS,
                seeds: Sequence[int] = (0, 1, 2), quick: bool = False, device: str = "auto", precision: str = "fp32",
                keep_runs: bool = False, only: Sequence[str] = ()) -> tuple[list[dict[str, Any]], list[Path]]:
    """Run (or resume) the results benchmark into ``out``.

    Args:
        out: Output directory (``runs.csv``, ``summary.csv``, ``results.md``).
        data_root: Folder holding ``FashionMNIST/raw`` and ``MNIST/raw``.
        groups: Experiment groups to run (:data:`GROUPS`).
        seeds: Seeds of every cell (at least 3 for the published table).
        quick: Small subsets and few epochs: a smoke run in minutes, not a result.
        device: ``auto``, ``cpu`` or ``cuda``.
        precision: ``fp32`` or ``bf16``, for every run (a network's; see
            :mod:`graphforge.engine.precision`); an ``out`` holding runs at the other
            precision is refused.
        keep_runs: Keep every run directory (with plots) under ``out/runs``.
        only: Run only the cells whose name starts with one of these (case-insensitive); the
            table still shows every cell already in ``runs.csv``.

    Returns:
        ``(summary rows, files written)``.

    Raises:
        ConfigError: For an unknown group or no seeds.
        DataError: If the data for a requested group is missing.
    """
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        raise ConfigError(f"unknown group(s) {', '.join(unknown)}; choose from: {', '.join(GROUPS)}")
    if not seeds:
        raise ConfigError("give at least one seed")
    root = Path(data_root).expanduser().resolve()
    needs = {"fashion-10k": "FashionMNIST", "fashion-full": "FashionMNIST", "mnist-som": "MNIST",
             "fashion-similarity": "FashionMNIST"}
    missing = sorted({needs[g] for g in groups if not (root / needs[g]).is_dir()})
    if missing:
        raise DataError(f"{root} has no {' or '.join(missing)} folder (torchvision's layout: {missing[0]}/raw/...)")
    from graphforge.engine.threads import ThreadPolicy

    ceiling = ThreadPolicy().base  # before any run lowers torch's count for a busy machine
    from graphforge.engine.precision import check_precision

    bench = Bench(Path(out), str(root), [int(s) for s in dict.fromkeys(seeds)], device, quick, keep_runs, tuple(only),
                  check_precision(precision))
    run_fixed_cells(bench, cells_for([g for g in GROUPS if g in groups], quick))
    if "fashion-similarity" in groups:
        run_similarity(bench)
    summary = summarize(bench.runs.load())
    mode = "--quick (smoke subsets, few epochs: not a result)" if quick else "full protocol"
    if bench.precision != "fp32":
        mode += f", --precision {bench.precision}"
    header = (f"{machine_header(ceiling)} Seeds {', '.join(map(str, bench.seeds))}; {mode}. In the commands, `{DATA}` is "
              f"the folder holding `FashionMNIST/raw` and `MNIST/raw`; `{OUT}` is this benchmark's --out folder; "
              "`S` is the seed.")
    return summary, [bench.runs.path, *write_summary(bench.out, summary, header)]
