"""The plugin module named by the ``graphforge`` entry point.

It registers the model by location ("module:Class"): graphforge lists it without importing
torch and imports the class when a run uses it. (Registering the class itself also works.)
"""

import graphforge


@graphforge.hookimpl
def register_models(register):  # type: ignore[no-untyped-def]
    register("dgcnn", "graphforge_edgeconv.model:DGCNN",
             "dynamic EdgeConv (DGCNN): KNN graphs rebuilt in feature space by batched_knn")
