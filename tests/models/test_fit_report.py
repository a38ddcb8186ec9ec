"""``FitModel.report`` and ``FitModel.score_train``: how a fit model adds results to a run."""

import json

import graphforge
from graphforge.io import write_text
from tests.helpers import NearestCentroid


class ReportingCentroid(NearestCentroid):
    """Nearest centroid that reports the per-split sample counts and writes a file."""

    name = "reporting-centroid"
    score_train = False

    def report(self, features, labels, rundir):
        write_text(rundir.file("extra.txt"), f"{len(features['test'])} {features['test'].shape[1]}\n")
        return {"report_test_samples": len(labels["test"]), "report_splits": sorted(features)}


class Plugin:
    @graphforge.hookimpl
    def register_models(self, register):
        register("reporting-centroid", ReportingCentroid)


def test_report_results_are_merged_into_the_metrics(tmp_path, plugin_registered):
    plugin_registered(Plugin(), "reporting-plugin")
    out = tmp_path / "r"
    r = graphforge.run("none", "reporting-centroid", seed=0, out=str(out))
    assert r.metrics["report_test_samples"] == r.metrics["num_test"]
    assert r.metrics["report_splits"] == ["test", "train", "val"]
    assert json.loads((out / "metrics.json").read_text())["report_test_samples"] == r.metrics["num_test"]
    assert (out / "extra.txt").read_text() == f"{r.metrics['num_test']} 64\n"
    assert r.metrics["train_accuracy"] is None  # score_train = False
    assert r.metrics["test_accuracy"] > 0.8


def test_default_report_adds_nothing_and_train_is_scored(tmp_path, plugin_registered):
    from tests.helpers import TestModelsPlugin

    plugin_registered(TestModelsPlugin(), "test-models")
    r = graphforge.run("none", "centroid", seed=0, out=str(tmp_path / "c"))
    assert r.metrics["train_accuracy"] > 0.8
    assert "report_test_samples" not in r.metrics
