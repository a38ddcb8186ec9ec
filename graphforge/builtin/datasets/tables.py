"""Read a table of samples (CSV, TSV, Parquet, NPY, NPZ) into a pandas DataFrame."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from graphforge.errors import DataError

#: Suffixes :func:`read_table` understands (CSV / TSV may also end in ``.gz``).
TABLE_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq", ".npy", ".npz")
#: Array names tried in a ``.npz`` file: (features, labels).
NPZ_KEYS = (("x", "y"), ("embeddings", "labels"))


@dataclass
class Table:
    """A table read from a file.

    Attributes:
        frame: One row per sample; column names are strings.
        path: The file it came from.
        positional: Whether columns are positions (``"0"``, ``"1"``...) of an array file
            rather than names from a header.
    """

    frame: pd.DataFrame
    path: Path
    positional: bool = False


def _table_format(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz" and len(suffixes) >= 2:
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def _array_frame(path: Path, array: np.ndarray) -> pd.DataFrame:
    if array.ndim != 2:
        raise DataError(
            f"embeddings: {path} holds a {array.ndim}-D array {array.shape}; expected 2-D "
            f"[samples, features(+label)]"
        )
    return pd.DataFrame(array, columns=[str(i) for i in range(array.shape[1])])


def _read_npz(path: Path) -> pd.DataFrame:
    with np.load(path, allow_pickle=False) as archive:
        keys = set(archive.files)
        for x_key, y_key in NPZ_KEYS:
            if x_key in keys and y_key in keys:
                frame = _array_frame(path, archive[x_key])
                labels = archive[y_key]
                if labels.ndim != 1 or len(labels) != len(frame):
                    raise DataError(
                        f"embeddings: {path}: {y_key!r} must be 1-D with one label per row of "
                        f"{x_key!r} ({len(frame)}), found shape {labels.shape}"
                    )
                frame["label"] = labels
                if "split" in keys:
                    frame["split"] = archive["split"]
                return frame
    pairs = " or ".join(f"{x!r}/{y!r}" for x, y in NPZ_KEYS)
    raise DataError(f"embeddings: {path} must hold arrays {pairs}; found {sorted(keys) or 'none'}")


def read_table(path: Path) -> Table:
    """Read a samples table.

    ``.npy`` is a 2-D numeric array whose columns are named ``"0"``, ``"1"``, ...;
    ``.npz`` holds features ``x`` and labels ``y`` (or ``embeddings`` / ``labels``,
    optionally ``split``), giving feature columns ``"0"``... plus ``label``.

    Args:
        path: A ``.csv``, ``.tsv``, ``.parquet``, ``.npy`` or ``.npz`` file.

    Returns:
        The table.

    Raises:
        DataError: If the file is missing, of an unknown kind, or unreadable.
    """
    if not path.is_file():
        what = "a directory" if path.is_dir() else "missing"
        raise DataError(
            f"embeddings: --data-root {path} is {what}; pass the table file itself "
            f"({', '.join(TABLE_SUFFIXES)})"
        )
    fmt = _table_format(path)
    positional = fmt in (".npy", ".npz")
    try:
        if fmt in (".csv", ".tsv"):
            frame = pd.read_csv(path, sep="\t" if fmt == ".tsv" else ",")
        elif fmt in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        elif fmt == ".npy":
            frame = _array_frame(path, np.load(path, allow_pickle=False))
        elif fmt == ".npz":
            frame = _read_npz(path)
        else:
            raise DataError(
                f"embeddings: cannot tell the format of {path}; use one of "
                f"{', '.join(TABLE_SUFFIXES)}"
            )
    except DataError:
        raise
    except Exception as exc:  # pandas, pyarrow and numpy raise many error types
        reason = " ".join(str(exc).split())  # pandas' messages may span lines or end with a newline
        raise DataError(f"embeddings: cannot read {path} ({type(exc).__name__}: {reason})") from None
    frame.columns = [str(c) for c in frame.columns]
    if frame.empty:
        raise DataError(f"embeddings: {path} has no rows")
    return Table(frame, path, positional)
