"""Message-passing layers that honour edge weights.

PyG's ``SAGEConv`` and ``GINConv`` ignore edge weights, but graphforge's learned
KNN graphs carry them (a soft rank mask lets the k head learn from the loss), so
these layers aggregate ``w_ij * x_j`` instead.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch_geometric.nn import MessagePassing
from torch_geometric.utils import scatter

_AGGRS = ("mean", "sum", "max", "max_relative")


def _weights(edge_index: Tensor, edge_weight: Tensor | None, dtype: torch.dtype) -> Tensor | None:
    """Check ``edge_weight``; ``None`` means every weight is 1 (and skips the multiply)."""
    if edge_weight is None:
        return None
    if edge_weight.dim() != 1 or edge_weight.numel() != edge_index.shape[1]:
        raise ValueError(
            f"edge_weight must have shape [E] = [{edge_index.shape[1]}], got {tuple(edge_weight.shape)}"
        )
    return edge_weight.to(dtype)


def _weighted(x_j: Tensor, w: Tensor | None) -> Tensor:
    return x_j if w is None else w.unsqueeze(-1) * x_j


def group_ranks(index: Tensor, num_groups: int) -> tuple[Tensor, Tensor]:
    """For a sorted ``index [E]`` (e.g. the target of each edge, grouped), each entry's position
    within its group and the size of every group: ``(rank [E], counts [num_groups])``."""
    counts = torch.bincount(index, minlength=num_groups)
    rank = torch.arange(index.numel(), device=index.device) - (torch.cumsum(counts, 0) - counts)[index]
    return rank, counts


def neighbour_table(edge_index: Tensor, edge_weight: Tensor | None,
                    num_nodes: int) -> tuple[Tensor, Tensor | None]:
    """Each node's incoming edges as a padded table: ``(src [num_nodes, K], weight [num_nodes, K] or None)``.

    Row ``i`` lists the sources of the edges ``j -> i`` (``K`` = the largest in-degree, at
    least 1); the padding points at node ``i`` itself, with weight 0. The weights are
    ``edge_weight``'s and carry its gradient; ``None`` when ``edge_weight`` is ``None``.
    """
    src, dst = edge_index[0], edge_index[1]
    order = torch.argsort(dst, stable=True)
    src, dst = src[order], dst[order]
    slot, counts = group_ranks(dst, num_nodes)
    width = max(int(counts.max()) if src.numel() else 0, 1)
    table = torch.arange(num_nodes, device=src.device).unsqueeze(1).repeat(1, width)
    table[dst, slot] = src
    if edge_weight is None:
        return table, None
    weights = edge_weight.new_zeros(num_nodes, width).index_put((dst, slot), edge_weight[order])
    return table, weights


def dense_adjacency(edge_index: Tensor, edge_weight: Tensor | None, num_graphs: int, nodes_per_graph: int,
                    dtype: torch.dtype = torch.float32) -> Tensor:
    """The ``[B, n, n]`` weighted adjacency of ``B`` graphs of ``n`` nodes each (nodes numbered graph by graph).

    ``A[b, i, j]`` is the summed weight of the edges ``j -> i`` of graph ``b`` (1 per edge when
    ``edge_weight`` is ``None``); it is differentiable with respect to ``edge_weight``. Every
    edge must join two nodes of the same graph.
    """
    n = nodes_per_graph
    src, dst = edge_index[0], edge_index[1]
    flat = (dst // n) * (n * n) + (dst % n) * n + (src % n)
    w = edge_weight.to(dtype) if edge_weight is not None else torch.ones(flat.numel(), dtype=dtype, device=flat.device)
    adj = torch.zeros(num_graphs * n * n, dtype=dtype, device=flat.device).index_add(0, flat, w)
    return adj.view(num_graphs, n, n)


class WeightedSAGEConv(MessagePassing):
    r"""GraphSAGE with weighted neighbour aggregation.

    .. math::
        \mathbf{x}'_i = \mathbf{W}_1 \mathbf{x}_i + \mathbf{W}_2 \cdot
        \frac{\sum_{j \in \mathcal{N}(i)} w_{ji} \mathbf{x}_j}{\sum_{j} w_{ji}}

    (``aggr="mean"``; ``"sum"`` drops the denominator, ``"max"`` takes the
    element-wise maximum of ``w_ji * x_j``). With all weights 1 it equals PyG's
    ``SAGEConv``. ``"max_relative"`` aggregates what the neighbours have *more* of than the
    node itself, ``max(0, max_j w_ji (x_j - x_i))`` element-wise — Vision GNN's max-relative
    graph convolution (the 0 stands for the node itself, which ViG's KNN graphs include).

    Args:
        in_channels (int): Input features per node.
        out_channels (int): Output features per node.
        aggr (str, optional): ``"mean"``, ``"sum"``, ``"max"`` or ``"max_relative"``. (default: ``"mean"``)
        root_weight (bool, optional): Add the transformed root node features. (default: ``True``)
        bias (bool, optional): Learn an additive bias. (default: ``True``)

    Shapes:
        - **input:** node features ``[N, in_channels]``, edge_index ``[2, E]``
          (row 0 = source/neighbour, row 1 = target), edge_weight ``[E]`` (optional)
        - **output:** ``[N, out_channels]``
    """

    def __init__(self, in_channels: int, out_channels: int, aggr: str = "mean", root_weight: bool = True,
                 bias: bool = True) -> None:
        if aggr not in _AGGRS:
            raise ValueError(f"aggr must be one of {', '.join(_AGGRS)}, got {aggr!r}")
        super().__init__(aggr="max" if aggr == "max" else "sum")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.mode = aggr
        self.lin_l = nn.Linear(in_channels, out_channels, bias=bias)
        self.lin_r = nn.Linear(in_channels, out_channels, bias=False) if root_weight else None

    def forward(self, x: Tensor, edge_index: Tensor, edge_weight: Tensor | None = None) -> Tensor:
        w = _weights(edge_index, edge_weight, x.dtype)
        if self.mode == "max_relative":
            table, tw = neighbour_table(edge_index, w, x.shape[0])
            return self._combine(max_relative(x, table, tw), x)
        out = self.propagate(edge_index, x=x, w=w)
        if self.mode == "mean":
            ones = torch.ones(edge_index.shape[1], dtype=x.dtype, device=x.device) if w is None else w
            denom = scatter(ones, edge_index[1], dim=0, dim_size=x.shape[0], reduce="sum")
            out = out / denom.clamp_min(1e-6).unsqueeze(-1)
        return self._combine(out, x)

    def _combine(self, agg: Tensor, x: Tensor) -> Tensor:
        out = self.lin_l(agg)
        if self.lin_r is not None:
            out = out + self.lin_r(x)
        return out

    def forward_dense(self, x: Tensor, adj: Tensor) -> Tensor:
        """The same layer on ``B`` graphs of ``n`` nodes: ``x [B*n, F]``, ``adj [B, n, n]`` from
        :func:`dense_adjacency` (``"mean"`` or ``"sum"`` only). One batched matrix product
        replaces gather / multiply / scatter over the edges: several times faster on small,
        dense KNN graphs such as ``dyn_knn``'s, with the same result."""
        if self.mode not in ("mean", "sum"):
            raise ValueError("forward_dense supports aggr='mean' and 'sum' only")
        b, n, _ = adj.shape
        if self.mode == "mean":
            adj = adj / adj.sum(-1, keepdim=True).clamp_min(1e-6)
        out = torch.bmm(adj.to(x.dtype), x.view(b, n, -1)).reshape(b * n, -1)
        return self._combine(out, x)

    def message(self, x_j: Tensor, w: Tensor | None) -> Tensor:
        return _weighted(x_j, w)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.in_channels}, {self.out_channels}, aggr={self.mode})"


def max_relative(x: Tensor, table: Tensor, weight: Tensor | None = None) -> Tensor:
    """``max(0, max_k weight[i, k] * (x[table[i, k]] - x[i]))`` per node and feature: ``[N, F]``.

    ``table`` / ``weight`` ``[N, K]`` as from :func:`neighbour_table` (``weight=None``: all 1).
    The maxima are found without autograd; only the ``[N, F]`` winners are recomputed with
    it, so the gradient reaches ``x`` and ``weight`` through the neighbour of each maximum
    (where the 0 wins, nothing). Weights of exactly 0 and 1 (dyn_knn's straight-through
    mask) take a faster search in which a weight-0 edge is absent.
    """
    with torch.no_grad():  # ``max`` gives the indices with the values (``argmax`` over dim 1 is ~10x slower on CPU)
        if weight is None or bool(((weight == 0) | (weight == 1)).all()):
            # A weight-0 slot is pointed at the node itself (x_i - x_i = 0, the clamp's value):
            # the maximum of x_j - x_i is then at the maximum of x_j, found without an [N, K, F] product.
            if weight is not None:
                table = torch.where(weight > 0, table, torch.arange(table.shape[0], device=table.device).unsqueeze(1))
            slot = x[table].max(dim=1).indices  # [N, F]
        else:
            slot = ((x[table] - x.unsqueeze(1)) * weight.unsqueeze(-1)).max(dim=1).indices
    rel = x.gather(0, table.gather(1, slot)) - x
    if weight is not None:
        rel = rel * weight.gather(1, slot)
    return rel.clamp_min(0)


class WeightedGINConv(MessagePassing):
    r"""GIN with weighted sum aggregation: :math:`\mathbf{x}'_i = h_\Theta((1+\epsilon)\mathbf{x}_i + \sum_j w_{ji}\mathbf{x}_j)`.

    Args:
        mlp (nn.Module): The network :math:`h_\Theta`.
        eps (float, optional): Initial :math:`\epsilon`. (default: ``0.0``)
        train_eps (bool, optional): Learn :math:`\epsilon`. (default: ``True``)

    Shapes:
        - **input:** ``[N, F]``, edge_index ``[2, E]``, edge_weight ``[E]`` (optional)
        - **output:** ``[N, F_out]``
    """

    def __init__(self, mlp: nn.Module, eps: float = 0.0, train_eps: bool = True) -> None:
        super().__init__(aggr="sum")
        self.mlp = mlp
        self.eps = nn.Parameter(torch.tensor([float(eps)])) if train_eps else None
        if self.eps is None:
            self.register_buffer("eps_fixed", torch.tensor([float(eps)]))

    def forward(self, x: Tensor, edge_index: Tensor, edge_weight: Tensor | None = None) -> Tensor:
        w = _weights(edge_index, edge_weight, x.dtype)
        eps = self.eps if self.eps is not None else self.eps_fixed
        return self.mlp((1 + eps) * x + self.propagate(edge_index, x=x, w=w))

    def message(self, x_j: Tensor, w: Tensor | None) -> Tensor:
        return _weighted(x_j, w)
