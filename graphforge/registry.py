"""Registries of datasets, converters, models and embedders, filled by plugin hooks.

A plugin registers each object with a name, a one-line description and either the class
itself or *where it lives*: ``"package.module:ClassName"``. A class given by location is
imported the first time something needs it (a run, ``list --json``'s options, a contract
test), so ``graphforge --help``, ``list`` and ``plugins`` answer without importing torch.
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from graphforge.errors import ConfigError, PluginError, UnknownPluginError

KINDS = ("dataset", "converter", "model", "embedder")
_TARGET = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def is_target(value: Any) -> bool:
    """Whether ``value`` is a ``"module:attribute"`` location string."""
    return isinstance(value, str) and bool(_TARGET.match(value))


@dataclass(frozen=True)
class Entry:
    """One registered plugin object.

    Attributes:
        kind: ``"dataset"``, ``"converter"``, ``"model"`` or ``"embedder"``.
        name: The name users type (``--model sage``).
        target: The factory (usually a class) building an instance from options, or its
            location ``"module:attribute"`` (imported on first use of :attr:`factory`).
        plugin: Name of the plugin that registered it.
        description: One line shown by ``graphforge list``.
    """

    kind: str
    name: str
    target: Callable[..., Any] | str
    plugin: str
    description: str = ""
    _loaded: list[Callable[..., Any]] = field(default_factory=list, repr=False, compare=False)

    @property
    def lazy(self) -> bool:
        """Whether the factory is given by location and not imported yet."""
        return isinstance(self.target, str) and not self._loaded

    @property
    def factory(self) -> Callable[..., Any]:
        """The factory, imported from :attr:`target` on first use.

        Raises:
            PluginError: Naming the plugin if the location does not import or is not callable.
        """
        if not isinstance(self.target, str):
            return self.target
        if not self._loaded:
            module_name, _, attr = self.target.partition(":")
            try:
                obj: Any = importlib.import_module(module_name)
                for part in attr.split("."):
                    obj = getattr(obj, part)
            except Exception as exc:  # noqa: BLE001 - any failure of a plugin's import is the plugin's
                raise PluginError(
                    f"plugin {self.plugin!r} registered {self.kind} {self.name!r} at {self.target!r}, which failed "
                    f"to load: {type(exc).__name__}: {exc}"
                ) from None
            if not callable(obj):
                raise PluginError(f"plugin {self.plugin!r} registered {self.kind} {self.name!r} at {self.target!r}, "
                                  f"which is not callable ({type(obj).__name__})")
            self._loaded.append(obj)
        return self._loaded[0]

    @property
    def location(self) -> str:
        """``"module:attribute"`` of the factory (without importing it)."""
        if isinstance(self.target, str):
            return self.target
        return f"{getattr(self.target, '__module__', '?')}:{getattr(self.target, '__qualname__', repr(self.target))}"

    def options(self) -> dict[str, Any]:
        """Return the keyword options the factory accepts, with their defaults.

        A default of :data:`inspect.Parameter.empty` marks a required option.
        """
        return {name: p.default for name, p in _keyword_parameters(self.factory).items()}

    def accepts_any_option(self) -> bool:
        """Whether the factory takes ``**kwargs`` (so any option is passed through)."""
        try:
            params = inspect.signature(self.factory).parameters.values()
        except (TypeError, ValueError):
            return True
        return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)

    def create(self, **options: Any) -> Any:
        """Build an instance, checking option names first.

        Raises:
            ConfigError: If an option is unknown or the factory rejects a value.
        """
        if not self.accepts_any_option():
            known = self.options()
            unknown = sorted(set(options) - set(known))
            if unknown:
                valid = ", ".join(sorted(known)) or "(none)"
                raise ConfigError(
                    f"{self.kind} {self.name!r} has no option {', '.join(map(repr, unknown))}; "
                    f"valid options: {valid}"
                )
        try:
            obj = self.factory(**options)
        except (ValueError, TypeError) as exc:
            if isinstance(exc, ConfigError):
                raise
            raise ConfigError(f"{self.kind} {self.name!r}: {exc}") from exc
        try:
            obj._registered_name = self.name  # lets the object name itself in messages
        except AttributeError:
            pass
        return obj

    def describe(self) -> str:
        """Return the description, or the first line of the factory's docstring (which
        imports a lazily registered factory: give a description to avoid that)."""
        if self.description:
            return self.description
        doc = inspect.getdoc(self.factory) or ""
        return doc.strip().splitlines()[0] if doc.strip() else ""


def _keyword_parameters(factory: Callable[..., Any]) -> dict[str, inspect.Parameter]:
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return {}
    return {
        n: p
        for n, p in params.items()
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    }


@dataclass
class Registry:
    """Name -> :class:`Entry` mapping for one kind of plugin object."""

    kind: str
    entries: dict[str, Entry] = field(default_factory=dict)

    def add(self, entry: Entry) -> None:
        """Add an entry; two plugins claiming one name is an error naming both."""
        if not isinstance(entry.name, str) or not entry.name:
            raise PluginError(
                f"plugin {entry.plugin!r} registered a {self.kind} with an invalid name {entry.name!r}"
            )
        if isinstance(entry.target, str) and not is_target(entry.target):
            raise PluginError(
                f"plugin {entry.plugin!r} registered {self.kind} {entry.name!r} at {entry.target!r}; a location "
                "must look like 'package.module:ClassName'"
            )
        if not isinstance(entry.target, str) and not callable(entry.target):
            raise PluginError(
                f"plugin {entry.plugin!r} registered {self.kind} {entry.name!r} with a "
                f"non-callable factory {entry.target!r}"
            )
        old = self.entries.get(entry.name)
        if old is not None:
            raise PluginError(
                f"{self.kind} name {entry.name!r} is claimed by two plugins: "
                f"{old.plugin!r} and {entry.plugin!r}"
            )
        self.entries[entry.name] = entry

    def get(self, name: str) -> Entry:
        """Return the entry called ``name``.

        Raises:
            UnknownPluginError: Listing the valid names.
        """
        try:
            return self.entries[name]
        except KeyError:
            raise UnknownPluginError(self.kind, name, self.entries) from None

    def names(self) -> list[str]:
        """Return the registered names, sorted."""
        return sorted(self.entries)

    def __iter__(self) -> Iterator[Entry]:
        return iter(self.entries[n] for n in self.names())

    def __contains__(self, name: object) -> bool:
        return name in self.entries

    def __len__(self) -> int:
        return len(self.entries)
