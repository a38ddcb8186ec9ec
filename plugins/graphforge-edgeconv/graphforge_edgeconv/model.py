"""``dgcnn``: dynamic EdgeConv over per-sample graphs."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch_geometric.nn import EdgeConv, global_max_pool, global_mean_pool

from graphforge import InputSpec, Model
from graphforge.ops import batched_knn


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.BatchNorm1d(b), nn.LeakyReLU(0.2)]
    return nn.Sequential(*layers)


class DGCNNNet(nn.Module):
    """EdgeConv layers with per-layer KNN graphs, then max + mean pooling and an MLP.

    Args:
        in_channels: Node features of the input graphs.
        num_classes: Number of outputs.
        k: Neighbours of the graphs rebuilt in feature space.
        hidden: Width of each EdgeConv layer.
        layers: Number of EdgeConv layers.
        dynamic: Rebuild the graph from the 2nd layer on (else keep the input graph).
        emb: Width of the projection after concatenating the layer outputs.
        dropout: Dropout of the classifier.

    Shapes:
        input: a PyG ``Batch`` with ``x [N, in_channels]``, ``edge_index [2, E]``, ``batch``
        and ``ptr``; output ``[num_graphs, num_classes]``.
    """

    def __init__(self, in_channels: int, num_classes: int, k: int, hidden: int, layers: int, dynamic: bool,
                 emb: int, dropout: float) -> None:
        super().__init__()
        self.k, self.dynamic = k, dynamic
        self.convs = nn.ModuleList(
            EdgeConv(_mlp([2 * (in_channels if i == 0 else hidden), hidden]), aggr="max") for i in range(layers)
        )
        self.project = _mlp([hidden * layers, emb])
        self.head = nn.Sequential(nn.Linear(2 * emb, hidden), nn.LeakyReLU(0.2), nn.Dropout(dropout),
                                  nn.Linear(hidden, num_classes))

    def forward(self, data: Any) -> Tensor:
        h, edge_index, batch = data.x.float(), data.edge_index, data.batch
        ptr = getattr(data, "ptr", None)
        if ptr is None:
            counts = torch.bincount(batch, minlength=data.num_graphs)
            ptr = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
        outs = []
        for i, conv in enumerate(self.convs):
            if i > 0 and self.dynamic:
                edge_index, _ = batched_knn(h.detach(), ptr, self.k)  # neighbours in feature space
            h = conv(h, edge_index)
            outs.append(h)
        h = self.project(torch.cat(outs, dim=-1))
        size = data.num_graphs
        return self.head(torch.cat([global_max_pool(h, batch, size), global_mean_pool(h, batch, size)], dim=-1))


class DGCNN(Model):
    """Dynamic graph CNN (EdgeConv) for per-sample graphs.

    Args:
        k (int, optional): Neighbours of the rebuilt graphs. (default: ``16``)
        hidden (int, optional): EdgeConv width. (default: ``64``)
        layers (int, optional): EdgeConv layers. (default: ``3``)
        dynamic (bool, optional): Rebuild the graph in feature space per layer. (default: ``True``)
        emb (int, optional): Projection width after concatenation. (default: ``256``)
        dropout (float, optional): Classifier dropout. (default: ``0.3``)
    """

    inputs = frozenset({"graphs"})
    default_epochs = 30

    def __init__(self, k: int = 16, hidden: int = 64, layers: int = 3, dynamic: bool = True, emb: int = 256,
                 dropout: float = 0.3) -> None:
        for name, value in (("k", k), ("hidden", hidden), ("layers", layers), ("emb", emb)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.k, self.hidden, self.layers, self.dynamic = k, hidden, layers, bool(dynamic)
        self.emb, self.dropout = emb, float(dropout)

    def build(self, spec: InputSpec, num_classes: int) -> nn.Module:
        """Return a :class:`DGCNNNet` for node features of ``spec``."""
        return DGCNNNet(spec.shape[0], num_classes, self.k, self.hidden, self.layers, self.dynamic, self.emb,
                        self.dropout)
