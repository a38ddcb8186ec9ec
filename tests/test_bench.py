"""The benchmark commands run end to end at tiny sizes (their figures are not tested)."""

import csv
import json

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
