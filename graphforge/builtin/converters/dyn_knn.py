"""``dyn_knn``: images -> per-image KNN graphs with a learned k for each image.

The module runs inside the model's forward pass:

1. **Encoder block** — ``conv3x3 -> BatchNorm -> ReLU`` blocks, each followed by
   2x2 max-pooling (at most twice) while the map stays at least ``min_side`` wide (28x28 -> 7x7,
   8x8 -> 4x4, 32x32 -> 8x8).
2. **KNN block** — every position of the feature map becomes a node (its channels,
   plus its normalised (row, col) coordinates when ``pos_encoding``); a small head
   on the pooled map predicts a continuous ``k`` in ``[k_min, k_max]`` per image.
3. The graph is built with :func:`graphforge.ops.dense_batched_knn`, one k per image.

**How the k head learns from the classification loss.** In training the
neighbours are selected once at ``k_max`` and each edge of rank ``r`` (0 = nearest)
gets the weight ``sigmoid((k - r - 0.5) / tau)``. The forward pass uses the hard
mask ``r < round(k)`` (exactly the graph used at inference) and the backward pass
the gradient of the soft mask (straight-through estimator), so the loss moves k
up when further neighbours would help and down when they hurt. In eval mode
the graph is built directly with the per-image ``round(k)``. An optional
``k_penalty`` adds ``k_penalty * mean(k / k_max)`` to the loss.

With ``k_per="node"`` the head runs on every node's channels instead of the pooled map and
each node keeps its own ``round(k)`` nearest (the same straight-through mask, per node); an
image's ``k`` is then the mean of its nodes' (rounded), and a node's own k is its in-degree.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch_geometric.data import Batch

from graphforge.checks import check_float, check_int, holdout_size
from graphforge.core.converter import Converter
from graphforge.core.data import DataSplits, InputSpec
from graphforge.errors import ConfigError
from graphforge.neighbors.metrics import get_metric, list_metrics
from graphforge.nn.grapher import MapGraphBlock

#: The metrics the native op has kernels for (canonical names; aliases work too).
_METRICS = tuple(m.name for m in list_metrics() if m.op_name)


#: At most this many encoder blocks pool: extra blocks deepen the encoder at the same node
#: grid (28x28 -> 7x7 and 32x32 -> 8x8 with two or three blocks).
MAX_POOLS = 2


def _encoder_plan(height: int, width: int, n_blocks: int, min_side: int) -> tuple[list[bool], tuple[int, int]]:
    """Which blocks pool, and the final map size."""
    pools = []
    for _ in range(n_blocks):
        pool = height // 2 >= min_side and width // 2 >= min_side and sum(pools) < MAX_POOLS
        pools.append(pool)
        if pool:
            height, width = height // 2, width // 2
    return pools, (height, width)


def _per_block(convs_per_block: int | Sequence[int], n_blocks: int) -> list[int]:
    if isinstance(convs_per_block, int):
        return [convs_per_block] * n_blocks
    return list(convs_per_block)


class Encoder(nn.Module):
    """``[conv3x3 -> BN -> ReLU] x convs_per_block (-> maxpool 2x2)`` blocks.

    Args:
        in_channels: Image channels.
        channels: Output channels of each block.
        pools: Whether each block ends with 2x2 max-pooling.
        convs_per_block: Convolutions in each block (one number for all, or one per block).
        stage_k: When > 0, a :class:`~graphforge.nn.grapher.MapGraphBlock` with this k runs on the map
            before the last pooling (14 x 14 positions of a 28 x 28 image).
        metric: KNN metric of that block.
    """

    def __init__(self, in_channels: int, channels: Sequence[int], pools: Sequence[bool],
                 convs_per_block: int | Sequence[int] = 1, stage_k: int = 0, metric: str = "euclidean") -> None:
        super().__init__()
        layers: list[nn.Module] = []
        prev = in_channels
        per_block = _per_block(convs_per_block, len(channels))
        last_pool = max((i for i, pool in enumerate(pools) if pool), default=None)
        for i, (ch, pool, n_convs) in enumerate(zip(channels, pools, per_block)):
            for _ in range(n_convs):
                layers += [nn.Conv2d(prev, ch, 3, padding=1, bias=False), nn.BatchNorm2d(ch), nn.ReLU(inplace=True)]
                prev = ch
            if stage_k and i == last_pool:
                layers.append(MapGraphBlock(ch, stage_k, metric))
            if pool:
                layers.append(nn.MaxPool2d(2))
            prev = ch
        self.blocks = nn.Sequential(*layers)
        self.blocks.to(memory_format=torch.channels_last)

    def forward(self, x: Tensor) -> Tensor:
        # channels-last (NHWC) runs oneDNN's fast kernels: about 1.9x faster forward + backward
        # of a [32, 64, 128] x 2 encoder on one CPU thread; the maps' values are the same.
        return self.blocks(x.contiguous(memory_format=torch.channels_last))


class DynamicKNNGraph(nn.Module):
    """The learnable image -> graph module of :class:`DynKNN`.

    Shapes:
        input ``[B, C, H, W]``; output a PyG ``Batch`` of B graphs with ``x [B*N, F]``,
        ``edge_index [2, E]``, ``batch [B*N]``, ``k [B]`` (the k used for each image) and,
        when training a learned k, ``edge_weight [E]`` (otherwise every edge weighs 1), and
        ``nodes_per_graph`` (N: every graph has the same nodes, which lets ``sage`` aggregate
        with one batched matrix product). With ``k_per="node"``, ``k`` is each image's mean node k
        (rounded) and each node has its own k neighbours.
    """

    def __init__(self, spec: InputSpec, channels: Sequence[int], k_min: int, k_max: int, k: int, learn_k: bool,
                 pos_encoding: bool, metric: str, tau: float, k_penalty: float, min_side: int,
                 convs_per_block: int | Sequence[int] = 1, k_input: str = "mean", pos_embed: bool = False,
                 dynamic: bool = False, stage_k: int = 0, k_per: str = "image", k_holdout: float = 0.0,
                 edge_dropout: float = 0.0) -> None:
        super().__init__()
        self.dynamic = dynamic
        self.edge_dropout = edge_dropout
        self.k_holdout = k_holdout
        self.graphforge_holdout_pass = False  # set by the task while a held-out batch runs
        self.k_per = k_per
        c, h, w = spec.shape
        pools, (fh, fw) = _encoder_plan(h, w, len(channels), min_side)
        self.num_nodes = fh * fw
        self.encoder = Encoder(c, channels, pools, convs_per_block, stage_k, metric)
        self.k_min, self.k_max, self.k = k_min, min(k_max, self.num_nodes - 1), min(k, self.num_nodes - 1)
        self.learn_k = learn_k
        self.metric = metric
        self.tau = tau
        self.k_penalty = k_penalty
        self.pos_encoding = pos_encoding
        rows = torch.linspace(-1, 1, fh).repeat_interleave(fw)
        cols = torch.linspace(-1, 1, fw).repeat(fh)
        self.register_buffer("pos", torch.stack([rows, cols], dim=-1), persistent=False)
        last = channels[-1]
        self.k_input = k_input
        # ViG-style learnable absolute position embedding, added to every node's channels
        # (before the KNN search, so it shapes the graph too).
        self.pos_embed = nn.Parameter(torch.randn(1, self.num_nodes, last) * 0.02) if pos_embed else None
        head_in = last * (2 if k_input == "mean+max" else 1)
        self.k_head = nn.Sequential(nn.Linear(head_in, 32), nn.ReLU(), nn.Linear(32, 1)) if learn_k else None
        self._aux: Tensor | None = None
        self._k_counts: Counter[int] = Counter()
        self._k_sum = 0.0
        self._k_n = 0
        self._eval_k: list[Tensor] = []
        self._eval_node_k: list[Tensor] = []

    def predict_k(self, fmap: Tensor) -> tuple[Tensor, Tensor]:
        """Return ``(k_continuous, k_hard)`` for a feature map: ``[B]``, or ``[B, N]`` per node."""
        b = fmap.shape[0]
        if self.k_head is None:
            k = torch.full((b,), float(self.k), device=fmap.device)
            return k, k.long()
        if self.k_per == "node":
            summary = fmap.flatten(2).transpose(1, 2)  # [B, N, C]: each node's own channels
        else:
            summary = fmap.mean(dim=(2, 3))
        if self.k_input == "mean+max":
            summary = torch.cat([summary, fmap.amax(dim=(2, 3))], dim=-1)
        s = torch.sigmoid(self.k_head(summary).squeeze(-1).float())
        k_cont = self.k_min + (self.k_max - self.k_min) * s
        return k_cont, k_cont.detach().round().clamp(self.k_min, self.k_max).long()

    def _graph(self, nodes: Tensor, k_cont: Tensor, k_hard: Tensor) -> tuple[Tensor, Tensor | None]:
        """The KNN graphs of ``nodes [B, N, F]`` (see :meth:`_knn`); in training with
        ``edge_dropout``, each edge but a node's nearest is also zeroed with that probability.

        The nearest stays so that no node loses every neighbour: a mean over no weight
        would divide by (nearly) zero, and the k head's gradient through it explode.
        """
        edge_index, weight = self._knn(nodes, k_cont, k_hard)
        if self.training and self.edge_dropout:
            from graphforge.nn.conv import group_ranks

            rank, _ = group_ranks(edge_index[1], nodes.shape[0] * nodes.shape[1])  # nearest first
            drop = torch.rand(edge_index.shape[1], device=edge_index.device) < self.edge_dropout
            keep = (~drop | (rank == 0)).to(nodes.dtype)
            weight = keep if weight is None else weight * keep
        return edge_index, weight

    def _knn(self, nodes: Tensor, k_cont: Tensor, k_hard: Tensor) -> tuple[Tensor, Tensor | None]:
        """The KNN graphs of ``nodes [B, N, F]``: ``(edge_index, edge_weight or None)``.

        Training a learned k: every node's ``k_max`` nearest, weighted by the straight-through
        rank mask; otherwise each image's (or node's, ``k [B, N]``) own ``round(k)`` nearest, unweighted.
        """
        from graphforge.nn.conv import group_ranks
        from graphforge.ops import dense_batched_knn

        b, n, _ = nodes.shape
        per_node = k_hard.dim() == 2
        if not (self.training and self.learn_k):
            if not per_node:
                edge_index, _ = dense_batched_knn(nodes.detach(), k_hard, metric=self.metric)
                return edge_index, None  # every kept edge has weight 1; layers then skip the multiply
            # One search per image at its largest node k, then each node keeps its own k nearest.
            edge_index, _ = dense_batched_knn(nodes.detach(), k_hard.amax(1), metric=self.metric)
            rank, _ = group_ranks(edge_index[1], b * n)
            return edge_index[:, rank < k_hard.reshape(-1)[edge_index[1]]], None
        edge_index, _ = dense_batched_knn(nodes.detach(), self.k_max, metric=self.metric)
        query = edge_index[1]
        rank, _ = group_ranks(query, b * n)  # the op lists each query's neighbours nearest first
        owner = query if per_node else query // n  # whose k decides each edge
        k_soft, k_kept = k_cont.reshape(-1)[owner], k_hard.reshape(-1)[owner]
        soft = torch.sigmoid((k_soft - rank.to(k_soft.dtype) - 0.5) / self.tau)
        hard = (rank < k_kept).to(soft.dtype)
        return edge_index, hard + soft - soft.detach()

    def _regraph(self, k_cont: Tensor, k_hard: Tensor, h: Tensor) -> tuple[Tensor, Tensor | None]:
        """``dynamic``: the same images' graphs rebuilt from a layer's node features ``h [B*N, F]``."""
        return self._graph(h.view(k_hard.shape[0], self.num_nodes, -1), k_cont, k_hard)

    def forward(self, x: Tensor) -> Batch:
        fmap = self.encoder(x)
        b, c, h, w = fmap.shape
        nodes = fmap.flatten(2).transpose(1, 2)  # [B, N, C]
        if self.pos_embed is not None:
            nodes = nodes + self.pos_embed.to(nodes.dtype)
        if self.pos_encoding:
            nodes = torch.cat([nodes, self.pos.to(nodes.dtype).expand(b, -1, -1)], dim=-1)
        k_cont, k_hard = self.predict_k(fmap)
        graph_k = (k_cont, k_hard)  # per image, or per node: what every (re)built graph uses
        n = h * w
        edge_index, weight = self._graph(nodes, k_cont, k_hard)
        node_k = k_hard if k_hard.dim() == 2 else None
        if node_k is not None:  # an image's k: the mean of its nodes'
            k_cont, k_hard = k_cont.mean(1), node_k.float().mean(1).round().long()
        if self.training:
            if not self.graphforge_holdout_pass:  # the epoch's k counts the training images only
                self._k_counts.update(k_hard.tolist())
                self._k_sum += float(k_cont.detach().sum())
                self._k_n += b
        else:
            self._eval_k.append(k_hard.detach().cpu())
            if node_k is not None:
                self._eval_node_k.append(node_k.detach().reshape(-1).cpu())
        self._aux = self.k_penalty * (k_cont / self.k_max).mean() if (self.k_penalty and self.learn_k) else None
        batch = torch.arange(b, device=x.device).repeat_interleave(n)
        ptr = torch.arange(b + 1, device=x.device) * n
        out = Batch(x=nodes.reshape(b * n, -1), edge_index=edge_index, edge_weight=weight, batch=batch, ptr=ptr,
                    k=k_hard, nodes_per_graph=n)
        if self.dynamic:
            # Models that honour ``regraph`` (the graphforge GNNs) rebuild every image's graph,
            # with the same k, from each layer's node features (a dynamic graph, as in DGCNN / ViG).
            out.regraph = functools.partial(self._regraph, *graph_k)
        return out

    def graphforge_holdout(self) -> tuple[float, list[nn.Parameter]] | None:
        """With ``k_holdout`` > 0: the k head learns from that share of the training split, held out."""
        if not self.k_holdout or self.k_head is None:
            return None
        return self.k_holdout, list(self.k_head.parameters())

    def graphforge_aux_loss(self) -> Tensor | None:
        """The optional penalty on the expected k (see :class:`DynKNN`)."""
        aux, self._aux = self._aux, None
        return aux

    def graphforge_split_metrics(self) -> dict[str, Any]:
        """The k of every image predicted since the last call: histogram, mean and std (and, with
        ``k_per="node"``, ``node_k_std``: the spread of the nodes' own k)."""
        ks, self._eval_k = self._eval_k, []
        node_ks, self._eval_node_k = self._eval_node_k, []
        if not ks:
            return {}
        k = torch.cat(ks).double()
        counts = torch.bincount(k.long(), minlength=self.k_max + 1)
        out = {
            "mean_k": float(k.mean()),
            "k_std": float(k.std(unbiased=False)),
            "k_hist": {str(v): int(counts[v]) for v in range(self.k_min if self.learn_k else self.k, self.k_max + 1)
                       if counts[v] or self.learn_k},
        }
        if node_ks:
            out["node_k_std"] = float(torch.cat(node_ks).double().std(unbiased=False))
        return out

    def graphforge_epoch_metrics(self) -> dict[str, Any]:
        """Mean k and the histogram of predicted k over the epoch's training images."""
        if not self._k_n:
            return {}
        out = {
            "mean_k": self._k_sum / self._k_n,
            "k_hist": {str(k): self._k_counts.get(k, 0) for k in range(self.k_min, self.k_max + 1)},
        }
        self._k_counts, self._k_sum, self._k_n = Counter(), 0.0, 0
        return out


#: The fixed k of ``learn_k=False`` when no ``k`` is given.
FIXED_K = 8


class DynKNN(Converter):
    """Images -> KNN graph of the CNN feature map, with a learned k for each image.

    Args:
        channels (list of int, optional): Output channels of the encoder blocks. (default: ``[32, 64, 128]``)
        k_min (int, optional): Smallest k the head may predict. (default: ``2``)
        k_max (int, optional): Largest k (clamped to the number of nodes - 1). (default: ``16``)
        k (int, optional): The fixed k when ``learn_k=False``; refused with a learned k, which
            ranges over ``k_min .. k_max``. (default: ``8`` with ``learn_k=False``)
        learn_k (bool, optional): Learn each image's k; ``False`` gives fixed-k graphs. (default: ``True``)
        pos_encoding (bool, optional): Append normalised (row, col) to each node. (default: ``True``)
        pos_embed (bool, optional): Add a learnable embedding of each map position to its node's
            channels (ViG's absolute position embedding), before the KNN search. (default: ``False``)
        metric (str, optional): Node distance of the KNN graph: ``euclidean`` (``l2``), ``cosine``,
            ``cityblock`` (``l1``), ``linf`` or ``ip``. (default: ``"euclidean"``)
        tau (float, optional): Temperature of the soft rank mask. (default: ``1.0``)
        k_penalty (float, optional): Weight of the penalty on the expected k. (default: ``0.0``)
        min_side (int, optional): Stop pooling when the map would get narrower than this. (default: ``4``)
        convs_per_block (int or list of int, optional): ``conv3x3 -> BN -> ReLU`` layers in each encoder
            block: one number for every block, or one per block (e.g. ``[1, 1, 2]``). (default: ``1``)
        k_input (str, optional): What the k head sees: ``mean`` (the globally mean-pooled map) or
            ``mean+max`` (mean- and max-pooled, concatenated). (default: ``"mean"``)
        k_per (str, optional): ``image`` (one learned k per image) or ``node`` (the head runs on
            every node's channels and each node keeps its own k nearest; an image's reported k is
            its nodes' mean). Needs ``learn_k`` and ``k_input="mean"``. (default: ``"image"``)
        dynamic (bool, optional): Rebuild each image's KNN graph, with the same k, from the node
            features of every GNN layer (a dynamic graph, as in DGCNN and ViG) instead of building
            it once from the encoder's map. The graphforge GNNs honour it. (default: ``False``)
        stage_k (int, optional): When > 0, a residual KNN-graph block with this k also runs inside
            the encoder, on the map before its last pooling (14 x 14 nodes on 28 x 28 images; see
            :class:`graphforge.nn.grapher.MapGraphBlock`). ``0``: none. (default: ``0``)
        k_holdout (float, optional): When > 0, this share of the training split is held out and
            the k head learns only from the loss on it (a validation-loss signal), while the rest
            of the network trains on the other images. Needs ``learn_k``; ``0``: the k head
            learns from the training loss like the rest. (default: ``0.0``)
        edge_dropout (float, optional): In training, each edge of every graph but a node's
            nearest is dropped with this probability (DropEdge: a node then averages a random
            subset of its neighbours); the evaluation graphs keep every edge. (default: ``0.0``:
            on Fashion-MNIST 10k, 0.3 adds 0.3 points of validation accuracy to
            ``convs_per_block=2`` with one ``sage`` layer and label smoothing, which leaves it
            level with ``cnn``; on the default flagship it is level)
    """

    name = "dyn_knn"
    level = "sample"
    inputs = frozenset({"images"})

    @classmethod
    def upgrade_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        """Options recorded by a checkpoint of an earlier version, as this one reads them: those
        versions recorded ``k=8`` with a learned k too, where it was never used."""
        if options.get("learn_k", True) is True:
            options.pop("k", None)
        return options

    def __init__(self, channels: Sequence[int] = (32, 64, 128), k_min: int = 2, k_max: int = 16, k: int | None = None,
                 learn_k: bool = True, pos_encoding: bool = True, pos_embed: bool = False, metric: str = "euclidean",
                 tau: float = 1.0, k_penalty: float = 0.0, min_side: int = 4,
                 convs_per_block: int | Sequence[int] = 1, k_input: str = "mean", dynamic: bool = False,
                 stage_k: int = 0, k_per: str = "image", k_holdout: float = 0.0,
                 edge_dropout: float = 0.0) -> None:
        channels = [channels] if isinstance(channels, int) else list(channels)
        if not channels or any(isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in channels):
            raise ValueError(f"channels must be a list of positive integers, got {channels!r}")
        if k is not None and learn_k is True:
            raise ValueError(f"k={k!r} is the fixed k of learn_k=false; a learned k ranges over k_min..k_max "
                             f"({k_min}..{k_max}): set those, or -o learn_k=false -o k={k!r}")
        k = FIXED_K if k is None and not learn_k else k  # None with a learned k: it has no fixed k
        per_block = convs_per_block if isinstance(convs_per_block, (list, tuple)) else [convs_per_block]
        if isinstance(convs_per_block, (list, tuple)) and len(per_block) != len(channels):
            raise ValueError(f"convs_per_block needs one entry per block ({len(channels)}), got {convs_per_block!r}")
        fixed_k = (("k", k),) if k is not None else ()
        for name, value in (("k_min", k_min), ("k_max", k_max), *fixed_k, ("min_side", min_side),
                            *(("convs_per_block", v) for v in per_block)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        self.stage_k = check_int(stage_k, "stage_k", minimum=0)
        if k_min > k_max:
            raise ValueError(f"k_min ({k_min}) must not exceed k_max ({k_max})")
        metric = get_metric(metric, _METRICS, user="dyn_knn (the native batched_knn op)").name
        tau = check_float(tau, "tau", minimum=0.0, exclusive_minimum=True)
        k_penalty = check_float(k_penalty, "k_penalty", minimum=0.0)
        if k_input not in ("mean", "mean+max"):
            raise ValueError(f"k_input must be mean or mean+max, got {k_input!r}")
        if not all(isinstance(v, bool) for v in (learn_k, pos_encoding, pos_embed, dynamic)):
            raise ValueError("learn_k, pos_encoding, pos_embed and dynamic must be true or false")
        if k_per not in ("image", "node"):
            raise ValueError(f"k_per must be image or node, got {k_per!r}")
        if k_per == "node" and not learn_k:
            raise ValueError("k_per=node needs learn_k=true (a fixed k is the same for every node)")
        if k_per == "node" and k_input != "mean":
            raise ValueError("k_input applies to k_per=image (with k_per=node the head sees each node's channels)")
        k_holdout = check_float(k_holdout, "k_holdout", minimum=0.0, maximum=0.5)
        if k_holdout and not learn_k:
            raise ValueError("k_holdout needs learn_k=true (a fixed k has no head to train)")
        self.k_holdout = float(k_holdout)
        self.edge_dropout = float(check_float(edge_dropout, "edge_dropout", minimum=0.0, maximum=1.0,
                                              exclusive_maximum=True))
        self.k_per = k_per
        self.dynamic = dynamic
        self.pos_embed = pos_embed
        self.channels = channels
        self.k_min, self.k_max, self.k = k_min, k_max, k
        self.learn_k = learn_k
        self.pos_encoding = pos_encoding
        self.metric = metric
        self.tau = float(tau)
        self.k_penalty = float(k_penalty)
        self.min_side = min_side
        self.convs_per_block = list(convs_per_block) if isinstance(convs_per_block, (list, tuple)) else convs_per_block
        self.k_input = k_input

    def _num_nodes(self, spec: InputSpec) -> int:
        _, h, w = spec.shape
        _, (fh, fw) = _encoder_plan(h, w, len(self.channels), self.min_side)
        return fh * fw

    def check_input(self, spec: InputSpec) -> None:
        """Images only, and large enough to give more than ``k_min`` nodes."""
        super().check_input(spec)
        n = self._num_nodes(spec)
        needed = (self.k_min if self.learn_k else self.k) + 1
        if n < max(needed, 2):
            raise ConfigError(
                f"dyn_knn: images of {spec.shape[1]}x{spec.shape[2]} give only {n} graph nodes after the encoder, "
                f"but k={needed - 1} needs at least {needed}; use larger images or a smaller k_min / k"
            )

    def check_data(self, data: DataSplits) -> None:
        """With ``k_holdout``: refuse a training split too small to hold out a share of."""
        if self.k_holdout:
            holdout_size(len(data.train), self.k_holdout, "training images (dyn_knn's k_holdout)")

    def output_spec(self, spec: InputSpec) -> InputSpec:
        """Graphs whose nodes carry the last block's channels (+ 2 coordinates)."""
        return InputSpec("graphs", (self.channels[-1] + (2 if self.pos_encoding else 0),))

    def build(self, spec: InputSpec) -> nn.Module:
        """Return the :class:`DynamicKNNGraph` module for images of ``spec``."""
        self.check_input(spec)
        return DynamicKNNGraph(spec, self.channels, self.k_min, self.k_max, FIXED_K if self.k is None else self.k,
                               self.learn_k, self.pos_encoding,
                               self.metric, self.tau, self.k_penalty, self.min_side, self.convs_per_block, self.k_input,
                               self.pos_embed, self.dynamic, self.stage_k, self.k_per, self.k_holdout,
                               self.edge_dropout)

    def write_plots(self, history: list[dict[str, Any]], plot_dir: Path) -> list[Path]:
        """Plot the distribution of predicted k over the epochs (``k_distribution.png``)."""
        from graphforge.engine.plots import plot_k_distribution

        rows = [h for h in history if "k_hist" in h]
        if not rows:
            return []
        return [plot_k_distribution(rows, plot_dir / "k_distribution.png")]
