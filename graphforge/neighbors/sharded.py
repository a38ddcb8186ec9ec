"""Dataset-scale neighbour search sharded across the ranks of ``torch.distributed``.

The rows are split into contiguous shards, one per rank (:func:`shard_bounds`); each rank
holds only its shard. Every rank's rows are the queries of the rank that holds them. For
each block of queries, its owner broadcasts the block, every rank searches its own shard
(an exact :class:`~graphforge.neighbors.KNNIndex`: fp32 candidates, float64 re-ranking),
the candidates are gathered at the owner, and the owner merges them by ``(distance, row)``.
Every distance is the same float64 value a single-process search computes for that pair
and ties go to the lower row in both, so the merged lists **equal the single-process
search exactly**. No rank ever holds more than its shard, one query block and the results
of its own rows: memory O(N/P * D + E/P).

:func:`sharded_similarity_graph` builds a similarity graph this way: each rank ends with the
edges whose target is one of its rows (symmetric and mutual kNN graphs exchange reverse
edges with their owners). ``gloo`` (CPU) and ``nccl`` (GPU) both work; with no process
group (or one rank) it runs the single-process search.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from graphforge.checks import check_int
from graphforge.errors import ConfigError
from graphforge.neighbors.metrics import get_metric

__all__ = ["ShardedIndex", "shard_bounds", "sharded_similarity_graph"]

#: Queries per broadcast block.
DEFAULT_QUERY_BLOCK = 4096


def _dist() -> Any:
    import torch.distributed as dist

    return dist


def _world(group: Any) -> tuple[int, int]:
    dist = _dist()
    if not (dist.is_available() and dist.is_initialized()):
        return 0, 1
    return dist.get_rank(group), dist.get_world_size(group)


def shard_bounds(num_rows: int, world_size: int) -> list[tuple[int, int]]:
    """``[(start, stop)]`` of each rank's contiguous shard of ``num_rows`` rows (sizes differ by at most 1)."""
    base, extra = divmod(int(num_rows), int(world_size))
    bounds, start = [], 0
    for r in range(world_size):
        stop = start + base + (1 if r < extra else 0)
        bounds.append((start, stop))
        start = stop
    return bounds


def _merge(d: torch.Tensor, i: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` best of each row of candidates ``[B, C]`` by (distance, index); missing ones are ``inf`` / -1."""
    big = torch.iinfo(torch.int64).max
    key_i = torch.where(i < 0, torch.full_like(i, big), i)
    order = torch.sort(key_i, dim=1, stable=True).indices
    d, i = d.gather(1, order), i.gather(1, order)
    order = torch.sort(d, dim=1, stable=True).indices[:, :k]
    return d.gather(1, order), i.gather(1, order)


class ShardedIndex:
    """An exact kNN / range index over rows sharded across ranks (see the module docstring).

    Args:
        shard (array ``[n_r, D]``): This rank's rows: global rows ``offset .. offset + n_r - 1``.
        offset (int): The global index of the shard's first row.
        metric (str, optional): Any metric of :mod:`graphforge.neighbors.metrics`. (default: ``"euclidean"``)
        device (str, optional): Search device of this rank. (default: ``"cpu"``)
        group: The ``torch.distributed`` process group (default: the world).
    """

    def __init__(self, shard: Any, offset: int, metric: str = "euclidean", *, device: str | torch.device = "cpu",
                 group: Any = None) -> None:
        from graphforge.neighbors.search import KNNIndex

        self.metric = get_metric(metric).name
        self.offset = check_int(offset, "offset", minimum=0)
        self.group = group
        self.rank, self.world_size = _world(group)
        self.local = KNNIndex(shard, self.metric, device=device, backend="torch")
        self.dim = self.local.dim
        sizes = self._all_gather_ints([len(self.local), self.offset])
        self.shard_sizes = [s[0] for s in sizes]
        self.offsets = [s[1] for s in sizes]
        self.num_rows = sum(self.shard_sizes)
        expected = 0
        for r, (size, off) in enumerate(zip(self.shard_sizes, self.offsets)):
            if off != expected:
                raise ConfigError(f"rank {r}'s shard starts at row {off}, expected {expected}: shards must be "
                                  "contiguous and in rank order (see shard_bounds)")
            expected += size

    # --- collectives -----------------------------------------------------------------------
    def _all_gather_ints(self, values: list[int]) -> list[list[int]]:
        if self.world_size == 1:
            return [values]
        dist = _dist()
        t = torch.tensor(values, dtype=torch.long, device=self._comm_device)
        out = [torch.empty_like(t) for _ in range(self.world_size)]
        dist.all_gather(out, t, group=self.group)
        return [o.cpu().tolist() for o in out]

    @property
    def _comm_device(self) -> torch.device:
        dist = _dist()
        if self.world_size > 1 and dist.get_backend(self.group) == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")

    def _broadcast(self, t: torch.Tensor | None, shape: tuple[int, ...], dtype: torch.dtype, src: int) -> torch.Tensor:
        dist = _dist()
        buf = t.to(self._comm_device) if t is not None else torch.empty(shape, dtype=dtype, device=self._comm_device)
        dist.broadcast(buf, src=self._global_rank(src), group=self.group)
        return buf.cpu()

    def _global_rank(self, rank: int) -> int:
        dist = _dist()
        return rank if self.group is None else dist.get_global_rank(self.group, rank)

    # --- kNN -------------------------------------------------------------------------------
    def search(self, queries: Any, k: int, *, block: int = DEFAULT_QUERY_BLOCK) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``k`` nearest rows (over every shard) of this rank's ``queries``.

        Every rank must call it (with its own queries, possibly none). Returns float64
        distances and int64 **global** row indices ``[m, k]``, sorted by (distance, row).
        """
        from graphforge.neighbors.arrays import as_float_matrix

        k = check_int(k, "k", minimum=1)  # type: ignore[assignment]
        if k > self.num_rows:
            raise ConfigError(f"k={k} is larger than the database ({self.num_rows} rows); use k <= {self.num_rows}")
        mine = as_float_matrix(queries, "queries")
        if self.world_size == 1:
            d, i = self.local.search(mine, k)
            return d, i + self.offset
        counts = [c[0] for c in self._all_gather_ints([len(mine)])]
        out_d = torch.empty(len(mine), k, dtype=torch.float64)
        out_i = torch.empty(len(mine), k, dtype=torch.long)
        for owner, count in enumerate(counts):
            for start in range(0, count, block):
                b = min(block, count - start)
                q = self._broadcast(mine[start:start + b] if owner == self.rank else None, (b, self.dim),
                                    torch.float32, owner)
                d, i = self._local_candidates(q, k)
                gathered = self._gather_to(owner, torch.cat([d, i.double()], 1))
                if owner == self.rank:
                    cand = torch.cat(gathered, 1).view(b, self.world_size, 2, k)
                    cd = cand[:, :, 0].reshape(b, -1)
                    ci = cand[:, :, 1].reshape(b, -1).long()
                    md, mi = _merge(cd, ci, k)
                    out_d[start:start + b], out_i[start:start + b] = md, mi
        return out_d, out_i

    def _local_candidates(self, q: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """This shard's best ``min(k, n_r)`` rows for ``q``, padded to ``k`` with ``inf`` / -1."""
        n_local = len(self.local)
        d = torch.full((len(q), k), math.inf, dtype=torch.float64)
        i = torch.full((len(q), k), -1, dtype=torch.long)
        if n_local and len(q):
            kk = min(k, n_local)
            ld, li = self.local.search(q, kk)
            d[:, :kk], i[:, :kk] = ld, li + self.offset
        return d, i

    def _gather_to(self, owner: int, t: torch.Tensor) -> list[torch.Tensor]:
        dist = _dist()
        t = t.contiguous().to(self._comm_device)
        if dist.get_backend(self.group) == "nccl":  # NCCL has no gather: all-gather instead
            out = [torch.empty_like(t) for _ in range(self.world_size)]
            dist.all_gather(out, t, group=self.group)
            return [o.cpu() for o in out]
        out = [torch.empty_like(t) for _ in range(self.world_size)] if owner == self.rank else None
        dist.gather(t, gather_list=out, dst=self._global_rank(owner), group=self.group)
        return [o.cpu() for o in out] if out is not None else []

    # --- range -----------------------------------------------------------------------------
    def range_search(self, queries: Any, radius: float, *, block: int = DEFAULT_QUERY_BLOCK
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Every row (over every shard) within ``radius`` of this rank's ``queries``.

        Returns ``(query, global row, distance)`` ``[P]``, sorted by query then row (the
        query index is local to this rank's ``queries``).
        """
        from graphforge.neighbors.arrays import as_float_matrix

        mine = as_float_matrix(queries, "queries")
        if self.world_size == 1:
            qi, ri, d = self.local.range_search(mine, radius)
            return qi, ri + self.offset, d
        dist = _dist()
        counts = [c[0] for c in self._all_gather_ints([len(mine)])]
        parts = []
        for owner, count in enumerate(counts):
            for start in range(0, count, block):
                b = min(block, count - start)
                q = self._broadcast(mine[start:start + b] if owner == self.rank else None, (b, self.dim),
                                    torch.float32, owner)
                qi, ri, d = self.local.range_search(q, radius) if len(self.local) else (
                    torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long),
                    torch.zeros(0, dtype=torch.float64))
                payload = (qi + start, ri + self.offset, d)
                received = [None] * self.world_size if owner == self.rank else None
                dist.gather_object(payload, received, dst=self._global_rank(owner), group=self.group)
                if received is not None:
                    parts.extend(received)
        if not parts:
            empty = torch.zeros(0, dtype=torch.long)
            return empty, empty.clone(), torch.zeros(0, dtype=torch.float64)
        qi, ri, d = (torch.cat(p) for p in zip(*parts))
        order = torch.argsort(qi * self.num_rows + ri)
        return qi[order], ri[order], d[order]


def _exchange_by_owner(src: torch.Tensor, dst: torch.Tensor, dist_: torch.Tensor, index: ShardedIndex
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Send each edge to the rank owning its target row; return the edges this rank now owns."""
    dist = _dist()
    bounds = torch.tensor(index.offsets[1:] + [index.num_rows])
    owner = torch.bucketize(dst, bounds, right=True)
    mine_src, mine_dst, mine_d = [], [], []
    for r in range(index.world_size):
        sel = owner == r
        payload = (src[sel], dst[sel], dist_[sel])
        received = [None] * index.world_size if r == index.rank else None
        dist.gather_object(payload, received, dst=index._global_rank(r), group=index.group)
        if received is not None:
            for s, t, dd in received:
                mine_src.append(s)
                mine_dst.append(t)
                mine_d.append(dd)
    return torch.cat(mine_src), torch.cat(mine_dst), torch.cat(mine_d)


def sharded_similarity_graph(shard: Any, offset: int, *, metric: str = "cosine", mode: str = "knn", k: int = 10,
                             threshold: float | None = None, symmetric: bool = True, device: str = "cpu",
                             group: Any = None, block: int = DEFAULT_QUERY_BLOCK) -> dict[str, Any]:
    """This rank's part of a similarity graph over rows sharded across ranks.

    The same edges as :func:`graphforge.similarity.similarity_graph` over all the rows
    (``weight="none"``, no self-loops), split by target: this rank returns the edges whose
    target is one of its rows.

    Returns:
        ``{"edge_index": [2, E_r] global rows (source, target), "distance": [E_r] float64,
        "score": [E_r]}`` sorted by target, then source.
    """
    from graphforge.similarity.graph import _coalesce, check_graph_options, radius_of_threshold

    name = check_graph_options(metric, mode, k, threshold, "none", "flat")
    index = ShardedIndex(shard, offset, name, device=device, group=group)
    mine = index.local.database
    n_local = len(mine)
    rows = torch.arange(offset, offset + n_local)
    if mode == "threshold":
        assert threshold is not None
        qi, ri, d = index.range_search(mine, radius_of_threshold(name, float(threshold)), block=block)
        dst = qi + offset
        keep = ri != dst
        src, dst, d = ri[keep], dst[keep], d[keep]
    else:
        if int(k) >= index.num_rows:
            raise ConfigError(f"k={k} must be smaller than the number of nodes ({index.num_rows})")
        kk = min(int(k) + 1, index.num_rows)
        dd, ii = index.search(mine, kk, block=block)
        own = ii == rows.unsqueeze(1)
        drop = own.clone()
        drop[:, -1] |= ~own.any(1)  # a duplicate row took the node's own place: drop the last instead
        dd, ii = dd[~drop].view(n_local, -1)[:, : int(k)], ii[~drop].view(n_local, -1)[:, : int(k)]
        dst = rows.repeat_interleave(ii.shape[1])
        src, d = ii.reshape(-1), dd.reshape(-1)
        if mode == "mutual" or symmetric:
            # The reverse of every edge goes to the owner of its target.
            rs, rd, rdist = _exchange_by_owner(dst, src, d, index) if index.world_size > 1 else (dst, src, d)
            if mode == "mutual":
                n = index.num_rows
                reverse = torch.sort(rd * n + rs).values
                keys = dst * n + src
                pos = torch.searchsorted(reverse, keys).clamp_max(max(len(reverse) - 1, 0))
                keep = reverse[pos] == keys if len(reverse) else torch.zeros(len(keys), dtype=torch.bool)
                src, dst, d = src[keep], dst[keep], d[keep]
            else:
                src, dst, d = torch.cat([src, rs]), torch.cat([dst, rd]), torch.cat([d, rdist])
    edge_index, d = _coalesce(src, dst, d, index.num_rows)  # the single-process graph's ordering rule
    return {"edge_index": edge_index, "distance": d, "score": get_metric(name).score(d)}
