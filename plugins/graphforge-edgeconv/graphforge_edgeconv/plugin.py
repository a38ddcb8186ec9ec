"""The plugin module named by the ``graphforge`` entry point."""

import graphforge
from graphforge_edgeconv.model import DGCNN


@graphforge.hookimpl
def register_models(register):  # type: ignore[no-untyped-def]
    register("dgcnn", DGCNN, "dynamic EdgeConv (DGCNN): KNN graphs rebuilt in feature space by batched_knn")
