"""Exceptions graphforge raises for user mistakes.

Every error a user can cause (bad option, unknown plugin, corrupt file) is a
:class:`GraphforgeError`, so the CLI can print it as one line and exit non-zero
instead of showing a traceback.
"""

from __future__ import annotations

from collections.abc import Iterable


class GraphforgeError(Exception):
    """Base class of errors caused by the user's input or environment."""


class ConfigError(GraphforgeError, ValueError):
    """An option or combination of options is invalid."""


class DataError(GraphforgeError, ValueError):
    """Input data is missing, malformed or inconsistent.

    Attributes:
        reason: For a file that cannot be read (:func:`graphforge.io.safe_load`), why, without
            the file's name; ``None`` otherwise.
    """

    reason: str | None = None


class OutputError(GraphforgeError, OSError):
    """A file could not be written (disk full, read-only filesystem, no permission).

    An :class:`OSError` still (``errno`` and ``strerror`` are the system's), whose message
    names the file and the reason.
    """

    def __str__(self) -> str:  # OSError would print "[Errno N] ..." instead of the message
        return str(self.args[0])


class PluginError(GraphforgeError):
    """A plugin is misbehaving (e.g. two plugins claim the same name)."""


class UnknownPluginError(GraphforgeError, KeyError):
    """A plugin name was not found in its registry."""

    def __init__(self, kind: str, name: str, choices: Iterable[str]) -> None:
        self.kind = kind
        self.name = name
        self.choices = sorted(choices)
        super().__init__(
            f"unknown {kind} {name!r}; choose one of: {', '.join(self.choices) or '(none registered)'}"
        )

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])
