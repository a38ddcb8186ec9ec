"""The plugin manager: built-in and third-party plugins through the same hooks.

Built-in plugins are the modules in :data:`DEFAULT_PLUGINS`; third-party ones are
found through the ``graphforge`` entry-point group. The environment variable
``GRAPHFORGE_LOAD_PLUGINS`` (comma-separated entry-point or distribution names)
restricts which third-party plugins load; set it to an empty string to load none.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import threading
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pluggy

from graphforge import hookspecs
from graphforge.errors import PluginError
from graphforge.registry import KINDS, Entry, Registry

ENTRY_POINT_GROUP = "graphforge"
LOAD_PLUGINS_ENV = "GRAPHFORGE_LOAD_PLUGINS"

#: The built-in plugins, registered exactly like third-party ones. Each is a light module
#: that registers its objects by location ("module:Class"), so loading them imports no
#: torch; the classes are imported when used (see :mod:`graphforge.registry`).
DEFAULT_PLUGINS: tuple[str, ...] = (
    "graphforge.builtin.datasets",
    "graphforge.builtin.converters",
    "graphforge.builtin.models",
    "graphforge.builtin.embedders",
    "graphforge.builtin.commands.bench",
    "graphforge.builtin.commands.similarity",
    "graphforge.builtin.commands.graph",
)

_HOOK_OF_KIND = {
    "dataset": "register_datasets",
    "converter": "register_converters",
    "model": "register_models",
    "embedder": "register_embedders",
}


@dataclass(frozen=True)
class PluginInfo:
    """Where a loaded plugin comes from (for ``graphforge plugins``)."""

    name: str
    builtin: bool
    distribution: str | None = None
    version: str | None = None


class PluginWarning(UserWarning):
    """A third-party plugin could not be loaded."""


_lock = threading.RLock()
_pm: pluggy.PluginManager | None = None
_infos: dict[str, PluginInfo] = {}
_registries: dict[str, Registry] | None = None
_registries_key: tuple[Any, ...] | None = None


def _allowed_plugins() -> set[str] | None:
    value = os.environ.get(LOAD_PLUGINS_ENV)
    if value is None:
        return None
    return {v.strip() for v in value.split(",") if v.strip()}


def _load_entry_points(pm: pluggy.PluginManager) -> None:
    allowed = _allowed_plugins()
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(ep, "dist", None)
        dist_name = dist.metadata["Name"] if dist is not None else None
        if allowed is not None and ep.name not in allowed and dist_name not in allowed:
            continue
        if pm.has_plugin(ep.name) or pm.is_blocked(ep.name):
            continue
        try:
            plugin = ep.load()
        except Exception as exc:  # a broken plugin must not break graphforge
            warnings.warn(
                f"graphforge plugin {ep.name!r} ({ep.value}) failed to import and was skipped: "
                f"{type(exc).__name__}: {exc}",
                PluginWarning,
                stacklevel=2,
            )
            continue
        try:
            pm.register(plugin, name=ep.name)
        except Exception as exc:
            warnings.warn(
                f"graphforge plugin {ep.name!r} ({ep.value}) could not be registered and was "
                f"skipped: {type(exc).__name__}: {exc}",
                PluginWarning,
                stacklevel=2,
            )
            continue
        _infos[ep.name] = PluginInfo(
            ep.name, False, dist_name, dist.version if dist is not None else None
        )


def get_plugin_manager() -> pluggy.PluginManager:
    """Return the process-wide plugin manager, loading plugins on first use."""
    global _pm
    with _lock:
        if _pm is None:
            pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
            pm.add_hookspecs(hookspecs)
            for module_name in DEFAULT_PLUGINS:
                module = importlib.import_module(module_name)
                pm.register(module, name=module_name)
                _infos[module_name] = PluginInfo(module_name, True)
            if not os.environ.get("GRAPHFORGE_DISABLE_ENTRY_POINTS"):
                _load_entry_points(pm)
            pm.check_pending()
            _pm = pm
        return _pm


def register_plugin(plugin: object, name: str | None = None) -> str:
    """Register a plugin object or module at run time (tests, notebooks).

    Args:
        plugin: Object or module with ``@graphforge.hookimpl`` functions.
        name: Plugin name (default: pluggy's canonical name).

    Returns:
        The name it was registered under.
    """
    pm = get_plugin_manager()
    registered = pm.register(plugin, name=name)
    if registered is None:
        raise PluginError(f"plugin {name or plugin!r} is already registered or blocked")
    pm.check_pending()
    _infos[registered] = PluginInfo(registered, False)
    return registered


def unregister_plugin(name: str) -> None:
    """Remove a plugin registered with :func:`register_plugin`."""
    pm = get_plugin_manager()
    pm.unregister(name=name)
    _infos.pop(name, None)


def plugin_infos() -> list[PluginInfo]:
    """Return information about every loaded plugin, built-ins first."""
    pm = get_plugin_manager()
    names = [pm.get_name(p) for p in pm.get_plugins()]
    infos = [_infos.get(n, PluginInfo(n, False)) for n in names if n is not None]
    return sorted(infos, key=lambda i: (not i.builtin, i.name))


def plugin_hooks(name: str) -> list[str]:
    """Return the names of the hooks plugin ``name`` implements."""
    pm = get_plugin_manager()
    plugin = pm.get_plugin(name)
    if plugin is None:
        return []
    return sorted(c.name for c in (pm.get_hookcallers(plugin) or []))


def _build_registries(pm: pluggy.PluginManager) -> dict[str, Registry]:
    registries = {kind: Registry(kind) for kind in KINDS}
    for kind, hook_name in _HOOK_OF_KIND.items():
        registry = registries[kind]
        hook = getattr(pm.hook, hook_name)
        # Call implementations one by one (in registration order) so every entry
        # knows which plugin made it.
        for impl in hook.get_hookimpls():

            def register(
                name: str,
                factory: Any,
                description: str | None = None,
                *,
                _kind: str = kind,
                _plugin: str = impl.plugin_name,
                _registry: Registry = registry,
            ) -> None:
                _registry.add(Entry(_kind, name, factory, _plugin, description or ""))

            impl.function(register=register)
    return registries


def get_registries() -> dict[str, Registry]:
    """Return the registries of every kind (rebuilt when plugins change)."""
    global _registries, _registries_key
    pm = get_plugin_manager()
    with _lock:
        key = tuple((pm.get_name(p), id(p)) for p in pm.get_plugins())
        if _registries is None or key != _registries_key:
            _registries = _build_registries(pm)
            _registries_key = key
        return _registries


def get_registry(kind: str) -> Registry:
    """Return the registry of one kind: ``"dataset"``, ``"converter"``, ``"model"`` or ``"embedder"``."""
    return get_registries()[kind]


def iter_entries(kinds: Iterable[str] = KINDS) -> list[Entry]:
    """Return every registered entry of the given kinds."""
    regs = get_registries()
    return [e for k in kinds for e in regs[k]]


def reset() -> None:
    """Forget the plugin manager so the next call loads plugins again (tests)."""
    global _pm, _registries, _registries_key
    with _lock:
        _pm = None
        _registries = None
        _registries_key = None
        _infos.clear()
