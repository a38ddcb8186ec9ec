"""The CLI: same code path as the API, JSON outputs, clean errors."""

import json

import pytest
from click.testing import CliRunner

import graphforge
from graphforge.cli.main import cli, load_plugin_commands


@pytest.fixture
def runner():
    load_plugin_commands()
    return CliRunner()


def invoke(runner, args):
    result = runner.invoke(cli, args, catch_exceptions=False)
    return result


def test_run_json_matches_python_api(runner, tmp_path):
    args = ["run", "--converter", "none", "--model", "mlp", "--epochs", "15", "--seed", "0",
            "--out", str(tmp_path / "cli"), "--json", "-q"]
    res = invoke(runner, args)
    assert res.exit_code == 0, res.output
    metrics = json.loads(res.stdout.strip().splitlines()[-1])
    assert {"test_accuracy", "val_accuracy", "train_seconds"} <= set(metrics)
    assert metrics["test_accuracy"] >= 0.90
    api = graphforge.run("none", "mlp", epochs=15, seed=0, out=str(tmp_path / "api"))
    for key in ("test_accuracy", "val_accuracy", "test_macro_f1"):
        assert metrics[key] == api.metrics[key]


def test_run_json_keeps_stdout_clean(runner, tmp_path):
    res = invoke(runner, ["run", "--epochs", "1", "--limit-train", "100", "--out", str(tmp_path / "r"), "--json"])
    assert res.exit_code == 0
    json.loads(res.stdout)  # stdout is exactly one JSON object; logs went to stderr
    assert "epoch" in res.stderr


def test_config_file_and_options(runner, tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("epochs: 2\nlimit-train: 120\noptions:\n  hidden: 16\n")
    res = invoke(runner, ["run", "--config", str(cfg), "-o", "layers=1", "--out", str(tmp_path / "r"), "--json", "-q"])
    assert res.exit_code == 0, res.output
    metrics = json.loads(res.stdout)
    assert metrics["epochs"] == 2 and metrics["num_train"] == 120
    saved = (tmp_path / "r" / "config.yaml").read_text()
    assert "hidden: 16" in saved and "layers: 1" in saved


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "--model", "nope"], "unknown model 'nope'; choose one of:"),
        (["run", "--converter", "nope"], "unknown converter 'nope'"),
        (["run", "--dataset", "nope"], "unknown dataset 'nope'"),
        (["run", "-o", "bogus=1"], "no plugin in this run takes option 'bogus'"),
        (["run", "-o", "novalue"], "not of the form key=value"),
        (["run", "--dataset", "mnist"], "--data-root"),
        (["run", "--dataset", "mnist", "--data-root", "/nonexistent/dir"], "/nonexistent/dir"),
        (["run", "-o", "dropout=5"], "dropout must be in [0, 1)"),
    ],
)
def test_user_errors_are_one_line_without_traceback(runner, tmp_path, args, message):
    out = tmp_path / "out"
    res = runner.invoke(cli, args + ["--out", str(out)])
    assert res.exit_code == 1, res.output
    assert "Traceback" not in res.output
    assert message in res.stderr
    assert res.stderr.startswith("Error: ")
    assert not out.exists()


@pytest.mark.parametrize("args", [["run", "--epochs", "0"], ["run", "--lr", "-1"], ["run", "--limit-train", "0"]])
def test_impossible_option_values_are_usage_errors(runner, args):
    res = runner.invoke(cli, args)
    assert res.exit_code == 2
    assert "Traceback" not in res.output


@pytest.mark.parametrize("what, builtin", [("datasets", "digits"), ("converters", "none"), ("models", "mlp"),
                                           ("embedders", "pixels")])
def test_list_json(runner, what, builtin):
    res = invoke(runner, ["list", what, "--json"])
    assert res.exit_code == 0
    rows = json.loads(res.stdout)
    by_name = {r["name"]: r for r in rows}
    assert builtin in by_name
    assert by_name[builtin]["plugin"].startswith("graphforge.builtin.")
    assert all(r["description"] for r in rows)
    plain = invoke(runner, ["list", what])
    assert builtin in plain.stdout


def test_list_names_every_builtin_with_its_plugin(runner):
    for what, kind in (("datasets", "dataset"), ("converters", "converter"), ("models", "model"),
                       ("embedders", "embedder")):
        rows = json.loads(invoke(runner, ["list", what, "--json"]).stdout)
        assert {r["name"] for r in rows} == set(getattr(graphforge, f"list_{what}")())
        assert all(r["kind"] == kind and r["plugin"] for r in rows)


def test_plugins_json(runner):
    res = invoke(runner, ["plugins", "--all", "--json"])
    rows = json.loads(res.stdout)
    by_name = {r["name"]: r for r in rows}
    mlp = by_name["graphforge.builtin.models.mlp"]
    assert mlp["builtin"] and mlp["hooks"] == ["register_models"] and mlp["provides"] == {"models": ["mlp"]}
    assert mlp["version"] == graphforge.__version__


def test_version_and_help(runner):
    assert graphforge.__version__ in invoke(runner, ["--version"]).stdout
    assert "Usage" in invoke(runner, ["-h"]).stdout
    assert "--converter" in invoke(runner, ["run", "--help"]).stdout
