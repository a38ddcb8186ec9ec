"""Uniform neighbour sampling for mini-batch training on one large graph.

PyG's :class:`~torch_geometric.loader.NeighborLoader` needs ``pyg-lib`` or
``torch-sparse`` for its sampling kernels. :func:`make_neighbor_loader` uses it
when one of them is installed; otherwise it drives PyG's own
:class:`~torch_geometric.loader.NodeLoader` with :class:`UniformNeighborSampler`,
a pure-PyTorch sampler with the same output conventions, so the mini-batches
look the same either way.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
import torch_geometric.typing
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.loader import NodeLoader
from torch_geometric.sampler import BaseSampler, NodeSamplerInput, SamplerOutput

from graphforge.errors import ConfigError

#: Graphs with more nodes than this train with neighbour sampling under ``num_neighbors="auto"``.
AUTO_SAMPLING_MIN_NODES = 200_000
#: Fanout per layer used by ``num_neighbors="auto"`` (trimmed or padded to the model's depth).
DEFAULT_FANOUT = (15, 10, 5)


def check_fanout(num_neighbors: Any) -> list[int]:
    """Return ``num_neighbors`` as a list of ints, or raise :class:`ConfigError`.

    Each entry is the number of neighbours sampled per node at that hop, or ``-1``
    for all of them.
    """
    if isinstance(num_neighbors, (str, bytes)) or not isinstance(num_neighbors, Sequence) or not num_neighbors:
        raise ConfigError(
            f"num_neighbors must be a non-empty list of ints (one per layer, -1 = all neighbours), got {num_neighbors!r}"
        )
    for k in num_neighbors:
        if isinstance(k, bool) or not isinstance(k, int) or k == 0 or k < -1:
            raise ConfigError(f"num_neighbors entries must be ints >= 1 or -1 (all neighbours), got {k!r} in {num_neighbors!r}")
    return list(num_neighbors)


def default_fanout(layers: int) -> list[int]:
    """:data:`DEFAULT_FANOUT` trimmed or padded (repeating its last entry) to ``layers`` hops."""
    return [DEFAULT_FANOUT[min(i, len(DEFAULT_FANOUT) - 1)] for i in range(layers)]


def _choose_offsets(degree: Tensor, k: int, generator: torch.Generator | None) -> Tensor:
    """Pick ``k`` distinct offsets in ``[0, degree)`` per row, uniformly (Floyd's algorithm).

    ``k`` vectorised steps over all rows at once; the cost does not depend on the degrees.

    Args:
        degree: Degrees ``[m]``, each larger than ``k``.
        k: Offsets per row.
        generator: Random source.

    Returns:
        ``[m, k]`` offsets.
    """
    picks = torch.empty(degree.numel(), k, dtype=torch.long)
    for i in range(k):
        j = degree - k + i
        t = (torch.rand(degree.numel(), dtype=torch.float64, generator=generator) * (j + 1)).long().clamp_(max=j)
        taken = (picks[:, :i] == t.unsqueeze(1)).any(1)
        picks[:, i] = torch.where(taken, j, t)
    return picks


class UniformNeighborSampler(BaseSampler):
    """Uniform neighbour sampling without replacement, in pure PyTorch.

    For each seed node, samples up to ``num_neighbors[0]`` of its incoming edges
    (``edge_index[0] -> edge_index[1]``), then up to ``num_neighbors[1]`` incoming
    edges of every node first reached at that hop, and so on. Each hop is one
    vectorised step over all of its nodes. The output follows PyG's
    :class:`~torch_geometric.sampler.NeighborSampler`: ``node`` holds the seeds
    first and then each hop's new nodes, ``row``/``col`` are the local source and
    target of each sampled edge, ``edge`` its index in the original
    ``edge_index`` (so :class:`~torch_geometric.loader.NodeLoader` picks edge
    attributes such as ``edge_weight``), and ``num_sampled_nodes`` /
    ``num_sampled_edges`` count them per hop.

    Args:
        data (Data): The graph (on the CPU); only ``edge_index`` and ``num_nodes`` are read.
        num_neighbors (list[int]): Neighbours per node at each hop; ``-1`` takes all.
        generator (torch.Generator, optional): Random source, for reproducible samples.
            (default: ``None``, the global generator)

    Seeds in one call must be distinct (as they are in a :class:`NodeLoader`).
    """

    def __init__(self, data: Data, num_neighbors: Sequence[int], generator: torch.Generator | None = None) -> None:
        self.num_neighbors = check_fanout(num_neighbors)
        self.generator = generator
        self.num_nodes = int(data.num_nodes)
        src, dst = data.edge_index.cpu()
        # CSC: incoming edges grouped by target; edge_id maps a CSC slot to its original edge.
        self.edge_id = torch.sort(dst, stable=True).indices
        self.row = src[self.edge_id]
        self.colptr = torch.zeros(self.num_nodes + 1, dtype=torch.long)
        self.colptr[1:] = torch.bincount(dst, minlength=self.num_nodes).cumsum(0)
        self._local = torch.full((self.num_nodes,), -1, dtype=torch.long)  # global -> local id, reset after each call

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_neighbors={self.num_neighbors})"

    def share(self, generator: torch.Generator | None) -> UniformNeighborSampler:
        """Return a sampler over the same graph and fanout, sharing this one's CSC, with its own generator."""
        other = copy.copy(self)
        other.generator = generator
        other._local = torch.full_like(self._local, -1)
        return other

    def _sample_hop(self, frontier: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor]:
        """Sample incoming edges of ``frontier``: (global source, frontier position of the target, edge id)."""
        start = self.colptr[frontier]
        degree = self.colptr[frontier + 1] - start
        count = degree if k < 0 else degree.clamp(max=k)
        target = torch.repeat_interleave(torch.arange(frontier.numel()), count)
        first = count.cumsum(0) - count
        offset = torch.arange(target.numel()) - first[target]  # 0, 1, ..., count - 1 for each target
        if k >= 0:
            busy = (degree > k).nonzero().view(-1)
            if busy.numel():
                slots = first[busy].unsqueeze(1) + torch.arange(k)
                offset[slots.view(-1)] = _choose_offsets(degree[busy], k, self.generator).view(-1)
        slot = start[target] + offset
        return self.row[slot], target, self.edge_id[slot]

    def sample_from_nodes(self, index: NodeSamplerInput, **kwargs: Any) -> SamplerOutput:
        """Sample the neighbourhood of ``index.node`` hop by hop (see the class)."""
        seeds = index.node.long()
        nodes, rows, cols, edges = [seeds], [], [], []
        num_nodes, num_edges = [seeds.numel()], []
        self._local[seeds] = torch.arange(seeds.numel())
        try:
            frontier, frontier_start, total = seeds, 0, seeds.numel()
            for k in self.num_neighbors:
                src, target, edge = self._sample_hop(frontier, k)
                new = torch.unique(src[self._local[src] < 0])
                nodes.append(new)
                self._local[new] = torch.arange(total, total + new.numel())
                rows.append(self._local[src])
                cols.append(frontier_start + target)  # a hop's nodes hold consecutive local ids
                edges.append(edge)
                num_nodes.append(new.numel())
                num_edges.append(edge.numel())
                frontier, frontier_start, total = new, total, total + new.numel()
            node = torch.cat(nodes)
        finally:
            for part in nodes:
                self._local[part] = -1
        return SamplerOutput(
            node=node,
            row=torch.cat(rows),
            col=torch.cat(cols),
            edge=torch.cat(edges),
            batch=None,
            num_sampled_nodes=num_nodes,
            num_sampled_edges=num_edges,
            metadata=(index.input_id, index.time),
        )

    def sample_from_edges(self, index: Any, neg_sampling: Any = None) -> SamplerOutput:
        """Not supported: graphforge samples around nodes only."""
        raise NotImplementedError(f"{type(self).__name__} samples from nodes only")


def pyg_sampling_available() -> bool:
    """Whether PyG's own :class:`~torch_geometric.loader.NeighborLoader` can run (pyg-lib or torch-sparse)."""
    return bool(torch_geometric.typing.WITH_PYG_LIB or torch_geometric.typing.WITH_TORCH_SPARSE)


def make_neighbor_loader(
    data: Data,
    num_neighbors: Sequence[int],
    input_nodes: Tensor | None = None,
    batch_size: int = 1,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    share_with: NodeLoader | None = None,
) -> NodeLoader:
    """Return a loader of neighbour-sampled subgraphs around ``input_nodes``.

    PyG's ``NeighborLoader`` when pyg-lib or torch-sparse is installed, else a
    ``NodeLoader`` over :class:`UniformNeighborSampler`. Each mini-batch is a
    ``Data`` whose first ``batch_size`` nodes are the seeds, with ``n_id``
    (original node ids), ``e_id`` (original edge ids), ``input_id`` and
    ``batch_size``, and every node and edge attribute of ``data`` sliced to match.

    Args:
        data (Data): The graph, on the CPU.
        num_neighbors (list[int]): Neighbours per node at each hop (``-1``: all).
        input_nodes (Tensor, optional): Seed nodes as indices or a boolean mask.
            (default: ``None``, every node)
        batch_size (int, optional): Seeds per mini-batch. (default: ``1``)
        shuffle (bool, optional): Shuffle the seeds every epoch. (default: ``False``)
        generator (torch.Generator, optional): Random source of the shuffling and
            (for the pure-PyTorch sampler) of the sampling. (default: ``None``)
        share_with (NodeLoader, optional): A loader made by this function on the same
            ``data`` and ``num_neighbors`` whose sampler (and its CSC copy of the graph)
            to reuse, e.g. an evaluation loader beside the training one. (default: ``None``)

    Raises:
        ConfigError: If ``num_neighbors`` is not a list of ints >= 1 or -1.
    """
    fanout = check_fanout(num_neighbors)
    if pyg_sampling_available():
        from torch_geometric.loader import NeighborLoader

        return NeighborLoader(data, fanout, input_nodes=input_nodes, batch_size=batch_size, shuffle=shuffle,
                              generator=generator,
                              neighbor_sampler=share_with.node_sampler if share_with is not None else None)
    if share_with is not None:
        sampler = share_with.node_sampler.share(generator)
    else:
        sampler = UniformNeighborSampler(data, fanout, generator=generator)
    return NodeLoader(data, node_sampler=sampler, input_nodes=input_nodes, batch_size=batch_size, shuffle=shuffle,
                      generator=generator)
