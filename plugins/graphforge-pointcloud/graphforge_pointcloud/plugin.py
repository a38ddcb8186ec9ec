"""The plugin module named by the ``graphforge`` entry point."""

import graphforge
from graphforge_pointcloud.converter import PointKNN
from graphforge_pointcloud.shapes import Shapes3D


@graphforge.hookimpl
def register_datasets(register):  # type: ignore[no-untyped-def]
    register("shapes3d", Shapes3D, "synthetic 3-D shapes as [P, 3] point clouds (6 classes, generated, offline)")


@graphforge.hookimpl
def register_converters(register):  # type: ignore[no-untyped-def]
    register("point_knn", PointKNN, "point clouds -> one KNN graph per cloud (graphforge.ops.dense_batched_knn)")
