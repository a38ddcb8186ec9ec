"""graphforge: turn any data into graphs, then learn on them.

The public Python API. The CLI (``graphforge ...``) calls the same functions.
"""

from graphforge._version import __version__
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
from graphforge.errors import (
    ConfigError,
    DataError,
    GraphforgeError,
    PluginError,
    UnknownPluginError,
)
from graphforge.hookspecs import hookimpl

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
    "get_converter",
    "get_dataset",
    "get_embedder",
    "get_model",
    "hookimpl",
    "list_converters",
    "list_datasets",
    "list_embedders",
    "list_models",
    "load_run",
    "run",
]
