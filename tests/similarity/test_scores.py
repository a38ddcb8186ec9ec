"""Pair-score distributions, the threshold for a target degree, and ``graphforge scores``."""

import csv
import json

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from graphforge.cli.main import cli, load_plugin_commands
from graphforge.errors import ConfigError
from graphforge.similarity import similarity_graph
from graphforge.similarity.graph import GRAPH_METRICS
from graphforge.similarity.scores import (
    sample_pairs,
    score_distributions,
    summarize_scores,
    threshold_for_degree,
)


def brute_force_scores(x: np.ndarray, metric: str) -> np.ndarray:
    """Score matrix [M, M] in float64: similarity for cosine / ip, else distance."""
    x = x.astype(np.float64)
    diff = x[:, None, :] - x[None, :, :]
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    return {
        "cosine": lambda: unit @ unit.T,
        "ip": lambda: x @ x.T,
        "euclidean": lambda: np.sqrt((diff**2).sum(-1)),
        "cityblock": lambda: np.abs(diff).sum(-1),
        "linf": lambda: np.abs(diff).max(-1),
        "chord": lambda: np.sqrt(((unit[:, None] - unit[None]) ** 2).sum(-1)),
    }[metric]()


@pytest.fixture(scope="module")
def small():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 6)).astype(np.float32)
    y = torch.from_numpy(rng.integers(0, 3, size=40))
    return x, y


def test_all_pairs_match_brute_force(small):
    x, y = small
    labelled = torch.arange(40) < 30
    dists = score_distributions(x, y, labelled, max_pairs=10_000)
    assert list(dists) == list(GRAPH_METRICS)
    iu = np.triu_indices(40, 1)
    lab = np.triu_indices(30, 1)  # labelled nodes are the first 30
    same = (y.numpy()[lab[0]] == y.numpy()[lab[1]])
    for metric, dist in dists.items():
        full = brute_force_scores(x, metric)
        assert dist.exhaustive and dist.labelled_exhaustive
        np.testing.assert_allclose(dist.all.numpy(), full[iu], rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(dist.same_class.numpy(), full[lab][same], rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(dist.different_class.numpy(), full[lab][~same], rtol=1e-9, atol=1e-9)
        summary = dist.summary()
        assert summary["all"]["count"] == 40 * 39 // 2
        assert summary["same_class"]["count"] + summary["different_class"]["count"] == 30 * 29 // 2
        assert summary["all"]["q25"] == pytest.approx(np.quantile(full[iu], 0.25))
        assert summary["all"]["max"] == pytest.approx(full[iu].max())


def test_sampled_pairs_are_distinct_ordered_seeded_and_scored_exactly(small):
    x, _ = small
    i, j, exhaustive = sample_pairs(40, 300, seed=3)
    assert not exhaustive and len(i) == 300
    assert bool((i < j).all()) and int(j.max()) < 40
    assert len({(a, b) for a, b in zip(i.tolist(), j.tolist())}) == 300
    again = sample_pairs(40, 300, seed=3)
    assert torch.equal(i, again[0]) and torch.equal(j, again[1])
    assert not torch.equal(i, sample_pairs(40, 300, seed=4)[0])
    # a huge node count: index arithmetic stays exact
    bi, bj, _ = sample_pairs(10**7, 1000, seed=0)
    assert bool((bi < bj).all()) and int(bj.max()) < 10**7
    dist = score_distributions(x, metrics=["cityblock"], max_pairs=300, seed=3)["cityblock"]
    np.testing.assert_allclose(dist.all.numpy(), brute_force_scores(x, "cityblock")[i.numpy(), j.numpy()])
    assert not dist.exhaustive and len(dist.same_class) == 0


def test_summary_of_nothing_and_bad_targets():
    assert summarize_scores(torch.zeros(0))["mean"] is None
    scores = torch.linspace(0, 1, 100)
    for bad in (-1, 9, 20):
        with pytest.raises(ConfigError, match="impossible for 10 nodes"):
            threshold_for_degree("cosine", scores, 10, bad)
    # degree 0: nothing passes
    assert threshold_for_degree("cosine", scores, 10, 0) > 1
    assert threshold_for_degree("euclidean", scores, 10, 0) < 0


def test_threshold_for_degree_with_tied_scores_picks_the_nearer_degree():
    distances = torch.tensor([0.0] * 50 + [1.0] * 50 + [2.0] * 900)  # quantised: 1000 sampled pairs
    # 1001 nodes: target degree d asks d of the 1000 sampled pairs to pass
    assert threshold_for_degree("linf", distances, 1001, 70) == 0.5  # 50 pass (not 100)
    assert threshold_for_degree("linf", distances, 1001, 80) == 1.5  # 100 pass (not 50)
    assert threshold_for_degree("cosine", -distances, 1001, 70) == -0.5  # mirrored for similarities
    assert threshold_for_degree("cosine", -distances, 1001, 80) == -1.5
    assert threshold_for_degree("linf", torch.arange(1000.0), 1001, 70) == 69.5  # no ties: the exact quantile


@pytest.mark.parametrize("metric,pairs", [
    ("cosine", 200_000),  # 179,700 pairs: every pair, so exact (up to one pair)
    ("euclidean", 200_000),
    ("cosine", 20_000),  # a sample
    ("cityblock", 20_000),
])
def test_threshold_for_degree_gives_that_mean_degree(metric, pairs):
    rng = np.random.default_rng(1)
    m = 600
    x = rng.normal(size=(m, 8)).astype(np.float32) + rng.normal(size=(1, 8)).astype(np.float32)
    dist = score_distributions(x, metrics=[metric], max_pairs=pairs, seed=0)[metric]
    for target in (4.0, 12.0):
        t = dist.threshold_for_degree(target)
        assert t == threshold_for_degree(metric, dist.all, m, target)
        graph = similarity_graph(x, metric=metric, mode="threshold", threshold=t)
        if dist.exhaustive:
            assert graph.stats["mean_degree"] == pytest.approx(target, abs=2 / m)
        else:  # binomial sampling error of the passing fraction f, three standard errors
            f = target / (m - 1)
            assert graph.stats["mean_degree"] == pytest.approx(target, rel=3 * np.sqrt((1 - f) / (f * pairs)))


@pytest.fixture
def runner():
    load_plugin_commands()
    return CliRunner()


def test_scores_cli_on_digits(runner, tmp_path):
    out = tmp_path / "scores"
    res = runner.invoke(cli, ["scores", "--limit-train", "120", "--limit-test", "30", "--pairs", "3000",
                              "--target-degree", "5", "--metric", "cosine", "--metric", "linf", "--out", str(out),
                              "-o", "cache=false"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "same class" in res.stdout and "threshold for mean degree" in res.stdout
    data = json.loads((out / "scores.json").read_text())
    assert data["nodes"] == 180 and data["labelled_nodes"] == 120 and data["labels_from"] == "training split"
    assert list(data["metrics"]) == ["cosine", "linf"]
    cosine = data["metrics"]["cosine"]
    assert cosine["score"] == "similarity" and cosine["groups"]["all"]["count"] == 3000
    assert cosine["expected_mean_degree"] == pytest.approx(5, rel=0.1)
    rows = list(csv.DictReader((out / "scores.csv").open()))
    assert {(r["metric"], r["group"]) for r in rows} == {
        (m, g) for m in ("cosine", "linf") for g in ("all", "same_class", "different_class")}
    assert (out / "plots" / "score_boxplots.png").stat().st_size > 1000


def test_scores_cli_on_an_embeddings_csv_json(runner, tmp_path):
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(3, 5)) * 3
    labels = rng.integers(0, 3, size=90)
    frame = pd.DataFrame(centers[labels] + rng.normal(size=(90, 5)), columns=[f"f{i}" for i in range(5)])
    frame["label"] = labels
    frame.to_csv(tmp_path / "emb.csv", index=False)
    res = runner.invoke(cli, ["scores", "--dataset", "embeddings", "--data-root", str(tmp_path / "emb.csv"),
                              "--out", str(tmp_path / "s"), "--json"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["nodes"] == 90 and data["all_pairs_exhaustive"] and list(data["metrics"]) == list(GRAPH_METRICS)
    euclidean = data["metrics"]["euclidean"]["groups"]
    assert euclidean["same_class"]["median"] < euclidean["different_class"]["median"]  # separated clusters
    assert (tmp_path / "s" / "plots" / "score_boxplots.png").exists()


@pytest.mark.parametrize("args,message", [
    (["-o", "threshold=0.5"], "choose one graph"),
    (["-o", "hidden=8"], "model options"),
    (["--target-degree", "500", "--limit-train", "50", "--limit-test", "10"], "impossible for 70 nodes"),
])
def test_scores_cli_user_errors(runner, tmp_path, args, message):
    res = runner.invoke(cli, ["scores", "--out", str(tmp_path / "s"), "-o", "cache=false", *args])
    assert res.exit_code == 1 and message in res.output, res.output
    assert not (tmp_path / "s").exists()


def test_scores_cli_refuses_an_unknown_metric_before_loading_any_data(runner, tmp_path, monkeypatch):
    def no_loading(*args, **kwargs):
        raise AssertionError("data loaded before the metric names were checked")

    monkeypatch.setattr("graphforge.engine.runner.load_data", no_loading)
    res = runner.invoke(cli, ["scores", "--out", str(tmp_path / "s"), "--metric", "cosine", "--metric", "cosin"])
    errors = [line for line in res.output.splitlines() if line.startswith("Error")]
    assert res.exit_code == 1 and len(errors) == 1 and "unknown metric 'cosin'" in errors[0], res.output
    assert "embeddings of" not in res.output and not (tmp_path / "s").exists()
