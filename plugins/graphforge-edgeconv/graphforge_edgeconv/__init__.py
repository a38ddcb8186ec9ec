"""A DGCNN-style dynamic EdgeConv model plugin for graphforge.

Names load on first use, so the plugin entry point (``graphforge_edgeconv.plugin``) imports no torch.
"""

from importlib import import_module
from typing import Any

_LOCATIONS = {'DGCNN': 'model', 'DGCNNNet': 'model'}

__all__ = ['DGCNN', 'DGCNNNet']
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name not in _LOCATIONS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_LOCATIONS[name]}"), name)
