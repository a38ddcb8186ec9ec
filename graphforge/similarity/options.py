"""The option values of similarity graphs, importable without torch (the CLI lists them)."""

from __future__ import annotations

#: The metrics of similarity graphs (canonical names of :mod:`graphforge.neighbors.metrics`;
#: aliases such as ``l2`` or ``l1`` work too).
GRAPH_METRICS: tuple[str, ...] = ("cosine", "euclidean", "cityblock", "chord", "linf", "ip")
#: How edges are chosen.
MODES: tuple[str, ...] = ("threshold", "knn", "mutual")
#: How edges are weighted.
WEIGHTS: tuple[str, ...] = ("similarity", "gaussian", "none")
#: The options that pick one graph (metric and edge rule); commands that span many graphs refuse them.
GRAPH_CHOICE_OPTIONS: tuple[str, ...] = ("metric", "mode", "threshold", "degree", "k")
