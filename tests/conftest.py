"""Shared fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import graphforge.plugins as gf_plugins


@pytest.fixture
def plugin_registered() -> Iterator:
    """Register plugin objects for one test; they are unregistered afterwards.

    Usage: ``plugin_registered(obj, "name")``.
    """
    names: list[str] = []

    def register(plugin: object, name: str) -> str:
        names.append(gf_plugins.register_plugin(plugin, name))
        return names[-1]

    try:
        yield register
    finally:
        for name in names:
            gf_plugins.unregister_plugin(name)


@pytest.fixture
def fresh_plugins() -> Iterator[None]:
    """Reload the plugin manager before and after the test (for env-var and entry-point tests)."""
    gf_plugins.reset()
    try:
        yield
    finally:
        gf_plugins.reset()
