"""The ``similarity`` converter through the engine: graphs, baselines, errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

import graphforge
from graphforge.builtin.converters.similarity import Similarity
from graphforge.cli.main import cli
from graphforge.core.embedder import Embedder
from graphforge.errors import ConfigError, DataError
from graphforge.hookspecs import hookimpl
from graphforge.testing import synthetic_splits


def _gaussian_csv(path, classes=4, dim=128, per_class=150, sep=0.3, seed=0):
    """Gaussian clusters whose means differ by little per feature but much in total."""
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(classes, dim)) * sep
    y = np.repeat(np.arange(classes), per_class)
    x = means[y] + rng.normal(size=(len(y), dim))
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(dim)])
    frame["label"] = y
    frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def clusters(tmp_path_factory):
    return _gaussian_csv(tmp_path_factory.mktemp("sim") / "clusters.csv")


def test_gnn_beats_mlp_when_the_graph_is_informative(clusters, tmp_path):
    """Few labels (5 % train) in 128 noisy dimensions: a node's kNN mostly share its class,
    so message passing averages the noise away, which a per-node MLP cannot do.
    Full-graph training defaults (lr 1e-2, up to 200 epochs, patience 20). Measured at
    seeds 0, 1, 2: sage 0.844 / 0.876 / 0.872, mlp 0.715 / 0.825 / 0.752."""
    common = {"metric": "euclidean", "k": 10, "test_fraction": 0.85}
    acc = {}
    for model, extra in (("sage", {"hidden": 32, "layers": 2}), ("mlp", {"hidden": 32})):
        result = graphforge.run("similarity", model, dataset="embeddings", data_root=str(clusters),
                                out=str(tmp_path / model), options={**common, **extra})
        assert result.config.lr == 1e-2 and result.config.patience == 20
        acc[model] = result.metrics["test_accuracy"]
        assert result.metrics["graph_edges"] > 0 and result.metrics["graph_isolated_nodes"] == 0
    assert acc["sage"] > acc["mlp"] + 0.05, acc


def test_graph_layout_on_images(tmp_path):
    data = synthetic_splits("images", per_class=10)
    conv = Similarity(k=3)
    graph = conv.convert(data)
    n = sum(data.sizes().values())
    assert graph.num_nodes == n and graph.x.shape == (n, 144)  # pixels, the default embedder for images
    assert int(graph.train_mask.sum()) == len(data.train) and int(graph.test_mask.sum()) == len(data.test)
    assert not (graph.train_mask & graph.val_mask).any()
    assert torch.equal(graph.y[graph.test_mask], data.test.y)
    assert torch.allclose(graph.x[graph.train_mask].mean(0), torch.zeros(144), atol=1e-4)  # standardised
    assert graph.edge_weight.shape == graph.edge_score.shape == (graph.edge_index.shape[1],)
    assert conv.output_spec(data.spec) == graphforge.InputSpec("graph", (144,))
    raw = Similarity(k=3, features="raw").convert(data)
    assert torch.allclose(raw.x[: len(data.train)], data.train.x.reshape(len(data.train), -1))
    report = conv.report(None)
    assert report["graph_edges"] == graph.edge_index.shape[1] and report["graph_index"] == "flat"


def test_threshold_mode_from_cli_shortcuts(clusters, tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, [
        "run", "--dataset", "embeddings", "--data-root", str(clusters), "--converter", "similarity",
        "--model", "gcn", "--metric", "cosine", "--threshold", "0.3", "--epochs", "2", "--out", str(out), "--json", "-q"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.output.strip().splitlines()[-1])
    resolved = json.loads((out / "resolved.json").read_text())
    assert resolved["plugin_options"]["converter"] == {"metric": "cosine", "threshold": 0.3}
    assert metrics["graph_edges"] > 0
    assert (out / "plots" / "degree_distribution.png").stat().st_size > 0


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_degree_sets_the_threshold_for_that_mean_degree(clusters, tmp_path, metric):
    """``degree`` picks the threshold from every pair's score (600 nodes: 179,700 pairs, all of
    them), so the graph's mean degree is the target, and the same as ``threshold`` = that value."""
    result = graphforge.run("similarity", "mlp", dataset="embeddings", data_root=str(clusters), epochs=1,
                            out=str(tmp_path / "degree"), options={"metric": metric, "degree": 12})
    m = result.metrics
    assert abs(m["graph_mean_degree"] - 12) < 0.05, m["graph_mean_degree"]
    again = graphforge.run("similarity", "mlp", dataset="embeddings", data_root=str(clusters), epochs=1,
                           out=str(tmp_path / "threshold"), options={"metric": metric, "threshold": m["graph_threshold"]})
    assert again.metrics["graph_edges"] == m["graph_edges"]
    resolved = json.loads((tmp_path / "degree" / "resolved.json").read_text())
    assert resolved["plugin_options"]["converter"] == {"metric": metric, "degree": 12}


def test_degree_from_sampled_pairs_is_close():
    """Over 200,000 pairs the threshold comes from a fixed-seed sample: the degree is near the target."""
    data = synthetic_splits("vectors", per_class=250, shape=(16,))  # >= 750 nodes: > 200,000 pairs, sampled
    conv = Similarity(metric="euclidean", degree=8)
    graph = conv.convert(data)
    assert abs(graph.edge_index.shape[1] / graph.num_nodes - 8) < 0.5
    assert Similarity(metric="euclidean", degree=8).threshold_for(conv.embed(data)) == conv.report(None)["graph_threshold"]


@pytest.mark.parametrize(("options", "match"), [
    ({"degree": 0}, "degree must be a number > 0"),
    ({"degree": "many"}, "degree must be a number > 0"),
    ({"degree": 5, "threshold": 0.5}, "a threshold or a degree, not both"),
    ({"degree": 5, "mode": "knn"}, "mode=knn uses k"),
    ({"k": 5, "threshold": 0.8}, "k=5 is for mode=knn or mutual"),
    ({"k": 5, "degree": 8}, "k=5 is for mode=knn or mutual"),
    ({"mode": "knn", "threshold": 0.8}, "threshold=0.8 is for mode=threshold; mode=knn"),
    ({"mode": "mutual", "threshold": 0.8}, "mode=mutual joins each node"),
])
def test_bad_degree_options(options, match):
    with pytest.raises(ConfigError, match=match):
        Similarity(**options)


def test_degree_too_large_for_the_nodes_is_a_clear_error():
    data = synthetic_splits("vectors", per_class=5)
    with pytest.raises(ConfigError, match="impossible for"):
        Similarity(degree=10_000).convert(data)


def test_memo_reuses_a_degree_graph_without_estimating_its_threshold_again(clusters, tmp_path, monkeypatch):
    calls = []
    estimate = Similarity.threshold_for
    monkeypatch.setattr(Similarity, "threshold_for", lambda self, emb: calls.append(1) or estimate(self, emb))
    options = {"metric": "chord", "degree": 6}
    thresholds = [graphforge.run("similarity", model, dataset="embeddings", data_root=str(clusters), epochs=1,
                                 out=str(tmp_path / model), options=options).metrics["graph_threshold"]
                  for model in ("mlp", "gcn")]
    assert len(calls) == 1 and thresholds[0] == thresholds[1]


def test_memo_reuses_the_graph_across_models(clusters, tmp_path, caplog):
    options = {"metric": "cityblock", "k": 7}
    for model in ("mlp", "gcn"):
        with caplog.at_level("INFO", logger="graphforge"):
            graphforge.run("similarity", model, dataset="embeddings", data_root=str(clusters), epochs=1,
                           out=str(tmp_path / model), options=options)
    assert "reusing the graph" in caplog.text


def test_bad_options_fail_before_the_run_directory(clusters, tmp_path):
    out = tmp_path / "never"
    with pytest.raises(ConfigError, match="k=1000 must be smaller"):
        graphforge.run("similarity", "gcn", dataset="embeddings", data_root=str(clusters), out=str(out),
                       options={"k": 1000})
    assert not out.exists()
    for options, match in (({"metric": "hamming"}, "unknown metric"), ({"embedder": "nope"}, "nope"),
                           ({"embedder_options": 3}, "mapping"), ({"features": "pca"}, "features")):
        with pytest.raises(graphforge.GraphforgeError, match=match):
            graphforge.run("similarity", "gcn", dataset="embeddings", data_root=str(clusters), out=str(out),
                           options=options)
        assert not out.exists()


class _NaNEmbedder(Embedder):
    """Embeds every sample as NaN (a broken embedder)."""

    inputs = frozenset({"images", "vectors"})

    def output_dim(self, spec):
        return 2

    def embed(self, x, device, batch_size):
        return torch.full((len(x), 2), float("nan"))


class _NaNPlugin:
    @hookimpl
    def register_embedders(self, register):
        register("nan-embedder", _NaNEmbedder, "test: NaN vectors")


def test_bad_embeddings_give_clear_errors(plugin_registered, clusters, tmp_path):
    plugin_registered(_NaNPlugin(), "nan-embedder-plugin")
    with pytest.raises(DataError, match="similarity: embeddings contains NaN.*first bad rows"):
        Similarity(embedder="nan-embedder", cache=False).convert(synthetic_splits("vectors"))
    frame = pd.read_csv(clusters)
    frame.drop(columns=["label"]).to_csv(tmp_path / "nolabel.csv", index=False)
    with pytest.raises(DataError, match="label"):
        graphforge.run("similarity", "gcn", dataset="embeddings", data_root=str(tmp_path / "nolabel.csv"),
                       out=str(tmp_path / "a"))
    frame.loc[3, "f1"] = np.nan
    frame.to_csv(tmp_path / "nan.csv", index=False)
    with pytest.raises(DataError, match="NaN"):
        graphforge.run("similarity", "gcn", dataset="embeddings", data_root=str(tmp_path / "nan.csv"),
                       out=str(tmp_path / "b"))


def test_k_defaults_to_10_for_neighbour_graphs_and_is_absent_from_threshold_graphs():
    assert Similarity().k == 10 and Similarity(mode="mutual").k == 10 and Similarity(k=3).k == 3
    assert Similarity(threshold=0.8).k is None and Similarity(degree=5).k is None


def test_a_threshold_run_whose_checkpoint_pins_the_old_k_default_still_loads(clusters, tmp_path):
    """Earlier versions pinned ``k=10`` for threshold graphs too (unused there): such runs load."""
    result = graphforge.run("similarity", "gcn", dataset="embeddings", data_root=str(clusters), epochs=1,
                            out=str(tmp_path / "run"), options={"threshold": 0.9})
    path = tmp_path / "run" / "checkpoint.pt"
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["meta"]["built_options"]["converter"]["k"] is None
    ckpt["meta"]["built_options"]["converter"]["k"] = 10  # as an earlier version wrote it
    torch.save(ckpt, path)
    again = graphforge.load_run(result.run_dir)
    assert again.net is not None and again._transductive
    assert all(torch.equal(v, ckpt["state"]["net"][k]) for k, v in again.net.state_dict().items())
    assert Similarity.upgrade_options({"threshold": 0.9, "k": 10}) == {"threshold": 0.9}
    assert Similarity.upgrade_options({"mode": "knn", "k": 7}) == {"mode": "knn", "k": 7}


def test_a_knn_graph_run_records_its_k(clusters, tmp_path):
    run = graphforge.run("similarity", "mlp", dataset="embeddings", data_root=str(clusters), epochs=1,
                         out=str(tmp_path / "knn"), plots=False)
    meta = torch.load(run.run_dir / "checkpoint.pt", weights_only=True)["meta"]
    assert meta["built_options"]["converter"]["k"] == 10  # the k it used, not "None: decide later"
