"""The engine: dataset -> converter -> model -> training / evaluation -> report."""

from graphforge.engine.runner import RunResult, execute

__all__ = ["RunResult", "execute"]
