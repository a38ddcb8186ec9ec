"""The benchmark commands run end to end at tiny sizes (their figures are not tested)."""

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner

from graphforge.cli.main import cli, load_plugin_commands


@pytest.fixture
def runner():
    load_plugin_commands()
    return CliRunner()


def test_bench_knn_prints_table_and_csv(runner, tmp_path):
    out = tmp_path / "knn.csv"
    res = runner.invoke(cli, ["bench", "knn", "-B", "8", "-N", "16", "-D", "8", "--k-max", "4", "--repeats", "1",
                              "--warmup", "0", "--method", "graphforge", "--method", "cdist_topk_mask",
                              "--csv", str(out)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "graphforge" in res.stdout and "floor" in res.stdout
    rows = list(csv.DictReader(out.open()))
    assert {r["method"] for r in rows} == {"graphforge", "cdist_topk_mask"}
    assert all(float(r["median_ms"]) > 0 for r in rows)


def test_bench_knn_rejects_bad_lists(runner):
    res = runner.invoke(cli, ["bench", "knn", "-B", "8,x"])
    assert res.exit_code == 2 and "comma-separated integers" in res.output
    assert "k is at most N - 1" not in runner.invoke(cli, ["bench", "knn", "-B", "8", "-N", "16", "-D", "8", "--k-max", "4",
                                                          "--repeats", "1", "--warmup", "0",
                                                          "--method", "graphforge"]).stdout
    clamped = runner.invoke(cli, ["bench", "knn", "-B", "8", "-N", "8", "-D", "8", "--k-max", "8", "--repeats", "1",
                                  "--warmup", "0", "--method", "graphforge"])
    assert clamped.exit_code == 0 and "in sets of 8 points a larger k gives every other point" in clamped.stdout
    res = runner.invoke(cli, ["bench", "knn", "--max-memory-gb", "-1"])
    assert res.exit_code == 2 and "not in the range x>0" in res.output


def test_bench_train_compares_backends(runner):
    res = runner.invoke(cli, ["bench", "train", "--image-size", "8", "--batch-size", "4", "--steps", "1",
                              "--warmup", "0", "-o", "hidden=8", "-o", "channels=[4]"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[1].startswith("native") and lines[2].startswith("reference")


def test_bench_knn_classifier_json(runner):
    res = runner.invoke(cli, ["bench", "knn-classifier", "--n-train", "300", "--n-test", "40", "--dim", "8",
                              "--json"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    result = json.loads(res.stdout)
    assert result["identical_predictions"] is True
    assert result["identical_to_fp32_pass"] is True and result["int8_pass"] is False  # random floats: no grid


def test_bench_knn_classifier_on_grid_data_times_both_passes(monkeypatch):
    from graphforge.bench.knn_classifier import format_table, run_knn_classifier_benchmark

    monkeypatch.setenv("GRAPHFORGE_KNN_INT8", "on")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (400, 16)).astype(np.float32) / 255
    result = run_knn_classifier_benchmark(k=3, data=(x[:300], rng.integers(0, 3, 300), x[300:]), log=lambda _: None)
    assert result["int8_pass"] is True and result["identical_to_fp32_pass"] is True
    assert result["identical_predictions"] is True and result["n_train"] == 300 and result["dim"] == 16
    assert "int8 pass off" in format_table(result)


@pytest.mark.parametrize("index", ["ivf", "flat"])
def test_bench_similarity_times_both_sides(runner, index):
    res = runner.invoke(cli, ["bench", "similarity", "-n", "3000", "-d", "16", "-k", "5", "--index", index,
                              "--recall-sample", "100", "--json"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    figures = json.loads(res.stdout.strip().splitlines()[-1])
    assert figures["faiss_seconds"] > 0 and figures["graphforge_seconds"] > 0
    assert figures["ratio"] == pytest.approx(figures["graphforge_seconds"] / figures["faiss_seconds"])
    assert figures["edges"] >= 3000 * 5  # symmetrised kNN graph
    if index == "ivf":
        assert 0.5 < figures["recall"] <= 1.0
    res = runner.invoke(cli, ["bench", "similarity", "-n", "10", "-k", "10"])
    assert res.exit_code == 2 and "smaller than the number of nodes" in res.output


def test_bench_results_summary_and_resume_record(tmp_path):
    """The record and summary of ``bench results`` (no data needed): mean/std/median per cell,
    the k sweep's own run hidden behind its k rows, a torn last line dropped, commands with DATA."""
    from graphforge.bench.results import Cell, RunsFile, command_line, summarize, write_summary

    cell = Cell("fashion-10k", "cnn", "none", "cnn", "fashion-mnist", {"channels": [8, 16]}, {"limit_train": 100})
    command = command_line(cell, 2, "/somewhere/data", cell.settings)
    assert command == ("graphforge run --dataset fashion-mnist --converter none --model cnn --data-root DATA "
                       "--limit-train 100 -o 'channels=[8,16]' --seed 2")
    runs = RunsFile(tmp_path / "runs.csv")
    for seed, val, test in ((0, 0.8, 0.7), (1, 0.9, 0.8), (2, 1.0, 0.9)):
        runs.append({"group": "g", "cell": "cnn", "seed": seed, "status": "ok", "val_accuracy": val,
                     "test_accuracy": test, "wall_seconds": 2.0, "command": f"x --seed {seed}"})
    runs.append({"group": "g", "cell": "knn", "seed": 0, "status": "ok", "val_accuracy": 1, "test_accuracy": 1,
                 "command": "k --seed 0"})
    runs.append({"group": "g", "cell": "knn k=1", "seed": 0, "status": "ok", "val_accuracy": 0.5,
                 "test_accuracy": 0.6, "sklearn_test_accuracy": 0.6, "command": "k --seed 0"})
    runs.append({"group": "g", "cell": "bad", "seed": 0, "status": "failed", "error": "boom", "command": "b"})
    with runs.path.open("a") as f:
        f.write("g,cnn,3,ok,0.1")  # a run killed while writing its row
    rows = runs.load()
    assert len(rows) == 6
    summary = summarize(rows)
    assert [s["cell"] for s in summary] == ["cnn", "knn k=1"]
    cnn = summary[0]
    assert cnn["seeds"] == 3 and cnn["test_median"] == pytest.approx(0.8)
    assert cnn["test_mean"] == pytest.approx(0.8) and cnn["val_std"] == pytest.approx(0.0816497, rel=1e-5)
    assert cnn["command"] == "x --seed S"
    files = write_summary(tmp_path, summary, "header")
    table = files[-1].read_text()
    assert "| cnn | 3 | 0.9000 ± 0.0816 | 0.8000 ± 0.0816 | 0.8000 |  | 2 | `x --seed S` |" in table
    assert "| knn k=1 | 1 | 0.5000 ± 0.0000 | 0.6000 ± 0.0000 | 0.6000 | 0.6000 |" in table


def test_bench_results_commands_name_out_and_one_template_for_every_seed(tmp_path):
    """A cell's path under the benchmark folder is written OUT/..., and the summary's command
    stands for every seed: its --seed and its per-seed run folder both say S."""
    from graphforge.bench.results import Cell, RunsFile, command_line, summarize

    runs = RunsFile(tmp_path / "runs.csv")
    for seed in (1, 2):
        run = tmp_path / "runs" / "sim" / f"embedder-cnn-seed{seed}"
        cell = Cell("sim", "cnn cosine degree 5: gcn", "similarity", "gcn", "fashion-mnist",
                    {"embedder": "trained", "embedder_options": {"run": str(run)}, "degree": 5}, {},
                    {"embedder_options": {"run": f"OUT/runs/sim/embedder-cnn-seed{seed}"}})
        command = command_line(cell, seed, None, cell.settings)
        assert str(tmp_path) not in command
        assert f"""'embedder_options={{"run":"OUT/runs/sim/embedder-cnn-seed{seed}"}}' -o degree=5 --seed {seed}""" in command
        runs.append({"group": "sim", "cell": cell.name, "seed": seed, "status": "ok", "val_accuracy": 0.5,
                     "test_accuracy": 0.5, "command": command})
    (row,) = summarize(runs.load())
    assert row["command"].endswith("""'embedder_options={"run":"OUT/runs/sim/embedder-cnn-seedS"}' -o degree=5 --seed S""")


def test_bench_results_reports_each_run_and_records_failures(tmp_path, monkeypatch):
    """Each run logs its start and its figures (a long benchmark is not silent); a failing run is
    recorded with its one-line error and the benchmark goes on; a finished run is not rerun."""
    import logging

    import graphforge
    from graphforge.bench import results as bench_results
    from graphforge.errors import DataError

    calls = []

    def fake_run(converter, model, dataset, *, seed, **kwargs):
        calls.append(seed)
        if seed == 1:
            raise DataError("broken\nfile")
        return type("R", (), {"metrics": {"val_accuracy": 0.91234, "test_accuracy": 0.9, "train_seconds": 1.0}})()

    monkeypatch.setattr(graphforge, "run", fake_run)
    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    logger = bench_results.log
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)  # setLevel, not the attribute: it also clears the enabled-for cache
    try:
        bench = bench_results.Bench(tmp_path, "/data", [0, 1])
        cell = bench_results.Cell("g", "cnn", "none", "cnn", "fashion-mnist", {}, {})
        for seed in (0, 1, 0):
            bench.run_cell(cell, seed)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert calls == [0, 1]
    assert "bench results: g / cnn, seed 0: validation 0.9123, test 0.9000 (0 s)" in records
    assert any(r.startswith("bench results: g / cnn, seed 1 failed: DataError: broken file") for r in records)
    rows = bench.runs.load()
    assert [(r["seed"], r["status"]) for r in rows] == [("0", "ok"), ("1", "failed")]


def test_bench_results_quick_on_real_mnist(runner, tmp_path):
    """A real smoke run of ``bench results --quick`` on the MNIST group, then a resume that reruns nothing."""
    from tests.real_data import real_data

    root = real_data("MNIST")
    out = tmp_path / "results"
    args = ["bench", "results", "--data-root", str(root), "--out", str(out), "--quick", "--seeds", "0",
            "--group", "mnist-som"]
    first = runner.invoke(cli, args)
    assert first.exit_code == 0, first.output
    assert "## mnist-som" in first.output and "som_select (decorrelated)" in first.output
    assert "bench results: mnist-som / som_select (decorrelated) + knn k=3, 100 pixels, seed 0: validation 0." in first.output
    rows = list(csv.DictReader((out / "runs.csv").open()))
    assert len(rows) == 3 and all(r["status"] == "ok" for r in rows)
    assert all(0.5 < float(r["test_accuracy"]) <= 1 for r in rows)
    again = runner.invoke(cli, args)
    assert again.exit_code == 0 and len(list(csv.DictReader((out / "runs.csv").open()))) == 3
    bad = runner.invoke(cli, ["bench", "results", "--data-root", str(tmp_path), "--group", "mnist-som"])
    assert bad.exit_code == 1 and "has no MNIST folder" in bad.output


def test_bench_results_quick_similarity_on_real_fashion(runner, tmp_path):
    """The similarity group, quick, on real Fashion-MNIST: every graph at the target mean degree
    (the converter's ``degree``), and commands that name OUT and S instead of this run's folders."""
    from tests.real_data import real_data

    root = real_data("FashionMNIST")
    out = tmp_path / "results"
    res = runner.invoke(cli, ["bench", "results", "--data-root", str(root), "--out", str(out), "--quick", "--seeds", "0",
                              "--group", "fashion-similarity", "-q"])
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader((out / "runs.csv").open()))
    assert len(rows) == 9 and all(r["status"] == "ok" for r in rows)  # the cnn embedder + 2 embeddings x 4 models
    graphs = [json.loads(r["extra"]) for r in rows[1:]]
    assert all(abs(g["graph_mean_degree"] - 10) < 1 and "graph_threshold" in g for g in graphs), graphs
    table = (out / "results.md").read_text()
    assert str(tmp_path) not in table and "`OUT` is this benchmark's --out folder" in table
    assert "--out OUT/runs/fashion-similarity/embedder-cnn-seedS" in table
    assert """-o 'embedder_options={"run":"OUT/runs/fashion-similarity/embedder-cnn-seedS"}' -o metric=cosine -o degree=10""" in table


def test_bench_startup_table(runner):
    res = runner.invoke(cli, ["bench", "startup", "--repeats", "1", "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert [r["command"] for r in rows][:3] == ["python -c 'import torch'", "graphforge --help", "graphforge --version"]
    assert all(r["seconds"] > 0 for r in rows)
    help_row = next(r for r in rows if r["command"] == "graphforge --help")
    assert help_row["vs_import_torch"] < 1  # --help imports no torch, so it beats importing it


def test_bench_similarity_shards_smoke(runner):
    res = runner.invoke(cli, ["bench", "similarity", "--shards", "2", "-n", "600", "-d", "8", "-k", "4", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["same_edges"] and out["p2"]["edges"] == out["p1"]["edges"] > 0
    assert len(out["p2"]["ranks"]) == 2 and all(r["peak_mib"] > 0 for r in out["p2"]["ranks"])


def test_bench_knn_classifier_real_mnist_whole_and_in_process(runner):
    from tests.real_data import real_data

    root = real_data("MNIST")
    res = runner.invoke(cli, ["bench", "knn-classifier", "--real", str(root), "--dataset", "mnist", "-k", "3",
                              "--json"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    result = json.loads(res.stdout)
    whole, inproc = result["whole_process"], result["in_process"]
    assert whole["same_accuracy"] is True and whole["graphforge_seconds"] > 0
    assert inproc["data"] == "mnist" and inproc["n_train"] == 6400 and inproc["dim"] == 784
    assert inproc["identical_predictions"] is True and inproc["identical_to_fp32_pass"] is True
    # byte images are on a grid: the int8 pass runs wherever the CPU has VNNI / AMX
    assert inproc["int8_pass"] is bool(inproc["cpu_int8_features"])


def test_bench_results_runs_a_command_shared_by_two_groups_once(tmp_path, monkeypatch):
    """``--quick`` gives fashion-10k and fashion-full the same subset: each such run is made once
    and recorded under both groups, with the rows its run also wrote (the k sweep's rows)."""
    import graphforge
    from graphforge.bench import results as bench_results

    calls = []

    def fake_run(converter, model, dataset, *, seed, **kwargs):
        calls.append((model, seed))
        return type("R", (), {"metrics": {"val_accuracy": 0.5, "test_accuracy": 0.25, "train_seconds": 1.0}})()

    monkeypatch.setattr(graphforge, "run", fake_run)

    def after(result, row):
        return [{**row, "cell": "extra row", "test_accuracy": 0.75}]

    bench = bench_results.Bench(tmp_path, "/data", [0])
    for group in ("fashion-10k", "fashion-full"):
        cell = bench_results.Cell(group, "cnn", "none", "cnn", "fashion-mnist", {}, {"limit_train": 10})
        bench.run_cell(cell, 0, after=after, companions=["extra row"])
    other = bench_results.Cell("fashion-full", "mlp", "none", "mlp", "fashion-mnist", {}, {"limit_train": 10})
    bench.run_cell(other, 0)
    assert calls == [("cnn", 0), ("mlp", 0)]
    rows = bench_results.RunsFile(tmp_path / "runs.csv").load()
    assert [(r["group"], r["cell"], r["test_accuracy"]) for r in rows] == [
        ("fashion-10k", "cnn", "0.250000"), ("fashion-10k", "extra row", "0.750000"),
        ("fashion-full", "cnn", "0.250000"), ("fashion-full", "extra row", "0.750000"),
        ("fashion-full", "mlp", "0.250000")]
    # A different seed's command differs: it runs.
    bench.run_cell(bench_results.Cell("fashion-full", "cnn", "none", "cnn", "fashion-mnist", {}, {"limit_train": 10}), 1)
    assert calls[-1] == ("cnn", 1)


def test_bench_results_precision_reaches_every_run_and_is_not_mixed(tmp_path, monkeypatch):
    """--precision bf16 goes to each run and into its command; an OUT of fp32 runs is not resumed at bf16."""
    import graphforge
    from graphforge.bench import results as bench_results
    from graphforge.errors import ConfigError

    seen = []

    def fake_run(converter, model, dataset, *, seed, **kwargs):
        seen.append(kwargs.get("precision", "fp32"))
        return type("R", (), {"metrics": {"val_accuracy": 0.5, "test_accuracy": 0.25, "train_seconds": 1.0}})()

    monkeypatch.setattr(graphforge, "run", fake_run)
    cell = bench_results.Cell("g", "cnn", "none", "cnn", "fashion-mnist", {}, {"limit_train": 10})
    bench_results.Bench(tmp_path / "fp32", "/data", [0]).run_cell(cell, 0)
    bench_results.Bench(tmp_path / "bf16", "/data", [0], precision="bf16").run_cell(cell, 0)
    assert seen == ["fp32", "bf16"]
    fp32_row, = bench_results.RunsFile(tmp_path / "fp32" / "runs.csv").load()
    bf16_row, = bench_results.RunsFile(tmp_path / "bf16" / "runs.csv").load()
    assert "--precision" not in fp32_row["command"] and "--precision bf16" in bf16_row["command"]
    with pytest.raises(ConfigError, match="holds runs at precision fp32 .*give --precision fp32 to resume them"):
        bench_results.Bench(tmp_path / "fp32", "/data", [0], precision="bf16")
    bench_results.Bench(tmp_path / "bf16", "/data", [0], precision="bf16")  # its own precision resumes
