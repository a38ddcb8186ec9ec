"""Similarity-graph sweeps: metric x (threshold, k or mean degree) x seed x model, resumable.

Every row is one ordinary run (:func:`graphforge.api.run` with the ``similarity``
converter), so a sweep gives exactly what ``graphforge run`` gives for the same
settings. The sweep directory holds:

* ``sweep.json``: the settings every row shares (dataset, options, epochs, ...) and the
  union of the grids run so far;
* ``results.csv``: one row per (metric, mode, threshold, k or degree, seed, model), appended
  and synced to disk as soon as the run ends, so a killed sweep loses at most the row
  it was running;
* ``summary.csv``, ``summary.md``: mean and standard deviation over seeds;
* ``plots/sweep.png``: test accuracy against the threshold, k or degree;
* ``runs/<metric>-<mode>-<param>-seed<seed>-<model>/``: the run directories, kept with
  ``keep_runs`` (and always for failed rows, to diagnose them).

Running the same sweep again with the same directory resumes it: rows already in
``results.csv`` are skipped (failed ones too, unless ``retry_failed``), an incomplete
last line left by a kill is dropped, and only the missing rows run. New grid values
may be added on a resume; the shared settings may not change.

A sweep over target mean degrees (``degrees``; its rows have mode ``degree``) builds
threshold graphs with the ``similarity`` converter's ``degree`` option: each row's
threshold is the one that gives that mean degree on its own embeddings (recorded in the
row's ``threshold`` column), so one grid serves every metric, whose thresholds are on
different scales.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from graphforge._version import __version__
from graphforge.errors import ConfigError, DataError
from graphforge.io import write_json, write_text
from graphforge.similarity.graph import GRAPH_METRICS, MODES, check_degree, check_graph_options, graph_choice_options

log = logging.getLogger("graphforge.sweep")

RESULT_COLUMNS: tuple[str, ...] = (
    "metric", "mode", "threshold", "k", "degree", "seed", "model", "edges", "mean_degree", "isolated_nodes",
    "edge_homophily", "adjusted_homophily", "val_accuracy", "test_accuracy", "seconds", "status", "error",
)
#: The columns of sweeps written by earlier versions (read, then rewritten with today's columns):
#: before the degree column, and before the homophily columns too.
_LEGACY_COLUMNS: tuple[tuple[str, ...], ...] = (
    tuple(c for c in RESULT_COLUMNS if c != "degree"),
    tuple(c for c in RESULT_COLUMNS if c != "degree" and not c.endswith("homophily")),
)
#: Sweep modes: the converter's, and ``degree`` (threshold graphs set by a target mean degree).
SWEEP_MODES: tuple[str, ...] = (*MODES, "degree")
#: Figures averaged over seeds in the summary.
SUMMARY_FIGURES: tuple[str, ...] = ("val_accuracy", "test_accuracy", "edges", "mean_degree", "isolated_nodes")
SUMMARY_COLUMNS: tuple[str, ...] = (
    "metric", "mode", "threshold", "k", "degree", "model", "runs", "failed",
    *(f"{f}_{s}" for f in SUMMARY_FIGURES for s in ("mean", "std")),
)
#: Graph options a sweep sets itself (its grid axes): refused in ``options``.
SETTINGS_FILE = "sweep.json"
RESULTS_FILE = "results.csv"


@dataclass(frozen=True, order=True)
class SweepKey:
    """One row of a sweep: what identifies it in ``results.csv``."""

    metric: str
    mode: str
    param: float | int
    seed: int
    model: str

    @property
    def run_name(self) -> str:
        """The row's run-directory name."""
        return f"{self.metric}-{self.mode}-{_param_text(self.param)}-seed{self.seed}-{self.model}"

    def describe(self) -> str:
        what = self.mode if self.mode in ("threshold", "degree") else f"{self.mode} k"
        return f"{self.metric} {what}={_param_text(self.param)} seed={self.seed} {self.model}"


@dataclass
class SweepResult:
    """What :func:`run_sweep` returns.

    Attributes:
        out: The sweep directory.
        rows: Every row of ``results.csv`` (as strings, in file order).
        summary: One dict per (metric, mode, param, model): see :data:`SUMMARY_COLUMNS`.
        ran: Rows run by this call.
        skipped: Rows of the grid already in ``results.csv``.
        failed: Rows of ``results.csv`` whose status is ``failed``.
        best: The summary row with the best mean validation accuracy (``None`` if none ran).
    """

    out: Path
    rows: list[dict[str, str]]
    summary: list[dict[str, Any]]
    ran: int = 0
    skipped: int = 0
    failed: int = 0
    best: dict[str, Any] | None = None
    files: list[Path] = field(default_factory=list)


def _param_text(param: float) -> str:
    return str(param) if isinstance(param, int) else repr(float(param))


def _number_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return repr(round(float(value), 6))  # accuracies are float32 ratios: more digits are noise


def grid_keys(metrics: Sequence[str], mode: str, params: Sequence[float | int], seeds: Sequence[int],
              models: Sequence[str]) -> list[SweepKey]:
    """The grid's rows in run order: seed, then metric, then param, then model.

    Models vary fastest so the ``similarity`` converter's in-process memo builds each
    graph once and trains every model on it.
    """
    return [SweepKey(m, mode, p, s, model) for s in seeds for m in metrics for p in params for model in models]


def _param_column(mode: str) -> str:
    """The column (and option) that holds a row's grid value in ``mode``."""
    return mode if mode in ("threshold", "degree") else "k"


def _key_of_row(row: dict[str, str], line: int) -> SweepKey:
    try:
        mode = row["mode"]
        column = _param_column(mode)
        param: float | int = int(row[column]) if column == "k" else float(row[column])
        return SweepKey(row["metric"], mode, param, int(row["seed"]), row["model"])
    except (KeyError, TypeError, ValueError):
        raise DataError(f"{RESULTS_FILE} line {line} is malformed: {row}") from None


# --------------------------------------------------------------------------- results file
class ResultsFile:
    """``results.csv``: append-only rows, each synced to disk when written.

    Args:
        path: The CSV file.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    @staticmethod
    def _line(values: Sequence[Any]) -> str:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(values)
        return buf.getvalue()

    def _header(self) -> str:
        return self._line(RESULT_COLUMNS)

    def load(self) -> list[dict[str, str]]:
        """Read the rows, creating the file or dropping an incomplete last line first.

        Raises:
            DataError: If the header is not the expected one, a row is malformed, or a
                key appears twice.
        """
        if not self.path.exists():
            write_text(self.path, self._header())
            return []
        text = _read_sweep_text(self.path, "results")
        if text and not text.endswith("\n"):
            cut = text.rfind("\n") + 1
            log.warning("%s: dropping an incomplete last line (the sweep was stopped while writing it): %r",
                        self.path, text[cut:][:120])
            text = text[:cut] or self._header()
            write_text(self.path, text)
        if not text:
            write_text(self.path, self._header())
            return []
        reader = csv.DictReader(io.StringIO(text))
        try:
            legacy = tuple(reader.fieldnames or ()) in _LEGACY_COLUMNS
            if tuple(reader.fieldnames or ()) != RESULT_COLUMNS and not legacy:
                raise DataError(f"{self.path} does not have the columns of a sweep's results: expected "
                                f"{','.join(RESULT_COLUMNS)}, found {','.join(reader.fieldnames or ())}")
            rows = list(reader)
        except csv.Error as exc:
            raise DataError(f"{self.path} is not a sweep's results file: line {reader.line_num}: {exc}; "
                            "not resuming") from None
        if legacy:  # an older sweep: same rows, with the (empty) newer columns added
            self.rewrite(rows)
        seen: dict[SweepKey, int] = {}
        for n, row in enumerate(rows, start=2):
            key = _key_of_row(row, n)
            if key in seen:
                raise DataError(f"{self.path}: lines {seen[key]} and {n} are both {key.describe()}; remove one")
            seen[key] = n
        return rows

    def append(self, row: dict[str, Any]) -> None:
        """Append one row and sync it to disk."""
        with open(self.path, "a", encoding="utf-8", newline="") as fh:
            fh.write(self._line([row.get(c, "") for c in RESULT_COLUMNS]))
            fh.flush()
            os.fsync(fh.fileno())

    def rewrite(self, rows: Sequence[dict[str, Any]]) -> None:
        """Replace the whole file atomically with ``rows``."""
        write_text(self.path, self._header() + "".join(self._line([r.get(c, "") for c in RESULT_COLUMNS])
                                                       for r in rows))


@contextmanager
def _sweep_lock(out: Path) -> Iterator[None]:
    """Hold an exclusive lock on the sweep directory (two sweeps writing one file would mix rows)."""
    from graphforge.io import directory_lock

    with directory_lock(out, "sweep directory"):
        yield


# --------------------------------------------------------------------------- settings
def _plain(value: Any) -> Any:
    """JSON round trip, so settings compare equal however they were given (tuples, paths)."""
    return json.loads(json.dumps(value, default=str))


def _merge_grid(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    merged = {}
    for name, new_values in new.items():
        values = list(old.get(name, []))
        values += [v for v in new_values if v not in values]
        merged[name] = values
    return merged


def _describe_difference(saved: dict[str, Any], now: dict[str, Any]) -> str:
    names = sorted(set(saved) | set(now))
    return "; ".join(f"{n} {saved.get(n)!r} (now {now.get(n)!r})" for n in names if saved.get(n) != now.get(n))


def _read_sweep_text(path: Path, what: str) -> str:
    """The text of a sweep's ``what`` file (``results``, ``settings``), refusing one that is not UTF-8 or unreadable."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not a sweep's {what} file: it is not UTF-8 text "
                        f"(byte {exc.start}: {exc.reason}); not resuming") from None
    except OSError as exc:
        raise DataError(f"{path} is unreadable ({exc.strerror or exc}); not resuming") from None


def _is_sweep_record(saved: Any) -> bool:
    """Whether ``saved`` (parsed ``sweep.json``) has the shape :func:`_open_sweep` writes."""
    if not isinstance(saved, dict) or not isinstance(saved.get("settings"), dict):
        return False
    grid = saved.get("grid") or {}
    return isinstance(grid, dict) and all(isinstance(v, list) for v in grid.values())


def _open_sweep(out: Path, settings: dict[str, Any], grid: dict[str, Any]) -> None:
    """Create ``sweep.json``, or check it (refusing other settings) and add the new grid values."""
    path = out / SETTINGS_FILE
    if path.exists():
        try:
            saved = json.loads(_read_sweep_text(path, "settings"))
        except json.JSONDecodeError as exc:
            raise DataError(f"{path} is unreadable ({exc}); not resuming") from None
        if not _is_sweep_record(saved):
            raise DataError(f"{path} is not a sweep's settings file (expected a JSON object with "
                            "\"settings\" and \"grid\" objects); not resuming")
        if saved.get("settings") != settings:
            raise ConfigError(
                f"{out} holds a sweep with other settings: {_describe_difference(saved.get('settings') or {}, settings)}. "
                "Resume it with the same dataset and options (grid values may differ) or choose another --out")
        record = {**saved, "grid": _merge_grid(saved.get("grid") or {}, grid),
                  "updated": time.strftime("%Y-%m-%dT%H:%M:%S")}
        log.info("resuming the sweep in %s", out)
    else:
        now = time.strftime("%Y-%m-%dT%H:%M:%S")
        record = {"graphforge_version": __version__, "settings": settings, "grid": grid, "created": now, "updated": now}
    write_json(path, record)


# --------------------------------------------------------------------------- checks
def check_grid(metrics: Sequence[str], mode: str | None, thresholds: Sequence[float], ks: Sequence[int],
               seeds: Sequence[int], models: Sequence[str],
               degrees: Sequence[float] = ()) -> tuple[list[str], str, list[float | int]]:
    """Validate a grid; return the canonical metrics, the sweep mode and the parameter values.

    Give exactly one of ``thresholds``, ``ks`` and ``degrees``; degrees sweep mode ``degree``
    (threshold graphs set by a target mean degree; ``mode`` may then be ``None``, ``threshold``
    or ``degree``).

    Raises:
        ConfigError: For none or several of thresholds, k and degrees, a mode that does not
            fit them, a bad metric, threshold, k or degree, or an empty axis.
    """
    axes = {"threshold": list(thresholds), "k": list(ks), "degree": list(degrees)}
    given = [name for name, values in axes.items() if values]
    if len(given) > 1:
        raise ConfigError(f"give one of thresholds, k values or degrees, not {' and '.join(f'--{g}' for g in given)} "
                          "(run two sweeps into the same --out for both)")
    if not given:
        raise ConfigError("give the thresholds (--threshold), the k values (--k) or the mean degrees (--degree) to sweep")
    if degrees and mode in (None, "threshold"):
        mode = "degree"  # threshold graphs, set by their mean degree
    if mode is None:
        mode = "threshold" if thresholds else "knn"
    if mode not in SWEEP_MODES:
        raise ConfigError(f"unknown mode {mode!r}; choose one of: {', '.join(MODES)}")
    axis = _param_column(mode)
    if given[0] != axis:
        raise ConfigError(f"mode {mode} sweeps --{axis} values, not --{given[0]}")
    names = list(dict.fromkeys(check_graph_options(m, "knn", 1, None, "similarity", "auto") for m in metrics))
    raw = axes[axis]
    for p in raw:  # each value checked as what its axis is: a degree, a threshold or a k
        if mode == "degree":
            check_degree(p)
        else:
            check_graph_options("cosine", mode, p, p, "similarity", "auto")
    params: list[float | int] = list(dict.fromkeys(int(p) if axis == "k" else float(p) for p in raw))
    if not names:
        raise ConfigError("no metric to sweep")
    if not seeds:
        raise ConfigError("no seed to sweep")
    if any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
        raise ConfigError(f"seeds must be integers >= 0, got {list(seeds)}")
    if not models:
        raise ConfigError("no model to sweep")
    return names, mode, params


# --------------------------------------------------------------------------- summary
def _stats(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    a = np.asarray(values, dtype=np.float64)
    return float(a.mean()), float(a.std())  # population std (ddof=0): 0 for one seed


def summarize_results(rows: Sequence[dict[str, str]]) -> list[dict[str, Any]]:
    """Mean and standard deviation (population, as `bench results`) over seeds per (metric, mode, param, model).

    Failed rows are counted (``failed``) but not averaged.
    """
    groups: dict[tuple[str, str, float | int, str], list[dict[str, str]]] = {}
    for n, row in enumerate(rows, start=2):
        key = _key_of_row(row, n)
        groups.setdefault((key.metric, key.mode, key.param, key.model), []).append(row)
    metric_order = {m: i for i, m in enumerate(GRAPH_METRICS)}
    mode_order = {m: i for i, m in enumerate(SWEEP_MODES)}
    out = []
    for (metric, mode, param, model), members in sorted(
            groups.items(), key=lambda kv: (metric_order.get(kv[0][0], 99), kv[0][0], mode_order.get(kv[0][1], 9),
                                            kv[0][2], kv[0][3])):
        ok = [r for r in members if r["status"] == "ok"]
        entry: dict[str, Any] = {
            "metric": metric, "mode": mode,
            "threshold": param if mode == "threshold" else None, "k": param if _param_column(mode) == "k" else None,
            "degree": param if mode == "degree" else None,
            "model": model, "runs": len(ok), "failed": len(members) - len(ok),
        }
        for fig in SUMMARY_FIGURES:
            mean, std = _stats([float(r[fig]) for r in ok if r[fig] not in ("", None)])
            entry[f"{fig}_mean"], entry[f"{fig}_std"] = mean, std
        out.append(entry)
    return out


def best_row(summary: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The summary row with the highest mean validation accuracy (chosen without test labels)."""
    ranked = [s for s in summary if s["val_accuracy_mean"] is not None]
    return max(ranked, key=lambda s: s["val_accuracy_mean"]) if ranked else None


def _pm(mean: float | None, std: float | None, digits: int) -> str:
    if mean is None:
        return "-"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def _param_of(entry: dict[str, Any]) -> str:
    if entry["mode"] == "degree":
        return f"degree={_param_text(entry['degree'])}"
    return _param_text(entry["threshold"]) if entry["mode"] == "threshold" else f"k={entry['k']}"


def summary_table(summary: Sequence[dict[str, Any]], markdown: bool = False) -> str:
    """The summary as a text table (or a Markdown table)."""
    head = ["metric", "mode", "threshold / k / degree", "model", "runs", "val accuracy", "test accuracy", "edges",
            "mean degree", "isolated"]
    body = [[s["metric"], s["mode"], _param_of(s), s["model"],
             f"{s['runs']}" + (f" (+{s['failed']} failed)" if s["failed"] else ""),
             _pm(s["val_accuracy_mean"], s["val_accuracy_std"], 4), _pm(s["test_accuracy_mean"], s["test_accuracy_std"], 4),
             _pm(s["edges_mean"], s["edges_std"], 0), _pm(s["mean_degree_mean"], s["mean_degree_std"], 2),
             _pm(s["isolated_nodes_mean"], s["isolated_nodes_std"], 1)] for s in summary]
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(row) + " |" for row in body]
        return "\n".join(lines) + "\n"
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]
    return "\n".join("  ".join(c.rjust(w) if i >= 5 else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
                     for r in [head, *body]) + "\n"


def describe_best(best: dict[str, Any] | None) -> str:
    """One line naming the best configuration by validation accuracy."""
    if best is None:
        return "no completed runs"
    return (f"best by validation accuracy: {best['metric']} {best['mode']} {_param_of(best)} {best['model']}: "
            f"val {_pm(best['val_accuracy_mean'], best['val_accuracy_std'], 4)}, "
            f"test {_pm(best['test_accuracy_mean'], best['test_accuracy_std'], 4)} over {best['runs']} seed(s)")


def write_summary(out: Path, rows: Sequence[dict[str, str]], settings: dict[str, Any]) -> tuple[list[dict[str, Any]], list[Path]]:
    """Write ``summary.csv``, ``summary.md`` and ``plots/sweep.png``; return the summary and the files."""
    from graphforge.similarity.plots import plot_sweep

    summary = summarize_results(rows)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(SUMMARY_COLUMNS)
    for s in summary:
        writer.writerow([s[c] if isinstance(s[c], str) else _param_text(s[c]) if c in ("threshold", "k", "degree") and s[c] is not None
                         else _number_text(s[c]) for c in SUMMARY_COLUMNS])
    write_text(out / "summary.csv", buf.getvalue())
    options = ", ".join(f"{k}={v}" for k, v in sorted((settings.get("options") or {}).items())) or "none"
    training = ", ".join(f"{k} {settings[k]}" for k in ("epochs", "lr", "patience", "limit_train", "limit_test")
                         if settings.get(k) is not None) or "the engine's defaults"
    md = (f"# Similarity sweep on {settings.get('dataset')}\n\n"
          f"Options: {options}. Training: {training}. Mean ± standard deviation over seeds (population); "
          "failed runs are counted, not averaged.\n\n"
          f"{summary_table(summary, markdown=True)}\n{describe_best(best_row(summary))}\n")
    write_text(out / "summary.md", md)
    files = [out / "summary.csv", out / "summary.md"]
    if any(s["runs"] for s in summary):
        files.append(plot_sweep(summary, out / "plots" / "sweep.png", f"similarity sweep on {settings.get('dataset')}"))
    return summary, files


# --------------------------------------------------------------------------- running
def _run_row(key: SweepKey, settings: dict[str, Any], run_dir: Path, device: str, plots: bool) -> dict[str, Any]:

    from graphforge.api import run as api_run

    options = {**settings["options"], **_graph_options(key.metric, key.mode, key.param)}
    row: dict[str, Any] = {"metric": key.metric, "mode": key.mode, "seed": key.seed, "model": key.model,
                           "threshold": "", "k": "", "degree": "", _param_column(key.mode): _param_text(key.param)}
    start = time.perf_counter()
    try:
        result = api_run("similarity", key.model, settings["dataset"], options=options, seed=key.seed,
                         out=str(run_dir), device=device, plots=plots, **_run_settings(settings))
    except Exception as exc:  # noqa: BLE001 - any failure is recorded in its row; the sweep goes on
        message = " ".join(f"{type(exc).__name__}: {exc}".split())
        row.update(status="failed", error=message, seconds=f"{time.perf_counter() - start:.3f}")
        return row
    m = result.metrics
    if key.mode == "degree":  # the threshold this row's embeddings gave for its degree
        row["threshold"] = _number_text(m.get("graph_threshold"))
    row.update(edges=_number_text(m.get("graph_edges")), mean_degree=_number_text(m.get("graph_mean_degree")),
               isolated_nodes=_number_text(m.get("graph_isolated_nodes")),
               edge_homophily=_number_text(m.get("graph_edge_homophily")),
               adjusted_homophily=_number_text(m.get("graph_adjusted_homophily")),
               val_accuracy=_number_text(m["val_accuracy"]), test_accuracy=_number_text(m["test_accuracy"]),
               seconds=f"{time.perf_counter() - start:.3f}", status="ok", error="")
    return row


def _graph_options(metric: str, mode: str, param: float | int) -> dict[str, Any]:
    """The ``similarity`` converter's options for one grid point."""
    if mode == "degree":
        return {"metric": metric, "mode": "threshold", "degree": param}
    return {"metric": metric, "mode": mode, _param_column(mode): param}


def _run_settings(settings: dict[str, Any]) -> dict[str, Any]:
    names = ("data_root", "epochs", "lr", "patience", "limit_train", "limit_test")
    return {n: settings[n] for n in names if settings.get(n) is not None}


def _preflight(settings: dict[str, Any], metrics: list[str], mode: str, params: list[float | int],
               models: Sequence[str], device: str) -> None:
    """Build every model's run plan once, so a bad name or option fails before any row runs."""
    from graphforge.config import RunConfig
    from graphforge.engine.runner import plan_run

    for model in dict.fromkeys(models):
        options = {**settings["options"], **_graph_options(metrics[0], mode, params[0])}
        config = RunConfig.from_dict({"converter": "similarity", "model": model, "dataset": settings["dataset"],
                                      "options": options, "device": device, **_run_settings(settings)})
        plan_run(config)


def sweep_settings(dataset: str = "digits", data_root: str | os.PathLike[str] | None = None,
                   options: dict[str, Any] | None = None, epochs: int | None = None, lr: float | None = None,
                   patience: int | None = None, limit_train: int | None = None,
                   limit_test: int | None = None) -> dict[str, Any]:
    """The settings every row of a sweep shares (saved in ``sweep.json``; fixed on resume).

    Raises:
        ConfigError: If ``options`` sets a grid axis (metric, mode, threshold, k, degree).
    """
    options = dict(options or {})
    clash = graph_choice_options(options)
    if clash:
        raise ConfigError(f"option(s) {', '.join(clash)} are the sweep's grid; use --metric, --mode, --threshold, "
                          "--k or --degree instead")
    root = str(Path(data_root).expanduser().resolve()) if data_root is not None else None
    return _plain({"dataset": dataset, "data_root": root, "options": options, "epochs": epochs, "lr": lr,
                   "patience": patience, "limit_train": limit_train, "limit_test": limit_test})


def run_sweep(
    out: str | os.PathLike[str],
    *,
    metrics: Sequence[str] = ("cosine",),
    mode: str | None = None,
    thresholds: Sequence[float] = (),
    ks: Sequence[int] = (),
    degrees: Sequence[float] = (),
    seeds: Sequence[int] = (0,),
    models: Sequence[str] = ("gcn", "mlp"),
    dataset: str = "digits",
    data_root: str | os.PathLike[str] | None = None,
    options: dict[str, Any] | None = None,
    epochs: int | None = None,
    lr: float | None = None,
    patience: int | None = None,
    limit_train: int | None = None,
    limit_test: int | None = None,
    device: str = "auto",
    keep_runs: bool = False,
    retry_failed: bool = False,
) -> SweepResult:
    """Run (or resume) a similarity-graph sweep into ``out`` (see the module docs).

    Args:
        out: The sweep directory (created; an existing sweep there is resumed).
        metrics, mode, thresholds, ks, degrees, seeds, models: The grid; give ``thresholds``
            (mode ``threshold``, the default then), ``ks`` (mode ``knn``, the default then,
            or ``mutual``) or ``degrees`` (target mean degrees of threshold graphs: mode
            ``degree``).
        dataset, data_root, options, epochs, lr, patience, limit_train, limit_test: The
            settings every row shares, as for :func:`graphforge.run` (``None``: the
            engine's defaults for full-graph training).
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (may differ on a resume).
        keep_runs: Keep every row's run directory under ``out/runs`` (failed rows' are
            always kept).
        retry_failed: Run failed rows again, replacing them in ``results.csv``.

    Returns:
        The :class:`SweepResult`.

    Raises:
        ConfigError: For a bad grid or option, a directory holding another sweep or
            something else, or a sweep already running there.
        DataError: For a corrupt ``results.csv``.
    """
    names, mode, params = check_grid(metrics, mode, thresholds, ks, seeds, models, degrees)
    settings = sweep_settings(dataset, data_root, options, epochs, lr, patience, limit_train, limit_test)
    seeds = list(dict.fromkeys(int(s) for s in seeds))
    models = list(dict.fromkeys(models))
    _preflight(settings, names, mode, params, models, device)
    grid = _plain({"metrics": names, "modes": [mode], "thresholds": params if mode == "threshold" else [],
                   "k": params if _param_column(mode) == "k" else [], "degrees": params if mode == "degree" else [],
                   "seeds": seeds, "models": models})
    out = Path(out)
    if out.exists() and (not out.is_dir() or (
            not (out / SETTINGS_FILE).exists() and any(p.name not in (".sweep.lock", ".graphforge.lock") for p in out.iterdir()))):
        raise ConfigError(f"{out} exists and is not a sweep directory (no {SETTINGS_FILE}); choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    with _sweep_lock(out):
        _open_sweep(out, settings, grid)
        results = ResultsFile(out / RESULTS_FILE)
        rows = results.load()
        done = {_key_of_row(r, i + 2): i for i, r in enumerate(rows)}
        keys = grid_keys(names, mode, params, seeds, models)
        todo = [k for k in keys if k not in done or (retry_failed and rows[done[k]]["status"] == "failed")]
        skipped = len(keys) - len(todo)
        if skipped:
            log.info("%d of %d rows already in %s; running the other %d", skipped, len(keys), results.path, len(todo))
        runs_dir = out / "runs"
        for n, key in enumerate(todo, start=1):
            run_dir = runs_dir / key.run_name
            if run_dir.exists():  # left by a killed or failed run of this row
                shutil.rmtree(run_dir)
            # Plots only where the run directory stays (they are ~40 % of a small run).
            row = _run_row(key, settings, run_dir, device, plots=keep_runs)
            if key in done:
                rows[done[key]] = row
                results.rewrite(rows)
            else:
                results.append(row)
                done[key] = len(rows)
                rows.append(row)
            if row["status"] == "ok":
                if not keep_runs:
                    shutil.rmtree(run_dir, ignore_errors=True)
                log.info("[%d/%d] %s: test %.4f  val %.4f  (%d edges, %.1f s)", n, len(todo), key.describe(),
                         float(row["test_accuracy"]), float(row["val_accuracy"]), int(row["edges"] or 0),
                         float(row["seconds"]))
            else:
                log.warning("[%d/%d] %s failed: %s", n, len(todo), key.describe(), row["error"])
        rows = [{c: str(r.get(c, "")) for c in RESULT_COLUMNS} for r in rows]
        summary, files = write_summary(out, rows, settings)
    failed = sum(r["status"] == "failed" for r in rows)
    return SweepResult(out, rows, summary, ran=len(todo), skipped=skipped, failed=failed,
                       best=best_row(summary), files=[results.path, *files])

