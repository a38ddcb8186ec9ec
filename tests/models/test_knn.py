"""The ``knn`` model plugin: a thin adapter around graphforge.neighbors.KNNClassifier, run by the engine."""

import csv
import json

import pytest

import graphforge
from graphforge.builtin.models.knn import KNN
from graphforge.errors import ConfigError


def test_sweep_option_errors():
    with pytest.raises(ConfigError, match="sweep must be a non-empty list"):
        KNN(sweep="many")
    assert KNN(metric="l1").metric == "cityblock"


def test_knn_on_digits_through_the_engine_with_a_sweep(tmp_path):
    out = tmp_path / "knn"
    r = graphforge.run("none", "knn", seed=0, out=str(out), options={"k": 3, "sweep": [1, 3, 5, 9, 50]})
    assert r.metrics["test_accuracy"] > 0.9  # chance is 0.1
    assert r.metrics["train_accuracy"] is None  # kNN skips the N x N self-prediction
    sweep = r.metrics["k_sweep"]
    assert [row["k"] for row in sweep] == [1, 3, 5, 9, 50]
    # The sweep's k=3 row is the run's own k=3 result.
    assert next(row for row in sweep if row["k"] == 3)["test_accuracy"] == pytest.approx(r.metrics["test_accuracy"])
    assert r.metrics["best_k"] in (1, 3, 5, 9, 50)
    rows = list(csv.DictReader((out / "k_sweep.csv").open()))
    assert [int(row["k"]) for row in rows] == [1, 3, 5, 9, 50]
    assert (out / "plots" / "k_sweep.png").stat().st_size > 1000
    assert json.loads((out / "metrics.json").read_text())["best_k"] == r.metrics["best_k"]
    assert not list(out.rglob("*.tmp"))

    from graphforge.api import load_run

    trained = load_run(out)
    data = graphforge.api.get_dataset("digits").load(root=None, download=False, seed=0)
    acc = float((trained.predict(data.test.x) == data.test.y).float().mean())
    assert acc == pytest.approx(r.metrics["test_accuracy"], abs=1e-6)


def test_k_larger_than_training_set_through_the_engine(tmp_path):
    with pytest.raises(ConfigError, match="k=50 is larger than the training set \\(30 samples\\)"):
        graphforge.run("none", "knn", out=str(tmp_path / "r"), limit_train=30, options={"sweep": [1, 50]})


def test_option_errors_leave_no_run_directory(tmp_path):
    out = tmp_path / "never"
    with pytest.raises(ConfigError, match="k must be an integer >= 1"):
        graphforge.run("none", "knn", out=str(out), options={"k": 0})
    with pytest.raises(ConfigError, match="unknown metric"):
        graphforge.run("none", "knn", out=str(out), options={"metric": "hamming"})
    assert not out.exists()
