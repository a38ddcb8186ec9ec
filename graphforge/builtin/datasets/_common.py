"""Helpers shared by the built-in datasets: option parsing, data roots and splits."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from graphforge.core.data import Split
from graphforge.core.splits import stratified_split
from graphforge.errors import ConfigError, DataError

#: Environment variable naming the folder ``--download`` uses when no ``--data-root`` is given.
DATA_DIR_ENV = "GRAPHFORGE_DATA"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def parse_fraction(name: str, value: Any) -> float:
    """Read a split fraction option in ``[0, 1)``.

    Args:
        name: Option name, for the error message.
        value: The value given (number or numeric string).

    Returns:
        The fraction as a float.

    Raises:
        ConfigError: If it is not a number in ``[0, 1)``.
    """
    try:
        fraction = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number in [0, 1), got {value!r}") from None
    if not 0.0 <= fraction < 1.0:
        raise ConfigError(f"{name} must be in [0, 1), got {value!r}")
    return fraction


def parse_fractions(val_fraction: Any, test_fraction: Any) -> tuple[float, float]:
    """Read ``val_fraction`` and ``test_fraction`` and check that they leave training data.

    Args:
        val_fraction: Validation fraction.
        test_fraction: Test fraction.

    Returns:
        ``(val_fraction, test_fraction)`` as floats.

    Raises:
        ConfigError: If either is outside ``[0, 1)`` or their sum is not below 1.
    """
    val = parse_fraction("val_fraction", val_fraction)
    test = parse_fraction("test_fraction", test_fraction)
    if val + test >= 1.0:
        raise ConfigError(
            f"val_fraction + test_fraction must be below 1 to leave training data, "
            f"got {val} + {test}"
        )
    return val, test


def parse_bool(name: str, value: Any) -> bool:
    """Read a boolean option (``True``/``False`` or ``true``/``false``/``1``/``0``...).

    Raises:
        ConfigError: If the value is not a recognisable boolean.
    """
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigError(f"{name} must be true or false, got {value!r}")


def default_data_dir() -> Path:
    """Return where downloads go without ``--data-root``.

    Returns:
        ``$GRAPHFORGE_DATA`` when set, else ``~/.cache/graphforge/datasets``.
    """
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "graphforge" / "datasets"


def resolve_root(dataset: str, root: Path | str | None, download: bool) -> Path:
    """Return the directory a file-backed dataset reads from (and downloads into).

    Args:
        dataset: Dataset name, for messages.
        root: ``--data-root``, or ``None``.
        download: Whether downloading is allowed; then a missing directory is created
            and ``None`` means :func:`default_data_dir`.

    Returns:
        An existing directory.

    Raises:
        DataError: If no root is given without ``--download``, or the root is missing
            or not a directory.
    """
    if root is None:
        if not download:
            raise DataError(
                f"{dataset}: no data given; pass --data-root DIR pointing at the dataset's "
                f"files, or --download to fetch them"
            )
        root = default_data_dir()
    root = Path(root).expanduser()
    if root.exists() and not root.is_dir():
        raise DataError(f"{dataset}: --data-root {root} is a file; it must be a directory")
    if not root.exists():
        if not download:
            raise DataError(
                f"{dataset}: --data-root {root} does not exist; point it at the directory "
                f"holding the files, or add --download to fetch them there"
            )
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DataError(f"{dataset}: cannot create download directory {root}: {exc}") from None
    return root


def check_labels(
    dataset: str, y: torch.Tensor, num_classes: int, source: str, offset: int = 0
) -> None:
    """Check that stored labels lie in ``offset..offset+num_classes-1``.

    Args:
        dataset: Dataset name, for messages.
        y: Labels as stored in the file.
        num_classes: Number of classes.
        source: The file they come from, for messages.
        offset: Smallest valid label (1 for EMNIST letters).

    Raises:
        DataError: Naming ``source`` and the first bad value.
    """
    if len(y) == 0:
        return
    bad = (y < offset) | (y >= offset + num_classes)
    if bool(bad.any()):
        first = int(torch.nonzero(bad)[0])
        raise DataError(
            f"{dataset}: {source} has label {int(y[first])} at index {first}, "
            f"outside {offset}..{offset + num_classes - 1}"
        )


def _min_class_size(fractions: Sequence[float]) -> int:
    n = 1
    while any(f > 0 and np.floor(f * n) < 1 for f in fractions):
        n += 1
    return n


def stratified_parts(
    dataset: str,
    y: torch.Tensor,
    fractions: Sequence[float],
    seed: int,
    class_names: Sequence[str] | None = None,
) -> list[torch.Tensor]:
    """Split indices with :func:`~graphforge.core.splits.stratified_split`, refusing
    classes too small to appear in every part.

    Args:
        dataset: Dataset name, for messages.
        y: Labels ``[N]``.
        fractions: Fraction of each part (first is the part that keeps leftovers).
        seed: Random seed.
        class_names: Names for labels, for messages.

    Returns:
        One sorted int64 index tensor per part.

    Raises:
        DataError: If there are fewer than 2 classes or a class has too few samples.
    """
    labels, counts = np.unique(y.numpy(), return_counts=True)
    if len(labels) < 2:
        raise DataError(f"{dataset}: need at least 2 classes to classify, found {len(labels)}")
    need = _min_class_size(fractions)
    small = counts < need
    if small.any():
        i = int(np.flatnonzero(small)[0])
        label = int(labels[i])
        shown = class_names[label] if class_names is not None else str(label)
        pct = "/".join(f"{100 * f:g}" for f in fractions)
        raise DataError(
            f"{dataset}: class {shown!r} has only {int(counts[i])} samples, too few for a "
            f"stratified {pct} % split (each class needs at least {need}); lower "
            f"val_fraction/test_fraction or add samples"
        )
    return stratified_split(y, list(fractions), seed)


def empty_like(split: Split) -> Split:
    """Return an empty split with the same sample shape and dtype as ``split``."""
    return Split(split.x[:0], split.y[:0])


def carve_validation(
    dataset: str,
    train: Split,
    val_fraction: float,
    seed: int,
    class_names: Sequence[str] | None = None,
) -> tuple[Split, Split]:
    """Move a seeded stratified ``val_fraction`` of ``train`` into a validation split.

    Args:
        dataset: Dataset name, for messages.
        train: The training samples.
        val_fraction: Fraction to move; 0 gives an empty validation split.
        seed: Random seed.
        class_names: Names for labels, for messages.

    Returns:
        ``(train, val)``.
    """
    if val_fraction == 0:
        return train, empty_like(train)
    keep, val = stratified_parts(
        dataset, train.y, [1 - val_fraction, val_fraction], seed, class_names
    )
    return train.subset(keep), train.subset(val)


def split_three(
    dataset: str,
    data: Split,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    class_names: Sequence[str] | None = None,
) -> tuple[Split, Split, Split]:
    """Split samples into seeded stratified train / validation / test parts.

    Args:
        dataset: Dataset name, for messages.
        data: All samples.
        val_fraction: Validation fraction.
        test_fraction: Test fraction.
        seed: Random seed.
        class_names: Names for labels, for messages.

    Returns:
        ``(train, val, test)``.
    """
    fractions = [1 - val_fraction - test_fraction, val_fraction, test_fraction]
    parts = stratified_parts(dataset, data.y, fractions, seed, class_names)
    train, val, test = (data.subset(p) for p in parts)
    return train, val, test
