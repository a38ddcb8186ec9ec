"""``graphforge sweep``: the grid, its files, and resuming after a kill, a torn line or failures."""

import csv
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import graphforge
from graphforge.builtin.converters.similarity import Similarity
from graphforge.cli.main import cli, load_plugin_commands
from graphforge.errors import ConfigError
from graphforge.similarity.sweep import RESULT_COLUMNS, SUMMARY_COLUMNS

ROOT = Path(__file__).resolve().parents[2]
SMALL = ["--limit-train", "100", "--limit-test", "20", "--epochs", "1", "-o", "cache=false"]
GRID = ["--metric", "cosine", "--metric", "euclidean", "--threshold", "0.9", "--threshold", "1.2",
        "--seed", "0", "--seed", "1", "--model", "gcn", "--model", "mlp"]


@pytest.fixture(scope="module", autouse=True)
def fast_runs():
    """Tiny runs, fast: skip each run's own pictures (the sweep deletes its run directories; the
    engine's tests draw them) and use one torch thread (on a busy 2-core machine, thread hand-offs
    for a 140-node graph cost ~5x the work itself)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr("graphforge.engine.plots.plot_confusion_matrix", lambda *a, **k: None)
            mp.setattr("graphforge.engine.plots.plot_learning_curves", lambda *a, **k: None)
            mp.setattr(Similarity, "write_plots", lambda self, history, plot_dir: [])
            yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def runner():
    load_plugin_commands()
    return CliRunner()


def sweep(runner, out, *args, expect=0):
    res = runner.invoke(cli, ["sweep", *SMALL, "--out", str(out), "--json", *args], catch_exceptions=False)
    assert res.exit_code == expect, res.output
    return (json.loads(res.stdout) if expect == 0 else None), res


def read_rows(out):
    with open(out / "results.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def key(row):
    return (row["metric"], row["mode"], row["threshold"] or row["k"], row["seed"], row["model"])


@pytest.fixture(scope="module")
def grid(runner, tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "grid"
    summary, res = sweep(runner, out, *GRID)
    return out, summary, res


def test_grid_rows_files_and_summary(grid):
    out, summary, _ = grid
    rows = read_rows(out)
    expected = [(m, "threshold", t, s, model) for s in ("0", "1") for m in ("cosine", "euclidean")
                for t in ("0.9", "1.2") for model in ("gcn", "mlp")]
    assert [key(r) for r in rows] == expected  # every key once, in seed -> metric -> threshold -> model order
    assert list(rows[0]) == list(RESULT_COLUMNS)
    assert all(r["status"] == "ok" and r["error"] == "" and 0 <= float(r["test_accuracy"]) <= 1 for r in rows)
    assert all(r["edges"] == "0" for r in rows if r["metric"] == "cosine" and r["threshold"] == "1.2")
    # the models of one (seed, metric, threshold) share one graph
    for a, b in zip(rows[::2], rows[1::2]):
        assert (a["edges"], a["isolated_nodes"]) == (b["edges"], b["isolated_nodes"])
    assert summary["rows"] == 16 and summary["ran"] == 16 and summary["failed"] == 0
    assert len(summary["summary"]) == 8 and all(s["runs"] == 2 for s in summary["summary"])
    table = list(csv.DictReader((out / "summary.csv").open()))
    assert list(table[0]) == list(SUMMARY_COLUMNS) and len(table) == 8
    assert "± " in (out / "summary.md").read_text()
    assert (out / "plots" / "sweep.png").stat().st_size > 1000
    assert not list((out / "runs").iterdir())  # --no-keep-runs is the default
    saved = json.loads((out / "sweep.json").read_text())
    assert saved["settings"]["limit_train"] == 100 and saved["grid"]["seeds"] == [0, 1]


def test_a_row_is_exactly_the_run_it_stands_for(grid, tmp_path):
    out, _, _ = grid
    row = next(r for r in read_rows(out) if key(r) == ("cosine", "threshold", "0.9", "1", "mlp"))
    result = graphforge.run("similarity", "mlp", options={"metric": "cosine", "threshold": 0.9, "cache": False},
                            seed=1, epochs=1, limit_train=100, limit_test=20, out=str(tmp_path / "r"))
    assert float(row["test_accuracy"]) == pytest.approx(result.metrics["test_accuracy"], abs=1e-6)
    assert int(row["edges"]) == result.metrics["graph_edges"]


def test_resume_drops_a_torn_last_line_and_reruns_only_it(runner, grid, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(grid[0], out)
    text = (out / "results.csv").read_text()
    (out / "results.csv").write_text(text[:-12])  # killed while writing the last row
    summary, res = sweep(runner, out, *GRID)
    assert "dropping an incomplete last line" in res.stderr
    assert summary["ran"] == 1 and summary["skipped"] == 15
    assert read_rows(out) == read_rows(grid[0])[:-1] + [read_rows(out)[-1]]
    assert sorted(key(r) for r in read_rows(out)) == sorted(key(r) for r in read_rows(grid[0]))


def test_resume_adds_new_grid_values_but_refuses_other_settings(runner, grid, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(grid[0], out)
    summary, _ = sweep(runner, out, "--metric", "cosine", "--threshold", "0.9", "--seed", "5", "--model", "mlp")
    assert summary["ran"] == 1 and summary["rows"] == 17
    assert json.loads((out / "sweep.json").read_text())["grid"]["seeds"] == [0, 1, 5]
    before = (out / "results.csv").read_text()
    _, res = sweep(runner, out, *GRID, "--lr", "0.01", expect=1)
    assert "other settings" in res.output and "lr None (now 0.01)" in res.output
    assert (out / "results.csv").read_text() == before


def test_failed_rows_are_recorded_kept_and_retried_on_request(runner, tmp_path, monkeypatch):
    original = Similarity.check_data

    def fail_at_095(self, data):
        if self.threshold == 0.95:
            raise ConfigError("injected failure")
        if self.threshold == 0.97:  # not a graphforge error (say, out of memory): recorded too
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory")
        original(self, data)

    monkeypatch.setattr(Similarity, "check_data", fail_at_095)
    out = tmp_path / "s"
    args = ["--threshold", "0.9", "--threshold", "0.95", "--threshold", "0.97", "--model", "mlp"]
    summary, res = sweep(runner, out, *args)
    rows = read_rows(out)
    assert [(r["threshold"], r["status"]) for r in rows] == [("0.9", "ok"), ("0.95", "failed"), ("0.97", "failed")]
    assert rows[1]["error"] == "ConfigError: injected failure" and summary["failed"] == 2
    assert rows[2]["error"].startswith("RuntimeError: DefaultCPUAllocator")
    assert "injected failure" in res.stderr
    summary, _ = sweep(runner, out, *args)  # failed rows are not retried by default
    assert summary["ran"] == 0 and read_rows(out) == rows
    monkeypatch.setattr(Similarity, "check_data", original)
    summary, _ = sweep(runner, out, *args, "--retry-failed")
    retried = read_rows(out)
    assert summary["ran"] == 2 and summary["failed"] == 0
    assert retried[0] == rows[0]
    assert [(r["threshold"], r["status"]) for r in retried] == [("0.9", "ok"), ("0.95", "ok"), ("0.97", "ok")]


def test_a_killed_sweep_resumes_without_losing_or_repeating_rows(runner, tmp_path):
    out = tmp_path / "killed"
    thresholds = ["0.8", "0.85", "0.9", "0.95"]
    args = [a for t in thresholds for a in ("--threshold", t)] + ["--model", "mlp"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "graphforge", "sweep", *SMALL, "--out", str(out), "-q", *args],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            results = out / "results.csv"
            if results.exists() and results.read_text().count("\n") >= 3:  # header + 2 complete rows
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.02)
    finally:
        if proc.poll() is None and time.monotonic() >= deadline:
            proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the sweep finished or failed before it could be killed"
    done = len(read_rows(out))
    assert 2 <= done < 4
    summary, _ = sweep(runner, out, *args)
    rows = read_rows(out)
    assert summary["ran"] == 4 - done and summary["skipped"] == done
    assert [r["threshold"] for r in rows] == thresholds and all(r["status"] == "ok" for r in rows)


def test_degree_sweep_one_grid_for_every_metric(runner, tmp_path):
    """--degree: each row's threshold is the one its embeddings give for that mean degree,
    recorded in the row; the row is the run ``-o degree=D`` gives, and a resume skips it."""
    out = tmp_path / "deg"
    args = ["--metric", "cosine", "--metric", "euclidean", "--degree", "4", "--degree", "8", "--model", "mlp"]
    summary, _ = sweep(runner, out, *args)
    rows = read_rows(out)
    assert [(r["metric"], r["mode"], r["degree"]) for r in rows] == [
        ("cosine", "degree", "4.0"), ("cosine", "degree", "8.0"), ("euclidean", "degree", "4.0"),
        ("euclidean", "degree", "8.0")]
    assert all(abs(float(r["mean_degree"]) - float(r["degree"])) < 0.5 and r["threshold"] and r["k"] == ""
               for r in rows), rows
    cos4 = rows[0]
    result = graphforge.run("similarity", "mlp", options={"metric": "cosine", "degree": 4, "cache": False},
                            seed=0, epochs=1, limit_train=100, limit_test=20, out=str(tmp_path / "r"))
    assert float(cos4["threshold"]) == pytest.approx(result.metrics["graph_threshold"], rel=1e-5)
    assert int(cos4["edges"]) == result.metrics["graph_edges"]
    assert [s["degree"] for s in summary["summary"]] == [4.0, 8.0, 4.0, 8.0]
    assert "degree=4.0" in (out / "summary.md").read_text()
    assert json.loads((out / "sweep.json").read_text())["grid"]["degrees"] == [4.0, 8.0]
    again, _ = sweep(runner, out, *args)
    assert again["ran"] == 0 and again["skipped"] == 4


def test_a_sweep_written_before_the_degree_column_resumes(runner, grid, tmp_path):
    out = tmp_path / "old"
    shutil.copytree(grid[0], out)
    rows = read_rows(out)
    old_columns = [c for c in RESULT_COLUMNS if c != "degree"]
    with open(out / "results.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, old_columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    summary, _ = sweep(runner, out, *GRID)
    assert summary["ran"] == 0 and summary["skipped"] == 16
    assert list(read_rows(out)[0]) == list(RESULT_COLUMNS) and read_rows(out) == rows


@pytest.mark.parametrize("name,content,message", [
    ("results.csv", bytes(range(128, 188)), "results.csv is not a sweep's results file: it is not UTF-8 text"),
    ("sweep.json", bytes(range(128, 188)), "sweep.json is not a sweep's settings file: it is not UTF-8 text"),
    ("sweep.json", b"[1, 2]", "sweep.json is not a sweep's settings file (expected a JSON object"),
    ("sweep.json", b'{"settings": 5}', "sweep.json is not a sweep's settings file (expected a JSON object"),
    ("sweep.json", b'{"settings": {}, "grid": {"seeds": 3}}', "sweep.json is not a sweep's settings file"),
], ids=["binary results", "binary settings", "settings a list", "settings not an object", "grid not lists"])
def test_resume_refuses_sweep_files_that_are_not_text_or_not_a_sweep(runner, grid, tmp_path, name, content,
                                                                      message):
    out = tmp_path / "copy"
    shutil.copytree(grid[0], out)
    (out / name).write_bytes(content)
    _, res = sweep(runner, out, *GRID, expect=1)
    errors = [line for line in res.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and message in errors[0] and "Traceback" not in res.output, res.output
    assert (out / name).read_bytes() == content


@pytest.mark.parametrize("args,message", [
    (["--threshold", "0.9", "--k", "5"], "not --threshold and --k"),
    ([], "the --threshold values, the --k values or the --degree values"),
    (["--k", "5", "--mode", "threshold"], "mode threshold sweeps --threshold"),
    (["--threshold", "0.9", "--seed", "1", "--seeds", "2"], "--seed values or --seeds N"),
    (["--threshold", "0.9", "-o", "metric=cosine"], "are the sweep's grid"),
    (["--threshold", "0.9", "--model", "nope"], "unknown model 'nope'"),
    (["--degree", "5", "--k", "3"], "not --k and --degree"),
    (["--degree", "5", "--mode", "knn"], "mode knn sweeps --k values, not --degree"),
    (["--degree", "5", "-o", "degree=3"], "are the sweep's grid"),
    (["--degree", "0"], "is not in the range x>0"),
])
def test_sweep_user_errors(runner, tmp_path, args, message):
    res = runner.invoke(cli, ["sweep", "--out", str(tmp_path / "s"), *args])
    assert res.exit_code in (1, 2) and message in res.output, res.output
    assert not (tmp_path / "s").exists()


def test_sweep_refuses_a_directory_that_is_not_a_sweep(runner, tmp_path):
    (tmp_path / "other.txt").write_text("x")
    res = runner.invoke(cli, ["sweep", "--out", str(tmp_path), "--threshold", "0.9"])
    assert res.exit_code == 1 and "not a sweep directory" in res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.txt"]


def test_grid_keys_cover_the_product():
    from graphforge.similarity.sweep import grid_keys

    keys = grid_keys(["cosine", "linf"], "knn", [5, 10], [0, 1, 2], ["gcn", "mlp"])
    assert len(set(keys)) == len(keys) == 24
    assert {(k.metric, k.param, k.seed, k.model) for k in keys} == set(
        itertools.product(["cosine", "linf"], [5, 10], [0, 1, 2], ["gcn", "mlp"]))
    assert [k.model for k in keys[:2]] == ["gcn", "mlp"]  # models vary fastest: one graph, every model


def test_summary_std_over_seeds_is_the_population_std_as_in_bench_results():
    """One vocabulary: ``±`` over seeds is the same statistic in a sweep and in ``bench results``."""
    from graphforge.bench.results import summarize
    from graphforge.similarity.sweep import summarize_results

    accs = [0.80, 0.90, 0.85]
    rows = [{**dict.fromkeys(RESULT_COLUMNS, ""), "metric": "cosine", "mode": "knn", "k": "5", "seed": str(s),
             "model": "gcn", "status": "ok", "val_accuracy": str(a), "test_accuracy": str(a)}
            for s, a in enumerate(accs)]
    (entry,) = summarize_results(rows)
    bench = summarize([{"group": "g", "cell": "c", "seed": str(s), "status": "ok", "val_accuracy": str(a),
                        "test_accuracy": str(a), "sklearn_test_accuracy": "", "train_seconds": "1",
                        "wall_seconds": "1", "extra": "{}", "command": "x", "error": ""}
                       for s, a in enumerate(accs)])[0]
    population = float(np.std(accs))
    assert entry["test_accuracy_std"] == pytest.approx(population)
    assert bench["test_std"] == pytest.approx(population) and bench["val_std"] == pytest.approx(population)
