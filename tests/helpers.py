"""Small plugins used by several tests (not collected as tests)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

import graphforge
from graphforge.core.data import InputSpec


@contextmanager
def interrupted_at(monkeypatch, task_cls: type, epoch: int) -> Iterator[None]:
    """Inside the block, ``task_cls.train_epoch`` raises ``KeyboardInterrupt`` when it reaches ``epoch``
    (a Ctrl-C mid-run, for resume tests); the original method is back afterwards."""
    original = task_cls.train_epoch

    def train_epoch(self, optimizer, current):
        if current == epoch:
            raise KeyboardInterrupt
        return original(self, optimizer, current)

    monkeypatch.setattr(task_cls, "train_epoch", train_epoch)
    try:
        yield
    finally:
        monkeypatch.setattr(task_cls, "train_epoch", original)


class NearestCentroid(graphforge.FitModel):
    """Fit model: predicts the class whose training mean is nearest."""

    name = "centroid"
    inputs = frozenset({"vectors", "images"})

    def __init__(self, temperature: float = 1.0) -> None:
        if temperature <= 0:
            raise ValueError("temperature must be > 0")
        self.temperature = temperature
        self.centroids: torch.Tensor | None = None

    def fit(self, x, y, num_classes):
        self.centroids = torch.stack([x[y == c].mean(0) for c in range(num_classes)])
        return self

    def predict_proba(self, x):
        assert self.centroids is not None
        return (-torch.cdist(x, self.centroids) / self.temperature).softmax(-1)

    def state_dict(self):
        return {"centroids": self.centroids}

    def load_state_dict(self, state):
        self.centroids = state["centroids"]


class KNNDatasetGraph(graphforge.Converter):
    """Dataset converter: one kNN graph over all samples, with split masks."""

    name = "test-knn-graph"
    level = "dataset"

    def __init__(self, k: int = 5) -> None:
        if k < 1:
            raise ValueError("k must be >= 1")
        self.k = k

    def output_spec(self, spec: InputSpec) -> InputSpec:
        return InputSpec("graph", (spec.num_features,))

    def convert(self, data):
        from torch_geometric.data import Data

        xs = [s.x.reshape(len(s), -1).float() for s in (data.train, data.val, data.test)]
        x = torch.cat(xs)
        x = (x - x.mean(0)) / x.std(0).clamp_min(1e-6)
        y = torch.cat([data.train.y, data.val.y, data.test.y])
        d = torch.cdist(x, x)
        d.fill_diagonal_(float("inf"))
        nbr = d.topk(self.k, largest=False).indices
        edge_index = torch.stack([nbr.reshape(-1), torch.arange(len(x)).repeat_interleave(self.k)])
        sizes = [len(data.train), len(data.val), len(data.test)]
        masks = [torch.zeros(len(x), dtype=torch.bool) for _ in sizes]
        start = 0
        for m, n in zip(masks, sizes):
            m[start : start + n] = True
            start += n
        return Data(x=x, edge_index=edge_index, y=y, train_mask=masks[0], val_mask=masks[1], test_mask=masks[2])


class GCN(graphforge.Model):
    """Two-layer GCN on one whole graph."""

    name = "test-gcn"
    inputs = frozenset({"graph"})
    default_epochs = 20

    def __init__(self, hidden: int = 32) -> None:
        self.hidden = hidden

    def build(self, spec, num_classes):
        from torch_geometric.nn import GCNConv

        hidden = self.hidden

        class Net(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.c1 = GCNConv(spec.shape[0], hidden)
                self.c2 = GCNConv(hidden, num_classes)

            def forward(self, data):
                h = self.c1(data.x, data.edge_index).relu()
                return self.c2(h, data.edge_index)

        return Net()


class TestModelsPlugin:
    """A plugin object registering the helpers above."""

    @graphforge.hookimpl
    def register_models(self, register):
        register("centroid", NearestCentroid)
        register("test-gcn", GCN, "two-layer GCN (test plugin)")

    @graphforge.hookimpl
    def register_converters(self, register):
        register("test-knn-graph", KNNDatasetGraph)
        register("test-prototypes", PrototypeGraph)


class PrototypeGraph(graphforge.Converter):
    """Dataset converter whose nodes are prototypes; every sample maps onto its nearest one."""

    name = "test-prototypes"
    level = "dataset"

    def __init__(self, prototypes: int = 40) -> None:
        self.prototypes = prototypes

    def output_spec(self, spec: InputSpec) -> InputSpec:
        return InputSpec("graph", (spec.num_features,))

    def convert(self, data):
        from torch_geometric.data import Data

        flat = {s: getattr(data, s).x.reshape(len(getattr(data, s)), -1).float() for s in ("train", "val", "test")}
        g = torch.Generator().manual_seed(0)
        protos = flat["train"][torch.randperm(len(flat["train"]), generator=g)[: self.prototypes]]
        d = torch.cdist(protos, protos)
        d.fill_diagonal_(float("inf"))
        nbr = d.topk(3, largest=False).indices
        edge_index = torch.stack([nbr.reshape(-1), torch.arange(len(protos)).repeat_interleave(3)])
        graph = Data(x=protos, edge_index=edge_index)
        for s, x in flat.items():
            graph[f"{s}_index"] = torch.cdist(x, protos).argmin(1)
            graph[f"{s}_y"] = getattr(data, s).y
        return graph
