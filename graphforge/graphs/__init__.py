"""Graphs as a product: build any converter's graphs without training, save them in the
formats other tools read, load them back, measure them and draw them.

* :func:`build_graph` — the graph(s) of a converter over a dataset (:mod:`.build`);
* :func:`save_graph` / :func:`load_graph` — ``pt``, ``csv``, ``parquet``, ``npz``, ``graphml``,
  ``gexf`` (:mod:`.io`);
* :func:`graph_stats` — degrees, components, isolated nodes, homophily (:mod:`.stats`);
* :func:`draw_graph` — pictures (:mod:`.draw`).

Names load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from graphforge._lazy import lazy_exports

if TYPE_CHECKING:
    from graphforge.graphs.build import build_graph
    from graphforge.graphs.draw import draw_dataset_graph, draw_graph, draw_image_graphs, draw_som_graph
    from graphforge.graphs.io import FORMATS, load_graph, save_graph
    from graphforge.graphs.stats import format_stats, graph_stats

_LOCATIONS = {
    "build_graph": "build", "FORMATS": "io", "load_graph": "io", "save_graph": "io",
    "graph_stats": "stats", "format_stats": "stats",
    "draw_graph": "draw", "draw_dataset_graph": "draw", "draw_image_graphs": "draw", "draw_som_graph": "draw",
}

__all__ = [
    "FORMATS",
    "build_graph",
    "draw_dataset_graph",
    "draw_graph",
    "draw_image_graphs",
    "draw_som_graph",
    "format_stats",
    "graph_stats",
    "load_graph",
    "save_graph",
]


__getattr__, __dir__ = lazy_exports(__name__, globals(), _LOCATIONS)
