"""Reusable layers used by the built-in models: edge-weight aware graph convolutions, the
Vision-GNN Grapher block (and its feature-map stage), fast dropout.

Submodules load on first use, so a model that only needs :class:`Dropout` (``cnn``,
``mlp``) does not import torch-geometric.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from graphforge._lazy import lazy_exports

if TYPE_CHECKING:
    from graphforge.nn.conv import WeightedGINConv, WeightedSAGEConv
    from graphforge.nn.fast_dropout import Dropout, dropout
    from graphforge.nn.grapher import GrapherBlock, MapGraphBlock

_LOCATIONS: dict[str, str] = {
    "WeightedGINConv": "conv",
    "WeightedSAGEConv": "conv",
    "Dropout": "fast_dropout",
    "dropout": "fast_dropout",
    "GrapherBlock": "grapher",
    "MapGraphBlock": "grapher",
}


__getattr__, __dir__ = lazy_exports(__name__, globals(), _LOCATIONS)


__all__ = ["Dropout", "GrapherBlock", "MapGraphBlock", "WeightedGINConv", "WeightedSAGEConv", "dropout"]
