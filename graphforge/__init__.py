"""graphforge: turn any data into graphs, then learn on them.

The public Python API. The CLI (``graphforge ...``) calls the same functions.

Names load on first use (PEP 562), so ``import graphforge`` is cheap and importing a
low-level part such as :mod:`graphforge.neighbors` or :mod:`graphforge.ops` does not
pull in the engine, the plugins or the CLI.
"""

from __future__ import annotations

import warnings
from importlib import import_module
from typing import TYPE_CHECKING, Any

from graphforge._version import __version__
from graphforge.errors import (
    ConfigError,
    DataError,
    GraphforgeError,
    PluginError,
    UnknownPluginError,
)

# torch_geometric calls torch.jit.script when it is imported, which torch >= 2.14 warns about:
# nothing a graphforge user can act on, from the CLI or the Python API alike.
warnings.filterwarnings("ignore", message="`torch.jit.script` is deprecated", category=FutureWarning)

if TYPE_CHECKING:
    from graphforge.api import (
        RunResult,
        get_converter,
        get_dataset,
        get_embedder,
        get_model,
        list_converters,
        list_datasets,
        list_embedders,
        list_models,
        load_run,
        run,
    )
    from graphforge.core import (
        Converter,
        Dataset,
        DataSplits,
        Embedder,
        FitModel,
        GraphFitModel,
        InputSpec,
        Model,
        Split,
    )
    from graphforge.graphs import build_graph, load_graph, save_graph
    from graphforge.hookspecs import hookimpl

_LOCATIONS: dict[str, str] = {
    **dict.fromkeys(("RunResult", "get_converter", "get_dataset", "get_embedder", "get_model", "list_converters",
                     "list_datasets", "list_embedders", "list_models", "load_run", "run"), "graphforge.api"),
    **dict.fromkeys(("Converter", "Dataset", "DataSplits", "Embedder", "FitModel", "GraphFitModel", "InputSpec",
                     "Model", "Split"), "graphforge.core"),
    "hookimpl": "graphforge.hookspecs",
    **dict.fromkeys(("build_graph", "load_graph", "save_graph"), "graphforge.graphs"),
}


def __getattr__(name: str) -> Any:
    module = _LOCATIONS.get(name)
    if module is None:
        # Submodules (graphforge.api, graphforge.neighbors, ...) are attributes once imported.
        try:
            return import_module(f"graphforge.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"graphforge.{name}":
                raise
        raise AttributeError(f"module 'graphforge' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LOCATIONS))


__all__ = [
    "ConfigError",
    "Converter",
    "DataError",
    "DataSplits",
    "Dataset",
    "Embedder",
    "FitModel",
    "GraphFitModel",
    "GraphforgeError",
    "InputSpec",
    "Model",
    "PluginError",
    "RunResult",
    "Split",
    "UnknownPluginError",
    "__version__",
    "build_graph",
    "get_converter",
    "get_dataset",
    "get_embedder",
    "get_model",
    "hookimpl",
    "list_converters",
    "list_datasets",
    "list_embedders",
    "list_models",
    "load_graph",
    "load_run",
    "run",
    "save_graph",
]
