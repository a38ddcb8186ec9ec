"""Built-in model plugins: ``mlp``, ``cnn``, ``knn``, the GNNs and ``label_prop``.

This module is the plugin: it registers the models by location (imported on first use).
"""

from __future__ import annotations

from typing import Any

from graphforge.hookspecs import hookimpl


@hookimpl
def register_models(register: Any) -> None:
    """Register the built-in models."""
    here = __name__
    register("mlp", f"{here}.mlp:MLP",
             "fully connected baseline on flattened images or vectors, or on a dataset graph's node features")
    register("cnn", f"{here}.cnn:CNN", "small convolutional network for images of any size and channel count")
    register("knn", f"{here}.knn:KNN",
             "exact k-nearest-neighbour classifier (any metric: euclidean, cosine, L1, ...); k sweeps in one search")
    register("sage", f"{here}.gnn:SAGE",
             "GraphSAGE (edge-weighted mean/sum/max aggregation), graph or node classification")
    register("gcn", f"{here}.gnn:GCN", "graph convolutional network using edge weights, graph or node classification")
    register("gat", f"{here}.gnn:GAT",
             "graph attention network (edge weight as edge feature), graph or node classification")
    register("gin", f"{here}.gnn:GIN", "graph isomorphism network with edge-weighted sums, graph or node classification")
    register("label_prop", f"{here}.label_prop:LabelPropagation",
             "label spreading (Zhou et al.) over a dataset graph: the no-training graph baseline")
