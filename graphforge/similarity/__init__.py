"""Dataset-scale similarity graphs: build them, study their score distributions, sweep them."""

from graphforge.similarity.graph import (
    GRAPH_METRICS,
    MODES,
    WEIGHTS,
    SimilarityGraph,
    is_similarity,
    similarity_graph,
)

__all__ = ["GRAPH_METRICS", "MODES", "WEIGHTS", "SimilarityGraph", "is_similarity", "similarity_graph"]
