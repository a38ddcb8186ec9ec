"""``label_prop``: label spreading over a dataset graph, against a dense reference and through the engine."""

import json

import numpy as np
import pytest
import torch
from torch_geometric.data import Data

import graphforge
from graphforge.builtin.models.label_prop import (
    LabelPropagation,
    label_spreading,
    spreading_matrix,
)
from graphforge.core.data import DataSplits, InputSpec, Split
from graphforge.errors import ConfigError, DataError, GraphforgeError
from graphforge.testing import check_registered


def _masks(n, train):
    train_mask = torch.zeros(n, dtype=torch.bool)
    train_mask[train] = True
    rest = (~train_mask).nonzero().view(-1)
    val_mask, test_mask = torch.zeros(n, dtype=torch.bool), torch.zeros(n, dtype=torch.bool)
    val_mask[rest[::2]] = True
    test_mask[rest[1::2]] = True
    return {"train_mask": train_mask, "val_mask": val_mask, "test_mask": test_mask}


def two_cliques(size=10, train=(0, 10)):
    """Two cliques of ``size`` nodes (both edge directions), labels 0 and 1, one bridge edge."""
    edges = [(i, j) for c in (0, size) for i in range(c, c + size) for j in range(c, c + size) if i != j]
    edges += [(size - 1, size), (size, size - 1)]
    y = torch.arange(2).repeat_interleave(size)
    return Data(edge_index=torch.tensor(edges).t(), y=y, num_nodes=2 * size, **_masks(2 * size, list(train)))


def dense_reference(edge_index, weight, seeds, alpha, iterations):
    """The same iteration with dense numpy matrices (float64)."""
    n = seeds.shape[0]
    a = np.zeros((n, n))
    for (src, dst), w in zip(edge_index.t().tolist(), weight.tolist()):
        a[dst, src] += w
    np.fill_diagonal(a, 0.0)
    w = (a + a.T) / 2
    d = w.sum(1)
    inv = np.where(d > 0, 1 / np.sqrt(np.where(d > 0, d, 1)), 0.0)
    s = inv[:, None] * w * inv[None, :]
    y = seeds.numpy().astype(np.float64)
    f = y.copy()
    for _ in range(iterations):
        f = alpha * s @ f + (1 - alpha) * y
    return f


def random_graph(n=30, e=90, seed=0):
    g = torch.Generator().manual_seed(seed)
    edge_index = torch.randint(0, n, (2, e), generator=g)  # directed, with duplicates and self-loops
    weight = torch.rand(e, generator=g, dtype=torch.float64)
    return edge_index, weight


def test_two_clusters_recover_their_labels():
    graph = two_cliques()
    proba = LabelPropagation().fit_predict(graph, 2)
    assert torch.equal(proba.argmax(1), graph.y)
    assert torch.allclose(proba.sum(1), torch.ones(20), atol=1e-6)


@pytest.mark.parametrize("alpha, iterations", [(0.9, 50), (0.5, 7), (0.99, 200)])
def test_matches_a_dense_numpy_reference(alpha, iterations):
    n, num_classes = 30, 3
    edge_index, weight = random_graph(n)
    labelled = torch.tensor([0, 3, 7, 11, 19, 25])
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    seeds = torch.zeros(n, num_classes, dtype=torch.float64)
    seeds[labelled, labels] = 1.0
    scores, ran = label_spreading(edge_index, seeds, n, weight, alpha, iterations)
    expected = dense_reference(edge_index, weight, seeds, alpha, iterations)
    assert ran == iterations
    np.testing.assert_allclose(scores.numpy(), expected, atol=1e-6, rtol=0)

    mask = torch.zeros(n, dtype=torch.bool)
    mask[labelled] = True
    y = torch.zeros(n, dtype=torch.long)
    y[labelled] = labels
    graph = Data(edge_index=edge_index, edge_weight=weight.float(), y=y, num_nodes=n, train_mask=mask,
                 val_mask=~mask, test_mask=~mask)
    proba = LabelPropagation(alpha=alpha, iterations=iterations).fit_predict(graph, num_classes)
    total = expected.sum(1, keepdims=True)
    reached = total[:, 0] > 0
    np.testing.assert_allclose(proba.numpy()[reached], (expected / np.where(total > 0, total, 1))[reached], atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    edge_index, weight = random_graph(200, 2000, seed=5)
    mask = torch.zeros(200, dtype=torch.bool)
    mask[::7] = True
    graph = Data(edge_index=edge_index, edge_weight=weight.float(), y=torch.arange(200) % 4, num_nodes=200,
                 train_mask=mask, val_mask=~mask, test_mask=~mask)
    cpu = LabelPropagation().fit_predict(graph, 4)
    cuda = LabelPropagation().fit_predict(graph.clone().to("cuda"), 4)
    assert cuda.device.type == "cpu"
    torch.testing.assert_close(cuda, cpu, atol=1e-6, rtol=0)


def test_spreading_matrix_is_symmetric_and_normalised():
    edge_index, weight = random_graph(12, 40, seed=3)
    s = spreading_matrix(edge_index, weight, 12).to_dense()
    assert torch.allclose(s, s.t())
    assert torch.all(s.diagonal() == 0)
    assert torch.linalg.eigvalsh(s).abs().max() <= 1 + 1e-9  # D^-1/2 W D^-1/2 has spectral radius <= 1


def test_one_way_edges_count_half_in_both_directions():
    one_way = torch.tensor([[0, 1, 2], [1, 2, 3]])
    both = torch.cat([one_way, one_way.flip(0)], 1)
    a = spreading_matrix(one_way, torch.ones(3), 4).to_dense()
    b = spreading_matrix(both, torch.full((6,), 0.5), 4).to_dense()
    assert torch.allclose(a, b)


def test_isolated_and_unreached_nodes_get_the_training_prior():
    # nodes 0-2 a path holding the training labels; 3-4 a component without any; 5 isolated
    edge_index = torch.tensor([[0, 1, 1, 2, 3, 4], [1, 0, 2, 1, 4, 3]])
    y = torch.tensor([0, 0, 1, 1, 0, 1])
    graph = Data(edge_index=edge_index, y=y, num_nodes=6, **_masks(6, [0, 1, 2]))
    model = LabelPropagation()
    proba = model.fit_predict(graph, 3)
    prior = torch.tensor([2 / 3, 1 / 3, 0.0])
    for node in (3, 4, 5):
        assert torch.allclose(proba[node], prior)
    assert torch.allclose(proba.sum(1), torch.ones(6), atol=1e-6)
    assert model.report(graph, proba, None) == {"label_prop_iterations": 50, "label_prop_unreached_nodes": 3}


def test_an_isolated_training_node_keeps_its_label():
    graph = Data(edge_index=torch.tensor([[0, 1], [1, 0]]), y=torch.tensor([0, 0, 1]), num_nodes=3,
                 **_masks(3, [0, 2]))
    proba = LabelPropagation().fit_predict(graph, 2)
    assert proba.argmax(1).tolist() == [0, 0, 1]


def test_samples_mapped_onto_nodes_count_their_labels():
    # node 0 holds two training samples of class 1 and one of class 0
    graph = Data(edge_index=torch.tensor([[0, 1], [1, 0]]), num_nodes=2,
                 train_index=torch.tensor([0, 0, 0]), train_y=torch.tensor([1, 1, 0]),
                 val_index=torch.tensor([1]), val_y=torch.tensor([1]),
                 test_index=torch.tensor([1]), test_y=torch.tensor([1]))
    proba = LabelPropagation(alpha=0.5, iterations=1).fit_predict(graph, 2)
    assert torch.allclose(proba[0], torch.tensor([1 / 3, 2 / 3]))
    assert proba[1].argmax() == 1


def test_tol_stops_early_near_the_fixed_point():
    graph = two_cliques()
    early = LabelPropagation(iterations=10_000, tol=1e-10)
    proba = early.fit_predict(graph, 2)
    assert 10 < early.report(graph, proba, None)["label_prop_iterations"] < 10_000
    converged = LabelPropagation(iterations=2_000).fit_predict(graph, 2)
    assert torch.allclose(proba, converged, atol=1e-6)


@pytest.mark.parametrize(
    ("options", "message"),
    [({"alpha": 0}, "alpha"), ({"alpha": 1.0}, "alpha"), ({"alpha": "high"}, "alpha"),
     ({"iterations": 0}, "iterations"), ({"iterations": 2.5}, "iterations"), ({"tol": -1e-3}, "tol")],
)
def test_bad_options(options, message):
    with pytest.raises(ConfigError, match=message):
        LabelPropagation(**options)
    with pytest.raises(ConfigError, match=message):
        graphforge.get_model("label_prop", **options)


def test_negative_and_non_finite_weights_are_refused():
    graph = two_cliques()
    graph.edge_weight = torch.ones(graph.edge_index.shape[1])
    graph.edge_weight[3] = -0.2
    with pytest.raises(DataError, match="non-negative edge weights.*-0.2"):
        LabelPropagation().fit_predict(graph, 2)
    graph.edge_weight[3] = float("nan")
    with pytest.raises(DataError, match="NaN"):
        LabelPropagation().fit_predict(graph, 2)
    graph.edge_weight[3] = 0.0  # zero weights are allowed: such an edge carries nothing
    assert torch.equal(LabelPropagation().fit_predict(graph, 2).argmax(1), graph.y)


def test_no_training_labels_is_a_data_error():
    graph = two_cliques(train=())
    with pytest.raises(DataError, match="training"):
        LabelPropagation().fit_predict(graph, 2)


def test_state_dict_round_trip_and_unfitted_model():
    with pytest.raises(ConfigError, match="not been fitted"):
        LabelPropagation().predict_proba()
    fitted = LabelPropagation(alpha=0.8)
    proba = fitted.fit_predict(two_cliques(), 2)
    reloaded = LabelPropagation()
    reloaded.load_state_dict(fitted.state_dict())
    assert torch.equal(reloaded.predict_proba(), proba)


def test_contract_catches_a_model_that_reads_test_labels(plugin_registered):
    class Cheater(graphforge.GraphFitModel):
        """Predicts every node's own label, test nodes included."""

        def fit_predict(self, graph, num_classes):
            self.proba = torch.nn.functional.one_hot(graph.y, num_classes).float()
            return self.proba

        def predict_proba(self):
            return self.proba

        def state_dict(self):
            return {"proba": self.proba}

        def load_state_dict(self, state):
            self.proba = state["proba"]

    class Plugin:
        @graphforge.hookimpl
        def register_models(self, register):
            register("cheater", Cheater)

    plugin_registered(Plugin(), "cheater-plugin")
    with pytest.raises(AssertionError, match="only the training labels"):
        check_registered("model", "cheater")


# --- through the engine -------------------------------------------------------------


class TwoBlobs(graphforge.Dataset):
    """Two well separated Gaussian blobs in 8-D, 60 samples each."""

    needs_files = False

    def load(self, *, root, download, seed):
        g = torch.Generator().manual_seed(seed)
        y = torch.arange(2).repeat_interleave(60)
        x = torch.randn(120, 8, generator=g) + y[:, None].float() * 6.0
        perm = torch.randperm(120, generator=g)
        x, y = x[perm], y[perm]
        return DataSplits(Split(x[:60], y[:60]), Split(x[60:90], y[60:90]), Split(x[90:], y[90:]), 2, "vectors")


class BlobGraph(graphforge.Converter):
    """Dataset converter: a symmetric 5-NN graph over all samples (two clusters on TwoBlobs)."""

    level = "dataset"
    inputs = frozenset({"vectors"})

    def __init__(self, k: int = 5, masks: bool = True) -> None:
        self.k = k
        self.masks = masks

    def output_spec(self, spec):
        return InputSpec("graph", spec.shape)

    def convert(self, data):
        x = torch.cat([data.train.x, data.val.x, data.test.x])
        y = torch.cat([data.train.y, data.val.y, data.test.y])
        d = torch.cdist(x, x).fill_diagonal_(float("inf"))
        nbr = d.topk(self.k, largest=False).indices
        edge_index = torch.stack([nbr.reshape(-1), torch.arange(len(x)).repeat_interleave(self.k)])
        edge_index = torch.cat([edge_index, edge_index.flip(0)], 1)
        graph = Data(x=x, edge_index=edge_index, edge_weight=torch.ones(edge_index.shape[1]), y=y)
        if self.masks:
            sizes = torch.tensor([len(data.train), len(data.val), len(data.test)])
            part = torch.arange(3).repeat_interleave(sizes)
            graph.train_mask, graph.val_mask, graph.test_mask = (part == i for i in range(3))
        return graph


class BlobPlugin:
    @graphforge.hookimpl
    def register_datasets(self, register):
        register("two-blobs", TwoBlobs)

    @graphforge.hookimpl
    def register_converters(self, register):
        register("blob-graph", BlobGraph)


def test_label_prop_and_mlp_run_through_the_engine(tmp_path):
    from graphforge.plugins import register_plugin, unregister_plugin

    name = register_plugin(BlobPlugin(), "blob-plugin")
    try:
        lp = graphforge.run("blob-graph", "label_prop", dataset="two-blobs", seed=0, out=str(tmp_path / "lp"),
                            options={"alpha": 0.9})
        mlp = graphforge.run("blob-graph", "mlp", dataset="two-blobs", seed=0, epochs=40, lr=0.02,
                             out=str(tmp_path / "mlp"), options={"hidden": 16})
        trained = graphforge.load_run(tmp_path / "lp")
        trained_mlp = graphforge.load_run(tmp_path / "mlp")
    finally:
        unregister_plugin(name)
    for run, path in ((lp, tmp_path / "lp"), (mlp, tmp_path / "mlp")):
        metrics = json.loads((path / "metrics.json").read_text())
        assert metrics["test_accuracy"] == run.metrics["test_accuracy"]
        assert (path / "checkpoint.pt").is_file() and (path / "history.json").is_file()
    assert lp.metrics["test_accuracy"] > 0.95 and lp.metrics["val_accuracy"] > 0.95
    assert lp.metrics["train_accuracy"] > 0.95 and lp.metrics["epochs"] == 1
    assert lp.metrics["label_prop_iterations"] == 50 and lp.metrics["label_prop_unreached_nodes"] == 0
    assert mlp.metrics["test_accuracy"] > 0.9

    assert tuple(trained.model.predict_proba().shape) == (120, 2)
    with pytest.raises(GraphforgeError, match="transductive"):
        trained.predict(torch.rand(3, 8))
    with pytest.raises(GraphforgeError, match="transductive"):
        trained_mlp.predict(torch.rand(3, 8))


def test_label_prop_needs_a_dataset_converter(tmp_path):
    out = tmp_path / "x"
    with pytest.raises(ConfigError, match="label_prop.*dataset converter"):
        graphforge.run("none", "label_prop", out=str(out))
    assert not out.exists()


def test_a_graph_without_splits_is_refused_before_the_run_directory(tmp_path, plugin_registered):
    plugin_registered(BlobPlugin(), "blob-plugin")
    out = tmp_path / "x"
    with pytest.raises(DataError, match="train_mask"):
        graphforge.run("blob-graph", "label_prop", dataset="two-blobs", out=str(out), options={"masks": False})
    assert not out.exists()
