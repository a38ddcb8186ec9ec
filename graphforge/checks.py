"""Checks of single option values, shared by every layer (no engine or plugin code here).

Each returns the value in canonical form or raises :class:`~graphforge.errors.ConfigError`
with a one-line message naming the option.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from graphforge.errors import ConfigError

__all__ = ["check_device", "check_env_choice", "check_float", "check_int"]


def check_env_choice(name: str, choices: tuple[str, ...]) -> str:
    """The value of environment variable ``name``, lower-cased; ``choices[0]`` when unset or empty.

    Raises:
        ConfigError: If it holds a value not in ``choices``.
    """
    value = os.environ.get(name, choices[0]).strip().lower() or choices[0]
    if value not in choices:
        raise ConfigError(f"{name}={value!r} is not one of: {', '.join(choices)}")
    return value


def check_int(value: Any, name: str, *, minimum: int, optional: bool = False) -> int | None:
    """Return ``value`` as an ``int`` if it is an integer ``>= minimum`` (``None`` when optional).

    NumPy integers are accepted; booleans and floats are not.

    Raises:
        ConfigError: ``"{name} must be an integer >= {minimum}, got ..."``.
    """
    if value is None and optional:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_float(
    value: Any,
    name: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive_minimum: bool = False,
    exclusive_maximum: bool = False,
    optional: bool = False,
) -> float | None:
    """Return ``value`` as a finite ``float`` within the given bounds (``None`` when optional).

    NaN and infinities are always refused: a run must never start with them.

    Raises:
        ConfigError: Naming the option, the bound and the value.
    """
    if value is None and optional:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    if minimum is not None and (number <= minimum if exclusive_minimum else number < minimum):
        raise ConfigError(f"{name} must be {'>' if exclusive_minimum else '>='} {minimum:g}, got {value!r}")
    if maximum is not None and (number >= maximum if exclusive_maximum else number > maximum):
        raise ConfigError(f"{name} must be {'<' if exclusive_maximum else '<='} {maximum:g}, got {value!r}")
    return number


def check_device(device: Any) -> str:
    """Return ``device`` if it is ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.

    Raises:
        ConfigError: Naming the bad value.
    """
    text = str(device)
    if not isinstance(device, str) or not (text in ("auto", "cpu", "cuda") or (text.startswith("cuda:") and text[5:].isdigit())):
        raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got {device!r}")
    return text


def holdout_size(n: int, fraction: float, what: str = "training samples") -> int:
    """How many of ``n`` samples a held-out share ``fraction`` sets aside (``round(fraction * n)``).

    Raises:
        ConfigError: Either the held-out part or the rest would be empty.
    """
    n_out = round(fraction * n)
    if n_out < 1 or n_out >= n:
        raise ConfigError(f"a held-out share of {fraction:g} of {n} {what} leaves {n_out} held out and "
                          f"{n - n_out} to train on; both must be at least 1")
    return n_out
