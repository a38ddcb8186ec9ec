"""``point_knn``: point clouds -> one KNN graph per cloud."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch_geometric.data import Batch

from graphforge import Converter, InputSpec
from graphforge.ops import dense_batched_knn


class PointKNNGraph(nn.Module):
    """``[B, P, 3]`` clouds -> a PyG ``Batch`` of B KNN graphs (nodes = points).

    Args:
        k: Neighbours per point (clamped to ``P - 1``).
        metric: Distance of the op (``l2``, ``l1``, ...).
        radial: Append each point's distance to its cloud's centroid as a feature.
    """

    def __init__(self, k: int, metric: str, radial: bool) -> None:
        super().__init__()
        self.k, self.metric, self.radial = k, metric, radial

    def forward(self, x: Tensor) -> Batch:
        b, p, _ = x.shape
        edge_index, dist = dense_batched_knn(x, self.k, metric=self.metric)
        feats = x
        if self.radial:
            feats = torch.cat([x, (x - x.mean(dim=1, keepdim=True)).norm(dim=-1, keepdim=True)], dim=-1)
        batch = torch.arange(b, device=x.device).repeat_interleave(p)
        return Batch(x=feats.reshape(b * p, -1), pos=x.reshape(b * p, 3), edge_index=edge_index,
                     edge_dist=dist, batch=batch, ptr=torch.arange(b + 1, device=x.device) * p)


class PointKNN(Converter):
    """Point clouds (``[P, 3]`` per sample) -> KNN graphs over the points.

    Args:
        k (int, optional): Neighbours per point. (default: ``16``)
        metric (str, optional): ``l2``, ``l1``, ``linf`` or ``cosine``. (default: ``"l2"``)
        radial (bool, optional): Add the distance to the centroid as a 4th feature. (default: ``True``)
    """

    level = "sample"
    inputs = frozenset({"points"})
    example_shapes = {"points": (32, 3)}

    def __init__(self, k: int = 16, metric: str = "l2", radial: bool = True) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be an integer >= 1, got {k!r}")
        if metric not in ("l2", "l1", "linf", "cosine"):
            raise ValueError(f"metric must be l2, l1, linf or cosine, got {metric!r}")
        self.k, self.metric, self.radial = k, metric, bool(radial)

    def output_spec(self, spec: InputSpec) -> InputSpec:
        """Graphs whose nodes carry x, y, z (and the radius)."""
        return InputSpec("graphs", (spec.shape[-1] + (1 if self.radial else 0),))

    def build(self, spec: InputSpec) -> nn.Module:
        """Return the :class:`PointKNNGraph` module."""
        return PointKNNGraph(self.k, self.metric, self.radial)
