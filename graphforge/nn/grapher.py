"""Vision-GNN-style Grapher block and the layer factories it shares with the GNN models."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch_geometric.nn import GATConv, GCNConv

from graphforge.nn.conv import WeightedGINConv, WeightedSAGEConv, dense_adjacency
from graphforge.nn.fast_dropout import dropout as gf_dropout


def make_conv(kind: str, in_ch: int, out_ch: int, aggr: str, heads: int) -> nn.Module:
    """One message-passing layer: ``sage``, ``gcn``, ``gat`` (``heads`` heads) or ``gin``."""
    if kind == "sage":
        return WeightedSAGEConv(in_ch, out_ch, aggr=aggr)
    if kind == "gcn":
        return GCNConv(in_ch, out_ch)
    if kind == "gat":
        return GATConv(in_ch, out_ch // heads, heads=heads, edge_dim=1)
    if kind == "gin":
        mlp = nn.Sequential(nn.Linear(in_ch, out_ch), nn.ReLU(), nn.Linear(out_ch, out_ch))
        return WeightedGINConv(mlp)
    raise ValueError(f"unknown layer type {kind!r}")


def make_norm(kind: str, width: int) -> nn.Module:
    """``batch`` (BatchNorm1d), ``layer`` (LayerNorm) or anything else (none) over ``width`` features."""
    if kind == "batch":
        return nn.BatchNorm1d(width)
    if kind == "layer":
        return nn.LayerNorm(width)
    return nn.Identity()


class GrapherBlock(nn.Module):
    """A Vision-GNN-style block: ``h + FC(act(conv(FC(h))))``, then ``h + FFN(h)``.

    The Grapher half projects the nodes (``Linear -> norm``), runs one message-passing
    layer (``norm -> GELU``) and projects back (``Linear -> norm``) onto a residual; the FFN
    half (``Linear(d, ratio*d) -> norm -> GELU -> Linear(ratio*d, d) -> norm``) adds a second
    residual, as in ViG's Grapher + FFN (no code taken from it).
    """

    def __init__(self, conv: str, width: int, aggr: str, heads: int, norm: str, dropout: float,
                 ffn_ratio: int) -> None:
        super().__init__()
        self.conv_kind = conv
        self.dropout = dropout
        self.fc_in = nn.Sequential(nn.Linear(width, width), make_norm(norm, width))
        self.conv = make_conv(conv, width, width, aggr, heads)
        self.conv_norm = make_norm(norm, width)
        self.fc_out = nn.Sequential(nn.Linear(width, width), make_norm(norm, width))
        hid = width * ffn_ratio
        self.ffn = nn.Sequential(nn.Linear(width, hid), make_norm(norm, hid), nn.GELU(), nn.Linear(hid, width),
                                 make_norm(norm, width)) if ffn_ratio else None

    def forward(self, h: Tensor, layer: Any, edge_index: Tensor, w: Tensor | None, adj: Tensor | None = None) -> Tensor:
        y = layer(self.conv, self.fc_in(h), edge_index, w, adj)
        y = self.fc_out(nn.functional.gelu(self.conv_norm(y)))
        h = h + gf_dropout(y, self.dropout, self.training)
        if self.ffn is not None:
            h = h + gf_dropout(self.ffn(h), self.dropout, self.training)
        return h


def _dense_layer(conv: nn.Module, h: Tensor, edge_index: Tensor, w: Tensor | None, adj: Tensor | None) -> Tensor:
    return conv.forward_dense(h, adj)


class MapGraphBlock(GrapherBlock):
    """A residual KNN-graph block on a CNN's feature map (a Vision GNN stage).

    Every position of the ``[B, C, H, W]`` map is a node; each image's graph joins every node
    to its ``k`` nearest in channel space. The block is a :class:`graphforge.nn.GrapherBlock`
    (mean ``sage``, batch norm, no FFN): it adds ``FC(GELU(BN(sage(FC(x)))))`` to the map, a
    neighbour mean over positions that look alike, wherever they are in the image, at a
    resolution where a convolution sees only a small window.

    Args:
        channels: Channels of the map.
        k: Neighbours per node.
        metric: KNN metric (a name the native op has a kernel for).

    Shapes:
        input and output ``[B, C, H, W]`` (channels-last).
    """

    def __init__(self, channels: int, k: int, metric: str = "euclidean") -> None:
        super().__init__("sage", channels, "mean", heads=1, norm="batch", dropout=0.0, ffn_ratio=0)
        self.k, self.metric = k, metric

    def forward(self, fmap: Tensor) -> Tensor:  # type: ignore[override]
        from graphforge.ops import dense_batched_knn

        b, c, h, w = fmap.shape
        n = h * w
        nodes = fmap.permute(0, 2, 3, 1).reshape(b * n, c)
        edge_index, _ = dense_batched_knn(nodes.detach().view(b, n, c), min(self.k, n - 1), metric=self.metric)
        out = super().forward(nodes, _dense_layer, edge_index, None, dense_adjacency(edge_index, None, b, n, nodes.dtype))
        return out.view(b, h, w, c).permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)
