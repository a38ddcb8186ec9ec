"""Bad input, table-driven: every case is a one-line ``Error:`` (exit 1 or 2) or one of
graphforge's own exceptions, never a traceback, and leaves no run directory behind."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import graphforge
from graphforge.cli.main import cli
from graphforge.errors import GraphforgeError

TINY = ["--limit-train", "60", "--limit-test", "20", "--epochs", "1", "--no-plots"]

CLI_CASES = [
    ("hidden too large to allocate", ["-o", "hidden=10000000000"], "out of memory"),
    ("weight decay nan", ["--weight-decay", "nan"], "weight_decay must be a finite number"),
    ("weight decay inf", ["--weight-decay", "inf"], "weight_decay must be a finite number"),
    ("weight decay negative", ["--weight-decay", "-1"], "not in the range x>=0"),
    ("lr inf", ["--lr", "inf"], "lr must be a finite number"),
    ("lr nan", ["--lr", "nan"], "lr must be a finite number"),
    ("lr zero", ["--lr", "0"], "not in the range x>0"),
    ("tau nan", ["--converter", "dyn_knn", "--model", "sage", "-o", "tau=nan"], "tau must be a finite number"),
    ("tau inf", ["--converter", "dyn_knn", "--model", "sage", "-o", "tau=inf"], "tau must be a finite number"),
    ("k_penalty nan", ["--converter", "dyn_knn", "--model", "sage", "-o", "k_penalty=nan"],
     "k_penalty must be a finite number"),
    ("layers not an integer", ["-o", "layers=2.5"], "layers must be an integer >= 0"),
    ("unknown model", ["--model", "mpl"], "unknown model 'mpl'"),
    ("unknown metric for dyn_knn", ["--converter", "dyn_knn", "--model", "sage", "-o", "metric=hamming"],
     "unknown metric 'hamming'"),
    ("k < 1", ["--model", "knn", "-o", "k=0"], "k must be an integer >= 1"),
    ("out on an unwritable filesystem", ["--out", "/proc/graphforge-test/run"], "cannot create run directory"),
]


@pytest.mark.parametrize(("label", "args", "message"), CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_cli_bad_values_are_one_line_errors(label, args, message, tmp_path):
    out = tmp_path / "run"
    full = ["run", *TINY, *args] if "--out" in args else ["run", *TINY, "--out", str(out), *args]
    result = CliRunner().invoke(cli, full)
    assert result.exit_code in (1, 2), (label, result.exit_code, result.output)
    assert "Traceback" not in result.output and result.exception is None or isinstance(result.exception, SystemExit)
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and message in errors[0], (label, result.output)
    assert not out.exists(), f"{label}: left {out}"


def test_config_files_that_are_not_text(tmp_path):
    binary = tmp_path / "run.yaml"
    binary.write_bytes(bytes(range(128, 256)))
    for path, message in ((binary, "is not UTF-8 text"), (tmp_path, "is a directory")):
        result = CliRunner().invoke(cli, ["run", "--config", str(path), "--out", str(tmp_path / "r")])
        assert result.exit_code in (1, 2) and message in result.output, result.output
        assert "Traceback" not in result.output
    assert not (tmp_path / "r").exists()


@pytest.fixture
def finished_run(tmp_path):
    return graphforge.run("none", "mlp", epochs=1, out=str(tmp_path / "done"), plots=False, limit_train=60).run_dir


def test_resume_of_a_damaged_run_directory(finished_run):
    (finished_run / "run.json").write_text("{not json")
    ok = CliRunner().invoke(cli, ["run", "--resume", str(finished_run), "--epochs", "2"])
    assert ok.exit_code == 0, ok.output  # a damaged status file is rewritten, with a warning
    (finished_run / "config.yaml").write_bytes(b"\x00\xff\xfe: [")
    bad = CliRunner().invoke(cli, ["run", "--resume", str(finished_run)])
    assert bad.exit_code == 1 and "config.yaml is unreadable" in bad.output and "Traceback" not in bad.output


def test_resume_with_options_that_do_not_match_the_checkpoint(finished_run):
    import yaml

    config = yaml.safe_load((finished_run / "config.yaml").read_text())
    config["options"] = {"hidden": 17}
    (finished_run / "config.yaml").write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(cli, ["run", "--resume", str(finished_run), "--epochs", "2"])
    assert result.exit_code == 1 and "do not match" in result.output, result.output
    with pytest.raises(GraphforgeError, match="do not match"):
        graphforge.load_run(finished_run)


@pytest.fixture(scope="module")
def two_epoch_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("resume") / "two"
    graphforge.run("none", "mlp", epochs=2, out=str(out), plots=False, limit_train=60, options={"hidden": 32})
    return out


RESUME_CONFLICTS = [
    ("another model", ["--model", "cnn", "--epochs", "2"], "--model 'cnn' differs from the run's model 'mlp'"),
    ("another dataset", ["--dataset", "cifar10"], "--dataset 'cifar10' differs from the run's dataset 'digits'"),
    ("another option value", ["-o", "hidden=64"], "-o hidden=64 differs from the run it resumes (the run's is 32)"),
    ("another seed", ["--seed", "3"], "--seed 3 differs from the run's seed 0"),
    ("out elsewhere", ["--out", "ELSEWHERE"], "cannot be combined with --resume"),
    ("fewer epochs than done", ["--epochs", "1"], "--epochs 1 is fewer than the 2 epochs"),
]


@pytest.mark.parametrize(("label", "args", "message"), RESUME_CONFLICTS, ids=[c[0] for c in RESUME_CONFLICTS])
def test_resume_refuses_options_that_contradict_the_run(label, args, message, two_epoch_run, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    args = [str(elsewhere) if a == "ELSEWHERE" else a for a in args]
    kept = {f.name: f.read_bytes() for f in two_epoch_run.iterdir() if f.is_file() and not f.name.startswith(".")}
    result = CliRunner().invoke(cli, ["run", "--resume", str(two_epoch_run), *args])
    assert result.exit_code == 1, (label, result.output)
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and message in errors[0], (label, result.output)
    assert {name: (two_epoch_run / name).read_bytes() for name in kept} == kept, label
    assert not elsewhere.exists()


def test_resume_sees_options_given_at_their_default_values(tmp_path):
    """A value given on the command line counts even when it equals the default."""
    out = tmp_path / "seed3"
    graphforge.run("none", "mlp", epochs=1, seed=3, out=str(out), plots=False, limit_train=60)
    refused = CliRunner().invoke(cli, ["run", "--resume", str(out), "--seed", "0", "--epochs", "2"])
    assert refused.exit_code == 1 and "--seed 0 differs from the run's seed 3" in refused.output, refused.output
    with pytest.raises(GraphforgeError, match="--seed 0 differs from the run's seed 3"):
        graphforge.run(resume=out, seed=0, epochs=2)
    ok = CliRunner().invoke(cli, ["run", "--resume", str(out), "--plots", "--epochs", "2"])  # plots: a runtime field
    assert ok.exit_code == 0, ok.output
    assert json.loads((out / "resolved.json").read_text())["plots"] is True
    assert (out / "plots").is_dir()


def test_resume_sees_the_api_plugin_names_given_at_their_default_values(tmp_path):
    """graphforge.run("none", "mlp", resume=...) names a model, even though "mlp" is the default."""
    out = tmp_path / "cnn"
    graphforge.run(model="cnn", epochs=1, out=str(out), plots=False, limit_train=60)
    with pytest.raises(GraphforgeError, match="--model 'mlp' differs from the run's model 'cnn'"):
        graphforge.run("none", "mlp", resume=out, epochs=2)
    assert len(graphforge.run(resume=out, epochs=2).history) == 2  # nothing named: the run's own


def test_resume_accepts_the_runs_own_options(finished_run):
    result = CliRunner().invoke(cli, ["run", "--resume", str(finished_run), "--model", "mlp", "--dataset", "digits",
                                      "--out", str(finished_run), "--epochs", "2", "--threads", "1", "--json"])
    assert result.exit_code == 0, result.output
    assert [h["epoch"] for h in json.loads((finished_run / "history.json").read_text())] == [1, 2]


def test_more_threads_than_cpus_warns_once(tmp_path):
    from graphforge.engine.threads import available_cpus

    before = torch.get_num_threads()
    try:
        with pytest.warns(UserWarning, match=rf"--threads {available_cpus() + 1} exceeds the {available_cpus()} "
                                             r"CPU\(s\) this process may use") as caught:
            graphforge.run("none", "mlp", epochs=1, out=str(tmp_path / "t"), plots=False, limit_train=60,
                           threads=available_cpus() + 1)
    finally:
        torch.set_num_threads(before)
    assert len([w for w in caught if "--threads" in str(w.message)]) == 1


API_CASES = [
    ("options not a mapping", lambda: graphforge.run(options=[1, 2])),
    ("out not a path", lambda: graphforge.run(out=123)),
    ("download as a string", lambda: graphforge.run(download="no")),
    ("seed negative", lambda: graphforge.run(seed=-1)),
    ("dataset seed negative", lambda: graphforge.get_dataset("digits").load(root=None, download=False, seed=-5)),
    ("unknown option", lambda: graphforge.get_model("mlp", hiden=3)),
    ("knn k as float", lambda: graphforge.get_model("knn", k=2.5)),
    ("op k too large for int64", lambda: graphforge.ops.batched_knn(torch.randn(5, 2), None, [2**64])),
    ("op bad metric", lambda: graphforge.ops.batched_knn(torch.randn(5, 2), None, 2, metric="hamming")),
    ("op NaN", lambda: graphforge.ops.batched_knn(torch.full((5, 2), float("nan")), None, 2)),
]


@pytest.mark.parametrize(("label", "call"), API_CASES, ids=[c[0] for c in API_CASES])
def test_api_mistakes_raise_graphforge_errors(label, call, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(GraphforgeError):
        call()
    assert not (tmp_path / "runs").exists()


def test_predict_refuses_what_is_not_a_batch_of_training_like_samples(finished_run):
    trained = graphforge.load_run(finished_run)
    with pytest.raises(GraphforgeError, match="shape"):
        trained.predict(torch.zeros(3, 1, 4, 4))
    with pytest.raises(GraphforgeError, match="tensor or array"):
        trained.predict(object())
    with pytest.raises(GraphforgeError, match="NaN"):
        trained.predict(torch.full((2, 1, 8, 8), float("nan")))
    assert trained.predict([[[[0.0] * 8] * 8]]).shape == (1,)  # a nested list is a fine batch
    assert trained.predict(np.zeros((2, 1, 8, 8), dtype=np.uint8)).shape == (2,)


def test_op_accepts_numpy_and_huge_integer_k():
    x = torch.randn(6, 3)
    ei, _ = graphforge.ops.batched_knn(x, None, np.int64(2))
    assert ei.shape == (2, 12)
    ei, _ = graphforge.ops.batched_knn(x, None, 2**63)  # larger than any set: every neighbour
    assert ei.shape == (2, 30)


def test_limit_train_below_the_class_count_warns(tmp_path):
    with pytest.warns(UserWarning, match="--limit-train 5 leaves 5 of the 10 classes without a training sample"):
        graphforge.run("none", "mlp", epochs=1, limit_train=5, limit_test=20, plots=False, out=str(tmp_path / "r"))
