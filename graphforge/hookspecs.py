"""The hooks a graphforge plugin can implement.

A plugin is a module or object with functions decorated by
``graphforge.hookimpl`` whose names match the specs below. Each ``register``
callback takes ``register(name, factory, description=None)``; ``factory`` is
usually a class deriving from :class:`graphforge.Dataset`,
:class:`graphforge.Converter`, :class:`graphforge.Model` or
:class:`graphforge.Embedder`, and is called with the user's options to make an instance.
"""

from __future__ import annotations

from typing import Any

import pluggy

PROJECT_NAME = "graphforge"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def register_datasets(register: Any) -> None:
    """Register datasets by calling ``register(name, factory)`` for each."""


@hookspec
def register_converters(register: Any) -> None:
    """Register converters (data -> graphs) by calling ``register(name, factory)`` for each."""


@hookspec
def register_models(register: Any) -> None:
    """Register models by calling ``register(name, factory)`` for each."""


@hookspec
def register_embedders(register: Any) -> None:
    """Register embedders (samples -> feature vectors) by calling ``register(name, factory)`` for each."""


@hookspec
def register_commands(cli: Any) -> None:
    """Add commands to the ``graphforge`` click group ``cli``."""
