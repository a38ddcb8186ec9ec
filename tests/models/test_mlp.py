"""The ``mlp`` baseline: depth, width, dropout options and digits through the engine."""

import pytest
import torch

import graphforge
from graphforge.builtin.models.mlp import MLP
from graphforge.core.data import InputSpec
from graphforge.errors import ConfigError


def _linear_widths(net):
    return [m.out_features for m in net.modules() if isinstance(m, torch.nn.Linear)]


def test_depth_and_width():
    spec = InputSpec("images", (1, 8, 8))
    assert _linear_widths(MLP(hidden=32, layers=3).build(spec, 10)) == [32, 32, 32, 10]
    assert _linear_widths(MLP(hidden=[64, 16]).build(spec, 4)) == [64, 16, 4]
    assert _linear_widths(MLP(layers=0).build(spec, 10)) == [10]
    net = MLP(hidden=[8], dropout=0.5, norm=False, activation="gelu").build(InputSpec("vectors", (5,)), 2)
    assert [type(m).__name__ for m in net.layers] == ["Flatten", "Linear", "GELU", "Dropout", "Linear"]
    assert net.layers[3].p == 0.5
    assert net(torch.randn(3, 5)).shape == (3, 2)


def test_dropout_is_active_in_training_only():
    net = MLP(hidden=64, dropout=0.5).build(InputSpec("vectors", (10,)), 3)
    x = torch.randn(8, 10)
    net.eval()
    assert torch.equal(net(x), net(x))
    net.train()
    assert not torch.equal(net(x), net(x))


@pytest.mark.parametrize(
    ("options", "message"),
    [({"hidden": 0}, "hidden widths"), ({"layers": -1}, "layers"), ({"dropout": 1.0}, "dropout"),
     ({"activation": "swish"}, "activation"), ({"hidden": "wide"}, "hidden")],
)
def test_bad_options(options, message):
    with pytest.raises(ValueError, match=message):
        MLP(**options)
    with pytest.raises(ConfigError, match=message):
        graphforge.api.get_model("mlp", **options)


def test_mlp_on_digits_beats_chance_widely(tmp_path):
    r = graphforge.run("none", "mlp", seed=0, epochs=6, limit_train=800, out=str(tmp_path / "mlp"),
                       options={"hidden": 64})
    assert r.metrics["test_accuracy"] > 0.85  # chance is 0.1


def _graph(n=12, features=5):
    from torch_geometric.data import Data

    idx = torch.arange(n)
    return Data(x=torch.randn(n, features), edge_index=torch.stack([idx, (idx + 1) % n]))


def test_graph_input_classifies_each_node_from_its_features_alone():
    from graphforge.builtin.models.mlp import MLPNet, NodeMLP

    torch.manual_seed(0)
    net = MLP(hidden=16).build(InputSpec("graph", (5,)), 3)
    assert isinstance(net, NodeMLP) and isinstance(net.mlp, MLPNet)
    net.eval()
    graph = _graph()
    logits = net(graph)
    assert logits.shape == (12, 3)
    assert torch.equal(logits, net.mlp(graph.x))  # the same network on the node features
    rewired = graph.clone()
    rewired.edge_index = torch.randint(0, 12, (2, 40))
    assert torch.equal(net(rewired), logits)  # edges are ignored


def test_graph_input_check():
    MLP().check_input(InputSpec("graph", (5,)))
    with pytest.raises(ConfigError, match="graphs"):
        MLP().check_input(InputSpec("graphs", (5,)))


def test_mlp_on_a_dataset_graph_through_the_engine(tmp_path, plugin_registered):
    from tests.helpers import TestModelsPlugin

    plugin_registered(TestModelsPlugin(), "test-models")
    r = graphforge.run("test-knn-graph", "mlp", seed=0, epochs=40, lr=0.01, out=str(tmp_path / "g"),
                       options={"hidden": 64})
    assert r.metrics["test_accuracy"] > 0.85  # the same node features as a GNN on that graph, no edges
    assert (tmp_path / "g" / "checkpoint.pt").is_file()
