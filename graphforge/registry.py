"""Registries of datasets, converters, models and embedders, filled by plugin hooks."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from graphforge.errors import ConfigError, PluginError, UnknownPluginError

KINDS = ("dataset", "converter", "model", "embedder")


@dataclass(frozen=True)
class Entry:
    """One registered plugin object.

    Attributes:
        kind: ``"dataset"``, ``"converter"``, ``"model"`` or ``"embedder"``.
        name: The name users type (``--model sage``).
        factory: Callable (usually a class) building an instance from options.
        plugin: Name of the plugin that registered it.
        description: One line shown by ``graphforge list``.
    """

    kind: str
    name: str
    factory: Callable[..., Any]
    plugin: str
    description: str = ""

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
        """Return the description, or the first line of the factory's docstring."""
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
        if not callable(entry.factory):
            raise PluginError(
                f"plugin {entry.plugin!r} registered {self.kind} {entry.name!r} with a "
                f"non-callable factory {entry.factory!r}"
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
