"""Vision-GNN-style Grapher block and the layer factories it shares with the GNN models."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn
from torch_geometric.nn import GATConv, GCNConv

from graphforge.nn.conv import WeightedGINConv, WeightedSAGEConv
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
