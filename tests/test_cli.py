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
    models = by_name["graphforge.builtin.models"]
    assert models["builtin"] and models["hooks"] == ["register_models"]
    assert set(models["provides"]["models"]) >= {"mlp", "cnn", "knn", "sage", "gcn", "gat", "gin", "label_prop"}
    assert models["version"] == graphforge.__version__


def test_version_and_help(runner):
    assert graphforge.__version__ in invoke(runner, ["--version"]).stdout
    assert "Usage" in invoke(runner, ["-h"]).stdout
    assert "--converter" in invoke(runner, ["run", "--help"]).stdout


def test_help_list_and_plugins_import_no_torch():
    """``--help``, ``--version``, ``list`` and ``plugins`` answer from the plugins' registrations
    (names, descriptions, where each class lives) without importing torch or PyG."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from graphforge.cli.main import main\n"
        "for argv in (['--help'], ['--version'], ['list', 'models'], ['list', 'datasets'], ['plugins', '--all'],\n"
        "             ['bench', '--help'], ['run', '--help']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit as exc:\n"
        "        assert exc.code in (0, None), (argv, exc.code)\n"
        "heavy = sorted(m for m in ('torch', 'torch_geometric', 'numpy', 'faiss', 'sklearn') if m in sys.modules)\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip().splitlines()[-1] == "HEAVY []", out.stdout[-2000:]


def test_a_plugin_registering_by_location_loads_the_class_on_first_use(plugin_registered):
    from graphforge.errors import PluginError
    from graphforge.plugins import get_registry

    class Lazy:
        @graphforge.hookimpl
        def register_models(self, register):
            register("lazy-mlp", "graphforge.builtin.models.mlp:MLP", "an mlp registered by location")
            register("broken-lazy", "graphforge_no_such_module.x:Model", "cannot load")

    plugin_registered(Lazy(), "lazy-plugin")
    entry = get_registry("model").get("lazy-mlp")
    assert entry.describe() == "an mlp registered by location" and entry.location.endswith("mlp:MLP")
    assert graphforge.get_model("lazy-mlp", hidden=8).hidden == 8
    with pytest.raises(PluginError, match="plugin 'lazy-plugin' registered model 'broken-lazy' at "
                                          "'graphforge_no_such_module.x:Model', which failed to load"):
        graphforge.get_model("broken-lazy")
