"""The engine: runner, model families, trainer, tasks, run directories, metrics and plots.

``RunResult`` and ``execute`` load on first use, so light parts such as
:mod:`graphforge.engine.threads` can be imported without torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from graphforge.engine.runner import RunResult, execute

__all__ = ["RunResult", "execute"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from graphforge.engine import runner

        return getattr(runner, name)
    raise AttributeError(f"module 'graphforge.engine' has no attribute {name!r}")
