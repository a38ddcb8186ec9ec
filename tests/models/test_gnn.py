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


def _simple_graph(n, e, f, seed):
    """A random graph without self-loops or repeated edges (so no maximum is a tie)."""
    x, ei = _graph(n=n, e=e, f=f, seed=seed)
    ei = ei[:, ei[0] != ei[1]]
    return x, torch.unique(ei, dim=1)


def _max_relative_reference(x, ei, w):
    """``max(0, max_j w_j (x_j - x_i))`` by brute force, one node at a time."""
    rows = []
    for i in range(x.shape[0]):
        terms = [torch.zeros_like(x[i])] + [w[e] * (x[ei[0, e]] - x[i]) for e in range(ei.shape[1]) if ei[1, e] == i]
        rows.append(torch.stack(terms).amax(0))
    return torch.stack(rows)


@pytest.mark.parametrize("weighted", [True, False])
def test_max_relative_matches_brute_force_with_gradients(weighted):
    from graphforge.nn.conv import max_relative, neighbour_table

    x, ei = _simple_graph(n=15, e=60, f=5, seed=3)
    x = x.double().requires_grad_()
    ei = ei[:, ei[1] != 14]  # node 14 gets no edge: only the 0
    w = torch.rand(ei.shape[1], dtype=torch.float64, generator=torch.Generator().manual_seed(1)).requires_grad_() \
        if weighted else None
    table, tw = neighbour_table(ei, w, x.shape[0])
    out = max_relative(x, table, tw)
    ref = _max_relative_reference(x, ei, w if weighted else torch.ones(ei.shape[1], dtype=torch.float64))
    assert torch.allclose(out, ref)
    g = torch.randn(out.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    inputs = [x, w] if weighted else [x]
    for a, b in zip(torch.autograd.grad((out * g).sum(), inputs), torch.autograd.grad((ref * g).sum(), inputs)):
        assert torch.allclose(a, b)


def test_max_relative_with_0_1_weights_treats_weight_0_edges_as_absent():
    from graphforge.nn.conv import max_relative, neighbour_table

    x, ei = _simple_graph(n=15, e=60, f=5, seed=4)
    x = x.double().requires_grad_()
    w = (torch.arange(ei.shape[1]) % 3 > 0).double().requires_grad_()  # the fast 0/1 path
    out = max_relative(x, *neighbour_table(ei, w, x.shape[0]))
    keep = w.detach() > 0
    # Reference: only the kept edges, each with its (unit) weight as a factor.
    ref = _max_relative_reference(x, ei[:, keep], w[keep])
    assert torch.allclose(out, ref)
    g = torch.randn(out.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    gx, gw = torch.autograd.grad((out * g).sum(), [x, w])
    rx, rw = torch.autograd.grad((ref * g).sum(), [x, w])
    assert torch.allclose(gx, rx) and torch.allclose(gw, rw)
    assert gw[~keep].abs().sum() == 0 and gw[keep].abs().sum() > 0


def test_max_relative_sage_layer_and_zero_weight_edges():
    x, ei = _graph()
    conv = WeightedSAGEConv(6, 5, aggr="max_relative")
    w = (torch.arange(ei.shape[1]) % 2).float()
    assert torch.allclose(conv(x, ei, w), conv(x, ei[:, w > 0]), atol=1e-6)
    assert torch.allclose(conv(x, ei, torch.ones(ei.shape[1])), conv(x, ei), atol=1e-6)
    with torch.no_grad():
        expected = conv.lin_l(_max_relative_reference(x, ei, torch.ones(ei.shape[1]))) + conv.lin_r(x)
    assert torch.allclose(conv(x, ei), expected, atol=1e-6)


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
