"""``embeddings``: a table of feature vectors with a label column (CSV / Parquet / NPY / NPZ)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch

from graphforge.builtin.datasets._common import (
    carve_validation,
    parse_fractions,
    split_three,
)
from graphforge.builtin.datasets.tables import TABLE_SUFFIXES, Table, read_table
from graphforge.core.data import DataSplits, Split
from graphforge.core.dataset import Dataset
from graphforge.errors import ConfigError, DataError

NAME = "embeddings"
SPLIT_VALUES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
_log = logging.getLogger(__name__)


def _column_list(frame: pd.DataFrame, limit: int = 20) -> str:
    cols = list(frame.columns)
    shown = ", ".join(cols[:limit])
    return shown + (f", ... ({len(cols) - limit} more)" if len(cols) > limit else "")


def _is_index(spec: Any) -> bool:
    if isinstance(spec, bool):
        return False
    if isinstance(spec, (int, np.integer)):
        return True
    return isinstance(spec, str) and spec.strip().lstrip("-").isdigit()


def resolve_column(table: Table, spec: Any, what: str) -> str:
    """Find a column by name, or by integer position when no column has that name.

    Args:
        table: The table.
        spec: Column name or position (``-1`` is the last column).
        what: What the column is for, for messages (``"label"``).

    Returns:
        The column's name.

    Raises:
        DataError: Listing the available columns when there is no such column.
    """
    frame = table.frame
    if str(spec) in frame.columns:
        return str(spec)
    if _is_index(spec):
        i = int(spec)
        if -len(frame.columns) <= i < len(frame.columns):
            return str(frame.columns[i])
    raise DataError(
        f"{NAME}: {table.path} has no {what} column {spec!r}; available columns: "
        f"{_column_list(frame)}"
    )


def _parse_feature_columns(value: Any) -> list[Any] | None:
    if value is None:
        return None
    if isinstance(value, str):
        items: list[Any] = [v.strip() for v in value.split(",") if v.strip()]
    elif isinstance(value, Sequence):
        items = list(value)
    else:
        raise ConfigError(f"feature_columns must be a list or comma-separated names, got {value!r}")
    if not items:
        raise ConfigError("feature_columns is empty")
    return items


def _first_bad_row(bad: np.ndarray) -> int:
    return int(np.flatnonzero(bad)[0])


def encode_labels(table: Table, column: str) -> tuple[torch.Tensor, list[str]]:
    """Map a label column to ``0..C-1``.

    Strings are sorted and numbered; integers keep their order and their values
    become the class names.

    Args:
        table: The table.
        column: The label column.

    Returns:
        ``(labels, class_names)``.

    Raises:
        DataError: On missing or non-integer numeric labels, or fewer than 2 classes.
    """
    series = table.frame[column]
    missing = series.isna().to_numpy()
    if missing.any():
        raise DataError(
            f"{NAME}: {table.path}: {int(missing.sum())} rows have no label in column "
            f"{column!r} (first: row {_first_bad_row(missing)}, counting data rows from 0)"
        )
    if pd.api.types.is_numeric_dtype(series):
        values = series.to_numpy()
        if not np.issubdtype(values.dtype, np.integer) and values.dtype != np.bool_:
            floats = values.astype(np.float64)
            fractional = ~np.isfinite(floats) | (floats != np.round(floats))
            if fractional.any():
                i = _first_bad_row(fractional)
                raise DataError(
                    f"{NAME}: {table.path}: label column {column!r} has non-integer value "
                    f"{values[i]!r} at row {i}; labels must be integers or strings"
                )
        values = values.astype(np.int64)
        classes = np.unique(values)
        names = [str(c) for c in classes]
    else:
        values = series.astype(str).to_numpy()
        classes = np.unique(values)
        names = [str(c) for c in classes]
    if len(classes) < 2:
        raise DataError(
            f"{NAME}: {table.path}: label column {column!r} has {len(classes)} distinct "
            f"value(s); at least 2 classes are needed"
        )
    codes = np.searchsorted(classes, values)
    return torch.from_numpy(codes.astype(np.int64)), names


def select_features(table: Table, columns: list[str] | None, exclude: set[str]) -> torch.Tensor:
    """Return the feature matrix ``[N, D]`` float32.

    Args:
        table: The table.
        columns: Feature columns (resolved names), or ``None`` for every numeric
            column not in ``exclude``.
        exclude: The label and split columns.

    Returns:
        The features.

    Raises:
        DataError: On non-numeric feature columns, no feature columns, or NaN/Inf values.
    """
    frame = table.frame
    if columns is None:
        candidates = [c for c in frame.columns if c not in exclude]
        columns = [c for c in candidates if pd.api.types.is_numeric_dtype(frame[c])]
        skipped = [c for c in candidates if c not in columns]
        if skipped and columns:
            _log.warning("%s: ignoring non-numeric columns %s of %s", NAME, skipped, table.path)
        if not columns:
            raise DataError(
                f"{NAME}: {table.path} has no numeric feature columns besides the label"
                + (f" (non-numeric: {', '.join(skipped)})" if skipped else "")
            )
    else:
        clash = [c for c in columns if c in exclude]
        if clash:
            raise DataError(f"{NAME}: feature_columns include the label/split column {clash}")
        bad = [c for c in columns if not pd.api.types.is_numeric_dtype(frame[c])]
        if bad:
            raise DataError(
                f"{NAME}: {table.path}: feature columns {', '.join(bad)} are not numeric"
            )
    values = frame[columns].to_numpy(dtype=np.float64)
    nonfinite = ~np.isfinite(values).all(axis=1)
    if nonfinite.any():
        raise DataError(
            f"{NAME}: {table.path}: {int(nonfinite.sum())} rows have NaN or infinite features "
            f"(first: row {_first_bad_row(nonfinite)}, counting data rows from 0)"
        )
    return torch.from_numpy(values.astype(np.float32))


def split_codes(table: Table, column: str) -> np.ndarray:
    """Read a split column into ``"train"`` / ``"val"`` / ``"test"`` values.

    Raises:
        DataError: Listing values that are not train / val / test.
    """
    raw = table.frame[column].astype(str).str.strip().str.lower()
    unknown = sorted(set(raw) - set(SPLIT_VALUES))
    if unknown:
        raise DataError(
            f"{NAME}: {table.path}: split column {column!r} has values {unknown[:5]}; "
            f"use train, val or test"
        )
    return raw.map(SPLIT_VALUES).to_numpy()


class Embeddings(Dataset):
    """Feature vectors from a table file: one row per sample, feature columns and a label.

    Args:
        label_column (str | int, optional): Label column name, or a position (an
            integer; ``-1`` is the last). For a ``.npy`` array the default means the
            last column. (default: ``"label"``)
        split_column (str, optional): Column with train / val / test per row; a column
            named ``split`` is used when present. Without one, the split is seeded and
            stratified (80/10/10 by default). (default: None)
        feature_columns (list | str, optional): Feature columns (names, positions, or a
            comma-separated string); by default every other numeric column. (default: None)
        val_fraction (float, optional): Validation fraction of a random split, or of the
            training rows when the split column has no ``val`` rows. (default: 0.1)
        test_fraction (float, optional): Test fraction of a random split. (default: 0.1)
    """

    needs_files: ClassVar[bool] = True

    def __init__(
        self,
        label_column: str | int = "label",
        split_column: str | None = None,
        feature_columns: list[str] | str | None = None,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
    ) -> None:
        if not isinstance(label_column, (str, int)) or isinstance(label_column, bool):
            raise ConfigError(f"label_column must be a column name or index, got {label_column!r}")
        if split_column is not None and not isinstance(split_column, (str, int)):
            raise ConfigError(f"split_column must be a column name, got {split_column!r}")
        self.label_column = label_column
        self.split_column = split_column
        self.feature_columns = _parse_feature_columns(feature_columns)
        self.val_fraction, self.test_fraction = parse_fractions(val_fraction, test_fraction)

    def load(
        self, *, root: Path | None = None, download: bool = False, seed: int = 0
    ) -> DataSplits:
        """Read the table file given as ``root``.

        Args:
            root: The table file (``.csv``, ``.tsv``, ``.parquet``, ``.npy``, ``.npz``).
            download: Not supported.
            seed: Seed of the random split.

        Returns:
            float32 vectors ``[N, D]`` and int64 labels.

        Raises:
            DataError: If the file is missing or malformed (see the module docs).
        """
        if root is None:
            raise DataError(
                f"{NAME}: pass --data-root FILE, a table with one row per sample "
                f"({', '.join(TABLE_SUFFIXES)}); there is nothing to --download"
            )
        table = read_table(Path(root).expanduser())
        label = self._label_column(table)
        split = self._split_column(table)
        exclude = {label} | ({split} if split else set())
        features = None
        if self.feature_columns is not None:
            features = [resolve_column(table, c, "feature") for c in self.feature_columns]
        x = select_features(table, features, exclude)
        y, names = encode_labels(table, label)
        data = Split(x, y)
        if split is None:
            train, val, test = split_three(
                NAME, data, self.val_fraction, self.test_fraction, seed, names
            )
        else:
            train, val, test = self._split_by_column(table, split, data, seed, names)
        return DataSplits(train, val, test, len(names), "vectors", names, NAME)

    def _label_column(self, table: Table) -> str:
        default = self.label_column == "label" and "label" not in table.frame.columns
        if default and table.positional:
            return str(table.frame.columns[-1])
        return resolve_column(table, self.label_column, "label")

    def _split_column(self, table: Table) -> str | None:
        if self.split_column is not None:
            return resolve_column(table, self.split_column, "split")
        return "split" if "split" in table.frame.columns else None

    def _split_by_column(
        self, table: Table, column: str, data: Split, seed: int, names: list[str]
    ) -> tuple[Split, Split, Split]:
        codes = split_codes(table, column)
        parts = {
            p: data.subset(torch.from_numpy(np.flatnonzero(codes == p)))
            for p in ("train", "val", "test")
        }
        for part in ("train", "test"):
            if len(parts[part]) == 0:
                raise DataError(f"{NAME}: {table.path}: no rows have {column}={part}")
        if len(parts["val"]) == 0:
            parts["train"], parts["val"] = carve_validation(
                NAME, parts["train"], self.val_fraction, seed, names
            )
        return parts["train"], parts["val"], parts["test"]
