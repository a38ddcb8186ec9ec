"""``graphforge.bench.som``: a smoke run of the SOM benchmark (not a timed test)."""

import json
import sys

from click.testing import CliRunner

from graphforge.bench.som import (
    format_table,
    load_bench_data,
    run_som_benchmark,
    som_command,
)


def test_benchmark_compares_methods_on_the_same_data(monkeypatch):
    monkeypatch.setitem(sys.modules, "minisom", None)  # as if MiniSom were not installed
    result = run_som_benchmark("synthetic", 4, 5, 2, n=300, dim=12, log=lambda msg: None)
    assert result["config"]["samples"] == 300 and result["config"]["features"] == 12
    assert [r["method"] for r in result["results"]] == ["graphforge (batch, float64)", "graphforge (batch, float32)",
                                                        "graphforge (online, float64)", "graphforge (online, float32)"]
    for r in result["results"]:
        assert r["seconds_per_epoch"] > 0 and r["quantization_error"] > 0 and r["epochs"] == 2
    assert any("MiniSom is not installed" in n for n in result["notes"])
    assert "graphforge (online, float32)" in format_table(result)


def test_bench_data_is_standardised():
    x = load_bench_data("synthetic", n=500, dim=8)
    assert x.shape == (500, 8)
    assert x.mean(0).abs().max() < 1e-4 and (x.std(0) - 1).abs().max() < 1e-4
    assert load_bench_data("digits").shape == (1797, 64)


def test_command_json_and_bad_options():
    runner = CliRunner()
    r = runner.invoke(som_command, ["--data", "synthetic", "--n", "200", "--dim", "6", "--rows", "3", "--cols", "3",
                                    "--epochs", "1", "--mode", "batch", "--dtype", "float32", "--skip-minisom", "--json"])
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["config"]["grid"] == "3x3" and len(result["results"]) == 1
    assert result["results"][0]["method"] == "graphforge (batch, float32)"
    assert runner.invoke(som_command, ["--sigma", "0", "--skip-minisom"]).exit_code == 2
    bad_grid = runner.invoke(som_command, ["--rows", "1", "--cols", "1", "--skip-minisom"])
    assert bad_grid.exit_code == 1 and "fewer than 2 neurons" in bad_grid.output
