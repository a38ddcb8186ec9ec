"""Point clouds for graphforge: the ``shapes3d`` dataset and the ``point_knn`` converter.

Names load on first use, so the plugin entry point (``graphforge_pointcloud.plugin``) imports no torch.
"""

from importlib import import_module
from typing import Any

_LOCATIONS = {'PointKNN': 'converter', 'SHAPES': 'shapes', 'Shapes3D': 'shapes', 'sample_shape': 'shapes'}

__all__ = ['PointKNN', 'SHAPES', 'Shapes3D', 'sample_shape']
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name not in _LOCATIONS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_LOCATIONS[name]}"), name)
