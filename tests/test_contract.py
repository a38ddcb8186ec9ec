"""Every registered plugin passes the same contract (graphforge.testing)."""

import pytest
import torch

from graphforge.plugins import iter_entries
from graphforge.testing import SAMPLE_SPECS, check_registered, synthetic_input
from tests.helpers import TestModelsPlugin

ENTRIES = [(e.kind, e.name) for e in iter_entries()]


@pytest.mark.parametrize("kind, name", ENTRIES, ids=[f"{k}:{n}" for k, n in ENTRIES])
def test_builtin_plugin_contract(kind, name):
    check_registered(kind, name)


@pytest.mark.parametrize("kind, name", [("model", "centroid"), ("model", "test-gcn"), ("converter", "test-knn-graph")])
def test_test_plugins_pass_the_contract(plugin_registered, kind, name):
    plugin_registered(TestModelsPlugin(), "test-models")
    check_registered(kind, name)


def test_contract_catches_a_broken_model(plugin_registered):
    import graphforge

    class WrongShape(graphforge.Model):
        """Returns one logit too many."""

        inputs = frozenset({"vectors"})

        def build(self, spec, num_classes):
            return torch.nn.Linear(spec.shape[0], num_classes + 1)

    class Plugin:
        @graphforge.hookimpl
        def register_models(self, register):
            register("wrong-shape", WrongShape)

    plugin_registered(Plugin(), "broken")
    with pytest.raises(AssertionError, match="logits shape"):
        check_registered("model", "wrong-shape")


def test_synthetic_graph_batches_are_valid():
    batch = synthetic_input(SAMPLE_SPECS["graphs"])
    assert batch.num_graphs == 4 and batch.edge_index.max() < batch.num_nodes
