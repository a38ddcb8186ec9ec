"""End-to-end runs through the Python API (the CLI calls the same function)."""

import json

import pytest
import torch

import graphforge
from graphforge.engine import tasks as engine_tasks
from graphforge.errors import ConfigError, DataError, UnknownPluginError
from tests.helpers import TestModelsPlugin, interrupted_at

FAST = {"epochs": 3, "limit_train": 300, "limit_test": 100, "options": {"hidden": 32}}


def test_mlp_on_digits_reaches_90_percent(tmp_path):
    result = graphforge.run("none", "mlp", epochs=15, seed=0, out=str(tmp_path / "run"))
    assert result.metrics["test_accuracy"] >= 0.90
    assert result.metrics["val_accuracy"] >= 0.90
    assert result.metrics["train_seconds"] > 0
    run_dir = tmp_path / "run"
    for name in ("config.yaml", "metrics.json", "history.csv", "history.json", "checkpoint.pt", "last.pt",
                 "run.json", "classification_report.json", "plots/learning_curves.png",
                 "plots/confusion_matrix.png"):
        assert (run_dir / name).is_file(), name
    assert json.loads((run_dir / "run.json").read_text())["status"] == "completed"
    assert json.loads((run_dir / "metrics.json").read_text())["test_accuracy"] == result.metrics["test_accuracy"]
    assert len(result.history) == result.metrics["epochs"]
    assert not list(run_dir.rglob("*.tmp")), "temporary files left behind"


def test_no_plots_skips_every_picture_but_nothing_else(tmp_path):
    a = graphforge.run("none", "mlp", seed=3, out=str(tmp_path / "a"), **FAST)
    b = graphforge.run("none", "mlp", seed=3, out=str(tmp_path / "b"), plots=False, **FAST)
    assert not list((tmp_path / "b").rglob("*.png")) and list((tmp_path / "a").rglob("*.png"))
    assert a.metrics["test_accuracy"] == b.metrics["test_accuracy"]
    with pytest.raises(ConfigError, match="plots must be true or false"):
        graphforge.run("none", "mlp", plots="no", out=str(tmp_path / "c"))


def test_same_seed_same_result_different_seed_differs(tmp_path):
    a = graphforge.run("none", "mlp", seed=1, out=str(tmp_path / "a"), **FAST)
    b = graphforge.run("none", "mlp", seed=1, out=str(tmp_path / "b"), **FAST)
    c = graphforge.run("none", "mlp", seed=2, out=str(tmp_path / "c"), **FAST)
    assert [h["train_loss"] for h in a.history] == [h["train_loss"] for h in b.history]
    assert a.metrics["test_accuracy"] == b.metrics["test_accuracy"]
    assert [h["train_loss"] for h in a.history] != [h["train_loss"] for h in c.history]


def test_limits_take_stratified_subsets(tmp_path):
    r = graphforge.run("none", "mlp", seed=0, out=str(tmp_path / "r"), **FAST)
    assert r.metrics["num_train"] == 300
    assert r.metrics["num_test"] == 100
    assert r.metrics["num_val"] == 100


def test_resume_continues_exactly(tmp_path, monkeypatch):
    settings = dict(FAST, epochs=5, patience=0, seed=3)
    straight = graphforge.run("none", "mlp", out=str(tmp_path / "straight"), **settings)

    with interrupted_at(monkeypatch, engine_tasks.InductiveTask, 4), pytest.raises(KeyboardInterrupt):
        graphforge.run("none", "mlp", out=str(tmp_path / "stopped"), **settings)
    status = json.loads((tmp_path / "stopped" / "run.json").read_text())
    assert status["status"] == "interrupted"

    resumed = graphforge.run(resume=tmp_path / "stopped")
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3, 4, 5]
    assert [round(h["train_loss"], 6) for h in resumed.history] == [round(h["train_loss"], 6) for h in straight.history]
    assert resumed.metrics["test_accuracy"] == straight.metrics["test_accuracy"]


def test_resume_can_extend_epochs_and_reads_last_pt_once(tmp_path, monkeypatch):
    from graphforge.engine.rundir import RunDirectory

    graphforge.run("none", "mlp", out=str(tmp_path / "r"), **dict(FAST, epochs=2, patience=0))
    reads: list[str] = []
    load = RunDirectory.load
    monkeypatch.setattr(RunDirectory, "load", lambda self, name: reads.append(name) or load(self, name))
    more = graphforge.run(resume=tmp_path / "r", epochs=4)
    assert len(more.history) == 4
    assert reads.count("last.pt") == 1, reads  # planning reads it; the trainer takes that copy


def test_checkpoint_reloads_to_identical_predictions(tmp_path):
    from graphforge.api import load_run
    from graphforge.plugins import get_registry

    graphforge.run("none", "mlp", seed=0, epochs=15, out=str(tmp_path / "r"))
    trained = load_run(tmp_path / "r")
    data = get_registry("dataset").get("digits").create().load(root=None, download=False, seed=0)
    pred = trained.predict(data.test.x)
    acc = float((pred == data.test.y).float().mean())
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert acc == pytest.approx(metrics["test_accuracy"], abs=1e-6)
    again = load_run(tmp_path / "r").predict(data.test.x)
    assert torch.equal(pred, again)


def test_bad_inputs_leave_no_run_directory(tmp_path):
    out = tmp_path / "never"
    with pytest.raises(UnknownPluginError):
        graphforge.run("none", "nope", out=str(out))
    with pytest.raises(ConfigError, match="no plugin in this run takes option 'bogus'"):
        graphforge.run("none", "mlp", out=str(out), options={"bogus": 1})
    with pytest.raises(ConfigError, match="dropout"):
        graphforge.run("none", "mlp", out=str(out), options={"dropout": 2})
    with pytest.raises(ConfigError, match="epochs"):
        graphforge.run("none", "mlp", out=str(out), epochs=0)
    with pytest.raises(DataError):
        graphforge.run("none", "mlp", dataset="mnist", out=str(out))
    assert not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_cuda_requested_without_cuda(tmp_path):
    with pytest.raises(ConfigError, match="CUDA is not available"):
        graphforge.run("none", "mlp", device="cuda", out=str(tmp_path / "x"))
    assert not (tmp_path / "x").exists()


def test_existing_run_directory_is_refused(tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="already exists"):
        graphforge.run("none", "mlp", out=str(out), **FAST)
    assert (out / "keep.txt").read_text() == "mine"


def test_fit_model_through_the_same_engine(tmp_path, plugin_registered):
    from graphforge.api import load_run

    plugin_registered(TestModelsPlugin(), "test-models")
    r = graphforge.run("none", "centroid", seed=0, out=str(tmp_path / "c"))
    assert r.metrics["test_accuracy"] > 0.8
    assert r.metrics["epochs"] == 1
    trained = load_run(tmp_path / "c")
    assert trained.predict(torch.rand(5, 1, 8, 8)).shape == (5,)


def test_dataset_level_converter_trains_transductively(tmp_path, plugin_registered):
    plugin_registered(TestModelsPlugin(), "test-models")
    r = graphforge.run("test-knn-graph", "test-gcn", seed=0, epochs=40, lr=0.01, out=str(tmp_path / "g"),
                       options={"k": 6})
    assert r.metrics["test_accuracy"] > 0.85
    assert (tmp_path / "g" / "checkpoint.pt").is_file()


def test_model_input_mismatch_is_a_clear_error(tmp_path, plugin_registered):
    plugin_registered(TestModelsPlugin(), "test-models")
    with pytest.raises(ConfigError, match="model 'test-gcn' takes \\['graph'\\] input, but gets images"):
        graphforge.run("none", "test-gcn", out=str(tmp_path / "x"))
    assert not (tmp_path / "x").exists()


def test_aux_loss_and_epoch_metrics_hooks(tmp_path, plugin_registered):
    class Tracking(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(()))
            self.calls = 0

        def forward(self, x):
            self.calls += 1
            return x * self.scale

        def graphforge_aux_loss(self):
            return 0.0 * self.scale

        def graphforge_epoch_metrics(self):
            calls, self.calls = self.calls, 0
            return {"forward_calls": calls}

    class TrackingConverter(graphforge.Converter):
        def output_spec(self, spec):
            return spec

        def build(self, spec):
            return Tracking()

    class Plugin:
        @graphforge.hookimpl
        def register_converters(self, register):
            register("tracking", TrackingConverter)

    plugin_registered(Plugin(), "tracking-plugin")
    r = graphforge.run("tracking", "mlp", out=str(tmp_path / "t"), **FAST)
    assert all(h["forward_calls"] > 0 for h in r.history)


def test_dataset_converter_mapping_samples_onto_nodes(tmp_path, plugin_registered):
    """Samples classified through the node they map to (e.g. a SOM's best-matching unit)."""
    plugin_registered(TestModelsPlugin(), "test-models")
    r = graphforge.run("test-prototypes", "sage", seed=0, epochs=60, lr=0.01, out=str(tmp_path / "p"),
                       options={"prototypes": 60, "hidden": 32, "layers": 1})
    assert r.metrics["test_accuracy"] > 0.7


def test_converter_fit_and_report_hooks(tmp_path, plugin_registered):
    class MeanCentre(graphforge.Converter):
        """Subtracts the training mean learned in fit()."""

        def fit(self, data):
            self.mean = data.train.x.float().mean(0)
            self.fitted_on = len(data.train)

        def output_spec(self, spec):
            return spec

        def build(self, spec):
            module = torch.nn.Module()
            module.register_buffer("mean", self.mean.clone())
            module.forward = lambda x: x - module.mean
            return module

        def report(self, rundir):
            return {"fitted_on": self.fitted_on}

    class Plugin:
        @graphforge.hookimpl
        def register_converters(self, register):
            register("mean-centre", MeanCentre)

    plugin_registered(Plugin(), "centre")
    r = graphforge.run("mean-centre", "mlp", out=str(tmp_path / "m"), **FAST)
    assert r.metrics["fitted_on"] == 300
    assert json.loads((tmp_path / "m" / "metrics.json").read_text())["fitted_on"] == 300


def test_runs_without_a_validation_split(tmp_path):
    """val_fraction=0: nothing to choose by, so the last epoch is kept and val_accuracy is None."""
    r = graphforge.run("none", "mlp", epochs=3, out=str(tmp_path / "noval"), plots=False,
                       options={"val_fraction": 0})
    assert r.metrics["val_accuracy"] is None and r.metrics["num_val"] == 0
    assert r.metrics["best_epoch"] == 3 and r.metrics["test_accuracy"] > 0.8
    knn = graphforge.run("none", "knn", out=str(tmp_path / "knn"), plots=False, options={"val_fraction": 0, "k": 3})
    assert knn.metrics["val_accuracy"] is None and knn.metrics["test_accuracy"] > 0.9


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_classification_report_equals_scikit_learns(seed):
    """The engine's report is scikit-learn's, computed without importing it (1.5 s per run)."""
    import numpy as np
    from sklearn.metrics import classification_report, confusion_matrix, f1_score

    from graphforge.engine.metrics import summarize

    rng = np.random.default_rng(seed)
    t = rng.integers(0, 5, 300)
    p = np.where(rng.random(300) < 0.6, t, rng.integers(0, 5, 300))
    p[p == 4] = 3  # class 4 never predicted: zero division
    names = [f"c{i}" for i in range(6)]  # class 5 absent everywhere
    ours = summarize(torch.from_numpy(p), torch.from_numpy(t), 6, names)
    labels = np.arange(6)
    ref = classification_report(t, p, labels=labels, target_names=names, output_dict=True, zero_division=0)
    assert ours["report"].keys() == ref.keys()
    for key, value in ref.items():
        if isinstance(value, dict):
            for metric, v in value.items():
                assert ours["report"][key][metric] == pytest.approx(v, abs=1e-12), (key, metric)
        else:
            assert ours["report"][key] == pytest.approx(value)
    assert ours["confusion"] == confusion_matrix(t, p, labels=labels).tolist()
    assert ours["macro_f1"] == pytest.approx(f1_score(t, p, labels=labels, average="macro", zero_division=0))
