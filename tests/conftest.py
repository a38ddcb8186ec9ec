"""Shared fixtures."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

# Runs in the suite keep torch's thread count fixed: the load-adaptive policy (tested in
# tests/test_threads.py) could change it between epochs when other jobs share the machine,
# and results that must be bit-identical (resume, world size 1) may differ in the last bits
# between thread counts.
os.environ.setdefault("GRAPHFORGE_ADAPT_THREADS", "0")

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
