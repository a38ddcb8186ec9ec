"""Dataset-scale similarity graphs: build them, study their score distributions, sweep them.

Names load on first use, so importing :mod:`graphforge.similarity.options` (what the CLI
needs) does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from graphforge._lazy import lazy_exports
from graphforge.similarity.options import GRAPH_METRICS, MODES, WEIGHTS

if TYPE_CHECKING:
    from graphforge.similarity.graph import SimilarityGraph, is_similarity, similarity_graph

_LOCATIONS = {"SimilarityGraph": "graph", "is_similarity": "graph", "similarity_graph": "graph"}

__all__ = ["GRAPH_METRICS", "MODES", "WEIGHTS", "SimilarityGraph", "is_similarity", "similarity_graph"]


__getattr__, __dir__ = lazy_exports(__name__, globals(), _LOCATIONS)
