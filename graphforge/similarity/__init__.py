"""Dataset-scale similarity graphs: build them, study their score distributions, sweep them.

Names load on first use, so importing :mod:`graphforge.similarity.options` (what the CLI
needs) does not import torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from graphforge.similarity.options import GRAPH_METRICS, MODES, WEIGHTS

if TYPE_CHECKING:
    from graphforge.similarity.graph import SimilarityGraph, is_similarity, similarity_graph

_LOCATIONS = {"SimilarityGraph": "graph", "is_similarity": "graph", "similarity_graph": "graph"}

__all__ = ["GRAPH_METRICS", "MODES", "WEIGHTS", "SimilarityGraph", "is_similarity", "similarity_graph"]


def __getattr__(name: str) -> Any:
    if name not in _LOCATIONS:
        raise AttributeError(f"module 'graphforge.similarity' has no attribute {name!r}")
    value = getattr(import_module(f"graphforge.similarity.{_LOCATIONS[name]}"), name)
    globals()[name] = value
    return value
