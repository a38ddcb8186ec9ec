"""Reusable layers used by the built-in models: edge-weight aware graph convolutions, fast dropout.

Submodules load on first use, so a model that only needs :class:`Dropout` (``cnn``,
``mlp``) does not import torch-geometric.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from graphforge.nn.conv import WeightedGINConv, WeightedSAGEConv
    from graphforge.nn.fast_dropout import Dropout, dropout

_LOCATIONS: dict[str, str] = {
    "WeightedGINConv": "conv",
    "WeightedSAGEConv": "conv",
    "Dropout": "fast_dropout",
    "dropout": "fast_dropout",
}


def __getattr__(name: str) -> Any:
    module = _LOCATIONS.get(name)
    if module is None:
        raise AttributeError(f"module 'graphforge.nn' has no attribute {name!r}")
    value = getattr(import_module(f"graphforge.nn.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LOCATIONS))


__all__ = ["Dropout", "WeightedGINConv", "WeightedSAGEConv", "dropout"]
