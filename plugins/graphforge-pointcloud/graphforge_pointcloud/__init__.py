"""Point clouds for graphforge: the ``shapes3d`` dataset and the ``point_knn`` converter."""

from graphforge_pointcloud.converter import PointKNN
from graphforge_pointcloud.shapes import SHAPES, Shapes3D, sample_shape

__all__ = ["SHAPES", "PointKNN", "Shapes3D", "sample_shape"]
__version__ = "0.1.0"
