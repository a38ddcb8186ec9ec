"""``sage``, ``gcn``, ``gat``, ``gin``: graph neural networks over graphforge graphs.

One block serves both tasks: on per-sample graphs (``graphs`` input, e.g. from
``dyn_knn``) it pools each graph and classifies it; on one dataset graph
(``graph`` input, e.g. from ``similarity``) it classifies the nodes. Edge
weights (``data.edge_weight``) are used by every layer type.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch_geometric.nn import (
    global_add_pool,
    global_max_pool,
    global_mean_pool,
)
from torch_geometric.utils import trim_to_layer

from graphforge.core.data import InputSpec
from graphforge.core.model import Model
from graphforge.engine.sampling import (
    AUTO_SAMPLING_MIN_NODES,
    check_fanout,
    default_fanout,
)
from graphforge.errors import ConfigError
from graphforge.nn.conv import dense_adjacency
from graphforge.nn.fast_dropout import Dropout
from graphforge.nn.fast_dropout import dropout as gf_dropout
from graphforge.nn.grapher import GrapherBlock, make_conv, make_norm

_POOLS = {"mean": global_mean_pool, "max": global_max_pool, "sum": global_add_pool}
_NORMS = ("batch", "layer", "none")


_BLOCKS = ("plain", "grapher")


class GNN(nn.Module):
    """Stack of message-passing layers with a graph- or node-level head.

    Args:
        conv: ``sage``, ``gcn``, ``gat`` or ``gin``.
        in_channels: Node features.
        hidden: Width of every layer.
        num_classes: Number of outputs.
        layers: Number of message-passing layers.
        task: ``"graph"`` (pool, then classify each graph) or ``"node"``.
        aggr: Neighbour aggregation of ``sage``.
        pooling: Graph readouts joined by ``+`` (e.g. ``"mean+max"``).
        dropout: Dropout probability.
        norm: ``batch``, ``layer`` or ``none``.
        heads: Attention heads of ``gat``.
        block: ``plain`` (``conv -> norm -> ReLU`` layers, residual from the 2nd on) or
            ``grapher`` (a linear stem to ``hidden``, then ``layers`` ViG-style
            :class:`GrapherBlock` s; graph task only).
        ffn_ratio: Hidden width of a Grapher block's FFN, in multiples of ``hidden`` (0: no FFN).

    Shapes:
        input: a PyG ``Data``/``Batch`` with ``x [N, in_channels]``, ``edge_index [2, E]``,
        optional ``edge_weight [E]`` and (graph task) ``batch [N]``; output ``[num_graphs or N, num_classes]``.
        A neighbour-sampled subgraph (``num_sampled_nodes`` / ``num_sampled_edges`` with one hop
        per layer, see :mod:`graphforge.engine.sampling`) gives logits of its first nodes only:
        at least the seeds, which come first.
    """

    def __init__(self, conv: str, in_channels: int, hidden: int, num_classes: int, layers: int, task: str,
                 aggr: str = "mean", pooling: str = "mean+max", dropout: float = 0.1, norm: str = "batch",
                 heads: int = 4, block: str = "plain", ffn_ratio: int = 2) -> None:
        super().__init__()
        self.conv_kind = conv
        self.task = task
        self.dropout = dropout
        self.pools = pooling.split("+")
        self.block = block
        self.dense_ok = conv == "sage" and aggr in ("mean", "sum")
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        width = in_channels
        if block == "grapher":
            self.stem = nn.Sequential(nn.Linear(in_channels, hidden), make_norm(norm, hidden))
            self.blocks = nn.ModuleList(GrapherBlock(conv, hidden, aggr, heads, norm, dropout, ffn_ratio)
                                        for _ in range(layers))
            width = hidden
        for _ in range(layers if block == "plain" else 0):
            self.convs.append(make_conv(conv, width, hidden, aggr, heads))
            self.norms.append(make_norm(norm, hidden))
            width = hidden
        head_in = width * len(self.pools) if task == "graph" else width
        self.head = nn.Sequential(
            nn.Linear(head_in, hidden), nn.ReLU(), Dropout(dropout), nn.Linear(hidden, num_classes)
        ) if task == "graph" else nn.Linear(head_in, num_classes)

    def _layer(self, conv: nn.Module, h: Tensor, edge_index: Tensor, w: Tensor | None,
               adj: Tensor | None = None) -> Tensor:
        if adj is not None:
            return conv.forward_dense(h, adj)
        if self.conv_kind == "gat":
            if w is not None:  # zero-weight edges are masked out; kept ones carry the weight (and its gradient)
                keep = w > 0
                return conv(h, edge_index[:, keep], edge_attr=w[keep].unsqueeze(-1))
            return conv(h, edge_index)
        return conv(h, edge_index, w)

    def _dense_adjacency(self, data: Any, edge_index: Tensor, w: Tensor | None, h: Tensor) -> Tensor | None:
        # Graphs of equal size (``nodes_per_graph``, e.g. dyn_knn's) with a mean/sum SAGE: one
        # [B, n, n] adjacency, built once, serves every layer (see WeightedSAGEConv.forward_dense).
        n = getattr(data, "nodes_per_graph", None)
        if (self.task != "graph" or self.conv_kind != "sage" or not self.dense_ok or not n
                or h.shape[0] % int(n)):
            return None
        return dense_adjacency(edge_index, w, h.shape[0] // int(n), int(n), h.dtype)

    def _rebuild(self, regraph: Any, data: Any, h: Tensor) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """A dynamic graph's edges, weights and dense adjacency from node features ``h``."""
        edge_index, w = regraph(h)
        return edge_index, w, self._dense_adjacency(data, edge_index, w, h)

    def forward(self, data: Any) -> Tensor:
        h, edge_index = data.x.float(), data.edge_index
        w = getattr(data, "edge_weight", None)
        adj = self._dense_adjacency(data, edge_index, w, h)
        # A neighbour-sampled batch with one hop per layer: each layer drops the outermost
        # hop, which can no longer reach the seed nodes (as PyG's BasicGNN does).
        hops = getattr(data, "num_sampled_nodes", None)
        trim = self.task == "node" and hops is not None and len(hops) == len(self.convs) + 1
        # A graph that carries ``regraph`` (dyn_knn's ``dynamic=true``) is rebuilt from each
        # layer's node features before every layer after the first.
        regraph = getattr(data, "regraph", None) if self.task == "graph" else None
        if self.block == "grapher":
            h = self.stem(h)
            for i, blk in enumerate(self.blocks):
                if regraph is not None and i > 0:
                    edge_index, w, adj = self._rebuild(regraph, data, h)
                h = blk(h, self._layer, edge_index, w, adj)
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            if trim and i > 0:
                h, edge_index, w = trim_to_layer(i, hops, data.num_sampled_edges, h, edge_index, w)
            if regraph is not None and i > 0:
                edge_index, w, adj = self._rebuild(regraph, data, h)
            out = norm(self._layer(conv, h, edge_index, w, adj)).relu()
            out = gf_dropout(out, self.dropout, self.training)
            h = out + h if i > 0 and out.shape == h.shape else out  # residual from the 2nd layer on
        if self.task == "node":
            return self.head(h)
        batch = getattr(data, "batch", None)
        if batch is None:
            batch = torch.zeros(h.shape[0], dtype=torch.long, device=h.device)
        size = getattr(data, "num_graphs", None)
        if adj is not None:  # equal-size graphs: pool over a [B, n, F] view
            hb = h.view(adj.shape[0], adj.shape[1], -1)
            dense_pools = {"mean": lambda: hb.mean(1), "max": lambda: hb.amax(1), "sum": lambda: hb.sum(1)}
            pooled = torch.cat([dense_pools[p]() for p in self.pools], dim=-1)
        else:
            pooled = torch.cat([_POOLS[p](h, batch, size) for p in self.pools], dim=-1)
        return self.head(pooled)


class GNNModel(Model):
    """Base of the graph models; subclasses set :attr:`conv`.

    Args:
        hidden (int, optional): Width of each layer. (default: ``64``)
        layers (int, optional): Message-passing layers. (default: ``3``)
        dropout (float, optional): Dropout probability. (default: ``0.1``)
        pooling (str, optional): Graph readout, ``mean``, ``max``, ``sum`` or a ``+``-joined mix.
            (default: ``"mean+max"``)
        norm (str, optional): ``batch``, ``layer`` or ``none``. (default: ``"batch"``)
        num_neighbors (list[int] or str, optional): Node classification on one dataset graph:
            neighbours sampled per node at each layer (one int per layer, ``-1``: all) for
            mini-batch training, ``"full"`` for full-batch training, or ``"auto"``: full batch
            up to 200,000 nodes, else ``[15, 10, 5]`` fitted to ``layers``. (default: ``"auto"``)
        block (str, optional): ``plain`` (``conv -> norm -> ReLU`` layers) or ``grapher``
            (ViG-style ``FC -> conv -> FC`` + FFN blocks with residuals; per-sample graphs
            only). (default: ``"plain"``)
        ffn_ratio (int, optional): FFN width of a ``grapher`` block in multiples of ``hidden``
            (0: no FFN). (default: ``2``)
    """

    conv: ClassVar[str] = ""
    inputs = frozenset({"graphs", "graph"})
    default_epochs = 30

    def __init__(self, hidden: int = 64, layers: int = 3, dropout: float = 0.1, pooling: str = "mean+max",
                 norm: str = "batch", num_neighbors: list[int] | str = "auto", block: str = "plain",
                 ffn_ratio: int = 2) -> None:
        if block not in _BLOCKS:
            raise ValueError(f"block must be one of {', '.join(_BLOCKS)}, got {block!r}")
        if isinstance(ffn_ratio, bool) or not isinstance(ffn_ratio, int) or ffn_ratio < 0:
            raise ValueError(f"ffn_ratio must be an integer >= 0, got {ffn_ratio!r}")
        self.block = block
        self.ffn_ratio = ffn_ratio
        for name, value in (("hidden", hidden), ("layers", layers)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        pools = str(pooling).split("+")
        if not pools or any(p not in _POOLS for p in pools):
            raise ValueError(f"pooling must be mean, max, sum or a '+'-joined mix, got {pooling!r}")
        if norm not in _NORMS:
            raise ValueError(f"norm must be one of {', '.join(_NORMS)}, got {norm!r}")
        self.hidden = hidden
        self.layers = layers
        self.dropout = float(dropout)
        self.pooling = str(pooling)
        self.norm = norm
        if isinstance(num_neighbors, str):
            if num_neighbors not in ("auto", "full"):
                raise ConfigError(f"num_neighbors must be 'auto', 'full' or a list of ints, got {num_neighbors!r}")
        elif len(check_fanout(num_neighbors)) != layers:
            raise ConfigError(f"num_neighbors needs one entry per layer ({layers}), got {num_neighbors!r}")
        self.num_neighbors = num_neighbors if isinstance(num_neighbors, str) else list(num_neighbors)

    def neighbor_sampling(self, num_nodes: int) -> list[int] | None:
        """The fanout of ``num_neighbors``: ``None`` (full batch) for ``"full"`` and for
        ``"auto"`` on graphs of at most 200,000 nodes."""
        if self.num_neighbors == "full" or (self.num_neighbors == "auto" and num_nodes <= AUTO_SAMPLING_MIN_NODES):
            return None
        return default_fanout(self.layers) if self.num_neighbors == "auto" else list(self.num_neighbors)

    def _extra(self) -> dict[str, Any]:
        return {}

    def build(self, spec: InputSpec, num_classes: int) -> nn.Module:
        """Return a :class:`GNN` for node features of ``spec``."""
        task = "graph" if spec.kind == "graphs" else "node"
        if task == "node" and self.block != "plain":
            raise ConfigError("block=grapher is for per-sample graphs (e.g. dyn_knn); use block=plain on a dataset graph")
        return GNN(self.conv, spec.shape[0], self.hidden, num_classes, self.layers, task,
                   pooling=self.pooling, dropout=self.dropout, norm=self.norm, block=self.block,
                   ffn_ratio=self.ffn_ratio, **self._extra())


class SAGE(GNNModel):
    """GraphSAGE with edge-weighted aggregation (see :class:`GNNModel` for options).

    Args:
        hidden (int, optional): Width of each layer. (default: ``128``)
        aggr (str, optional): ``mean``, ``sum``, ``max`` or ``max_relative`` (Vision GNN's
            max-relative aggregation, ``max(0, max_j w_ij (x_j - x_i))``) neighbour aggregation.
            (default: ``"mean"``)

    Mini-batch training (e.g. on ``dyn_knn`` graphs) defaults to 20 epochs at a peak LR of 3e-3.
    """

    conv = "sage"
    #: The dyn_knn flagship's budget (Fashion-MNIST 10k: about 4-5 min on 2 cores).
    default_epochs = 20
    default_lr = 3e-3

    def __init__(self, hidden: int = 128, layers: int = 3, dropout: float = 0.1, pooling: str = "mean+max",
                 norm: str = "batch", aggr: str = "mean", num_neighbors: list[int] | str = "auto",
                 block: str = "plain", ffn_ratio: int = 2) -> None:
        super().__init__(hidden, layers, dropout, pooling, norm, num_neighbors, block, ffn_ratio)
        if aggr not in ("mean", "sum", "max", "max_relative"):
            raise ValueError(f"aggr must be mean, sum, max or max_relative, got {aggr!r}")
        self.aggr = aggr

    def _extra(self) -> dict[str, Any]:
        return {"aggr": self.aggr}


class GCN(GNNModel):
    """Graph convolutional network (Kipf & Welling) using edge weights."""

    conv = "gcn"


class GAT(GNNModel):
    """Graph attention network with the edge weight as an edge feature.

    Args:
        heads (int, optional): Attention heads; must divide ``hidden``. (default: ``4``)
    """

    conv = "gat"

    def __init__(self, hidden: int = 64, layers: int = 3, dropout: float = 0.1, pooling: str = "mean+max",
                 norm: str = "batch", heads: int = 4, num_neighbors: list[int] | str = "auto",
                 block: str = "plain", ffn_ratio: int = 2) -> None:
        super().__init__(hidden, layers, dropout, pooling, norm, num_neighbors, block, ffn_ratio)
        if isinstance(heads, bool) or not isinstance(heads, int) or heads < 1 or hidden % heads:
            raise ValueError(f"heads must be a positive divisor of hidden={hidden}, got {heads!r}")
        self.heads = heads

    def _extra(self) -> dict[str, Any]:
        return {"heads": self.heads}


class GIN(GNNModel):
    """Graph isomorphism network with edge-weighted sums."""

    conv = "gin"
