"""sage / gcn / gat / gin and the edge-weighted layers."""

import pytest
import torch
from torch_geometric.nn import SAGEConv

import graphforge
from graphforge.errors import ConfigError
from graphforge.nn import WeightedGINConv, WeightedSAGEConv
from tests.helpers import TestModelsPlugin


def _graph(n=12, e=40, f=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, f, generator=g), torch.randint(0, n, (2, e), generator=g)


@pytest.mark.parametrize("aggr", ["mean", "max", "sum"])
def test_weighted_sage_with_unit_weights_equals_pyg_sage(aggr):
    x, ei = _graph()
    ours = WeightedSAGEConv(6, 5, aggr=aggr)
    ref = SAGEConv(6, 5, aggr=aggr)
    with torch.no_grad():
        ref.lin_l.weight.copy_(ours.lin_l.weight)
        ref.lin_l.bias.copy_(ours.lin_l.bias)
        ref.lin_r.weight.copy_(ours.lin_r.weight)
    assert torch.allclose(ours(x, ei), ref(x, ei), atol=1e-6)
    assert torch.allclose(ours(x, ei, torch.ones(ei.shape[1])), ref(x, ei), atol=1e-6)


def test_zero_weight_edges_are_ignored_by_weighted_mean():
    x, ei = _graph()
    w = (torch.arange(ei.shape[1]) % 2).float()
    conv = WeightedSAGEConv(6, 5)
    assert torch.allclose(conv(x, ei, w), conv(x, ei[:, w > 0]), atol=1e-6)
    gin = WeightedGINConv(torch.nn.Linear(6, 5))
    assert torch.allclose(gin(x, ei, w), gin(x, ei[:, w > 0]), atol=1e-6)


def test_edge_weight_shape_is_checked():
    x, ei = _graph()
    with pytest.raises(ValueError, match="edge_weight must have shape"):
        WeightedSAGEConv(6, 5)(x, ei, torch.ones(3))


@pytest.mark.parametrize("name", ["sage", "gcn", "gat", "gin"])
def test_node_classification_on_a_dataset_graph(tmp_path, plugin_registered, name):
    plugin_registered(TestModelsPlugin(), "test-models")
    r = graphforge.run("test-knn-graph", name, epochs=40, lr=0.01, seed=0, out=str(tmp_path / name),
                       options={"k": 6, "hidden": 32, "layers": 2, "dropout": 0.2})
    assert r.metrics["test_accuracy"] > 0.8


@pytest.mark.parametrize(
    "name, options, message",
    [("sage", {"aggr": "median"}, "aggr must be"), ("gat", {"heads": 5}, "heads must be a positive divisor"),
     ("gcn", {"layers": 0}, "layers must be"), ("gin", {"pooling": "mean+avg"}, "pooling must be"),
     ("sage", {"norm": "group"}, "norm must be")],
)
def test_bad_options(name, options, message):
    with pytest.raises(ConfigError, match=message):
        graphforge.get_model(name, **options)


def test_gnn_refuses_plain_images(tmp_path):
    with pytest.raises(ConfigError, match="model 'sage' takes \\['graph', 'graphs'\\] input, but gets images"):
        graphforge.run("none", "sage", out=str(tmp_path / "x"))
