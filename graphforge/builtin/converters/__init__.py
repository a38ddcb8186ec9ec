"""Built-in converter plugins: ``none``, ``dyn_knn``, ``similarity``, ``som`` and ``som_select``.

This module is the plugin: it registers the converters by location (imported on first use).
"""

from __future__ import annotations

from typing import Any

from graphforge.hookspecs import hookimpl


@hookimpl
def register_converters(register: Any) -> None:
    """Register the built-in converters."""
    here = __name__
    register("none", f"{here}.none:NoGraph", "no graph: feed images or vectors to the model as they are")
    register("dyn_knn", f"{here}.dyn_knn:DynKNN",
             "images -> per-image KNN graphs of CNN features with a learned k for each image")
    register("similarity", f"{here}.similarity:Similarity",
             "one graph over the dataset: samples joined by embedding similarity (threshold, kNN, mutual kNN; FAISS)")
    register("som", f"{here}.som:SOM",
             "Kohonen self-organising map as a graph of neurons; samples map to their best-matching unit")
    register("som_select", f"{here}.som:SOMSelect",
             "feature selection from a Kohonen self-organising map's weights (SOM + kNN)")
