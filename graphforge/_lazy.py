"""Lazy package exports: a public name's submodule is imported the first time it is used.

Packages whose submodules pull in heavy libraries (torch-geometric, FAISS, matplotlib)
export their names through :func:`lazy_exports`, so importing the package itself (or a
light submodule of it) stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import Any


def lazy_exports(
    package: str, namespace: dict[str, Any], locations: dict[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of a package that exports names lazily.

    Args:
        package: The package's ``__name__``.
        namespace: Its ``globals()`` (a loaded name is cached there).
        locations: Public name -> submodule (relative to ``package``) that defines it.

    Example:
        >>> __getattr__, __dir__ = lazy_exports(__name__, globals(), {"KNNIndex": "search"})  # doctest: +SKIP
    """

    def __getattr__(name: str) -> Any:
        module = locations.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(f"{package}.{module}"), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(locations))

    return __getattr__, __dir__
