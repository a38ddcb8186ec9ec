"""The plugin module named by the ``graphforge`` entry point.

It registers its classes by location ("module:Class"), so graphforge can list them
(``graphforge list converters``, ``--help``) without importing torch; they are imported when
a run uses them.
"""

import graphforge


@graphforge.hookimpl
def register_datasets(register):  # type: ignore[no-untyped-def]
    register("shapes3d", "graphforge_pointcloud.shapes:Shapes3D",
             "synthetic 3-D shapes as [P, 3] point clouds (6 classes, generated, offline)")


@graphforge.hookimpl
def register_converters(register):  # type: ignore[no-untyped-def]
    register("point_knn", "graphforge_pointcloud.converter:PointKNN",
             "point clouds -> one KNN graph per cloud (graphforge.ops.dense_batched_knn)")
