"""``cifar10``: CIFAR-10 from its python-pickle batches.

The batches are read with a restricted unpickler that only builds plain containers
and numpy arrays, so a tampered file cannot run code.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from graphforge.builtin.datasets._common import (
    carve_validation,
    check_labels,
    parse_fraction,
    resolve_root,
)
from graphforge.core.data import DataSplits, Split
from graphforge.core.dataset import Dataset
from graphforge.errors import DataError

NAME = "cifar10"
FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META = "batches.meta"
CLASS_NAMES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
_PIXELS = 3 * 32 * 32

# What a CIFAR pickle may reference: numpy's array reconstruction, nothing else.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _unpickle(path: Path) -> dict[Any, Any]:
    try:
        with open(path, "rb") as f:
            obj = _ArrayUnpickler(f, encoding="bytes").load()
    except (
        OSError,
        EOFError,
        pickle.UnpicklingError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
        KeyError,
    ) as exc:
        raise DataError(
            f"{NAME}: cannot read {path} ({type(exc).__name__}: {exc}); the file is corrupt "
            f"or not a CIFAR-10 python batch"
        ) from None
    if not isinstance(obj, dict):
        raise DataError(f"{NAME}: {path} holds a {type(obj).__name__}, expected a dict")
    return obj


def _get(batch: dict[Any, Any], key: str, path: Path) -> Any:
    for k in (key.encode(), key):
        if k in batch:
            return batch[k]
    raise DataError(f"{NAME}: {path} has no {key!r} entry")


def read_batch(path: Path) -> Split:
    """Read one CIFAR-10 batch file.

    Args:
        path: A ``data_batch_*`` or ``test_batch`` file.

    Returns:
        uint8 images ``[N, 3, 32, 32]`` and int64 labels.

    Raises:
        DataError: If the file is unreadable or its arrays have the wrong shape.
    """
    batch = _unpickle(path)
    data = np.asarray(_get(batch, "data", path))
    labels = np.asarray(_get(batch, "labels", path))
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != _PIXELS:
        raise DataError(
            f"{NAME}: {path}: 'data' must be uint8 [N, {_PIXELS}], found {data.dtype} {data.shape}"
        )
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{NAME}: {path}: 'labels' must be a list of integers")
    if len(labels) != len(data):
        raise DataError(f"{NAME}: {path} has {len(data)} images but {len(labels)} labels")
    y = torch.from_numpy(labels.astype(np.int64))
    check_labels(NAME, y, len(CLASS_NAMES), str(path))
    x = torch.from_numpy(np.ascontiguousarray(data)).view(-1, 3, 32, 32)
    return Split(x, y)


def _read_class_names(path: Path) -> list[str]:
    if not path.is_file():
        return list(CLASS_NAMES)
    names = _get(_unpickle(path), "label_names", path)
    if not isinstance(names, (list, tuple)) or len(names) != len(CLASS_NAMES):
        raise DataError(f"{NAME}: {path}: 'label_names' must list {len(CLASS_NAMES)} names")
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]


def find_batch_dir(root: Path) -> Path | None:
    """Return the directory holding the batches (``root/cifar-10-batches-py`` or ``root``).

    Raises:
        DataError: If a directory has some batch files but not all.
    """
    for directory in (root / FOLDER, root):
        needed = (*TRAIN_BATCHES, TEST_BATCH)
        present = [n for n in needed if (directory / n).is_file()]
        if len(present) == len(needed):
            return directory
        if present:
            missing = ", ".join(n for n in needed if n not in present)
            raise DataError(f"{NAME}: {directory} is missing {missing}")
    return None


class Cifar10(Dataset):
    """CIFAR-10 colour images (50,000 train / 10,000 test, 10 classes, 32x32).

    Images are ``[N, 3, 32, 32]`` uint8; the validation split is a seeded,
    stratified part of the training batches.

    Args:
        val_fraction (float, optional): Fraction of the training batches used for
            validation. (default: 0.1)
    """

    needs_files: ClassVar[bool] = True

    def __init__(self, val_fraction: float = 0.1) -> None:
        self.val_fraction = parse_fraction("val_fraction", val_fraction)

    def load(
        self, *, root: Path | None = None, download: bool = False, seed: int = 0
    ) -> DataSplits:
        """Read the batches under ``root`` (downloading them first if allowed and missing).

        Args:
            root: Directory holding ``cifar-10-batches-py/`` (or the batches themselves).
            download: Fetch missing files with torchvision.
            seed: Seed of the validation split.

        Returns:
            uint8 images ``[N, 3, 32, 32]`` and int64 labels.

        Raises:
            DataError: If files are missing or corrupt.
        """
        directory = resolve_root(NAME, root, download)
        batch_dir = find_batch_dir(directory)
        if batch_dir is None and download:
            _download(directory)
            batch_dir = find_batch_dir(directory)
        if batch_dir is None:
            hint = ""
            if (directory / "cifar-10-python.tar.gz").is_file():
                hint = " (cifar-10-python.tar.gz is there: extract it first)"
            raise DataError(
                f"{NAME}: no CIFAR-10 batches found under {directory} (looked for "
                f"{FOLDER}/data_batch_1..5 and test_batch){hint}; pass --data-root DIR "
                f"containing them, or --download to fetch them"
            )
        parts = [read_batch(batch_dir / n) for n in TRAIN_BATCHES]
        train = Split(torch.cat([p.x for p in parts]), torch.cat([p.y for p in parts]))
        test = read_batch(batch_dir / TEST_BATCH)
        names = _read_class_names(batch_dir / META)
        train, val = carve_validation(NAME, train, self.val_fraction, seed, names)
        return DataSplits(train, val, test, len(names), "images", names, NAME)


def _download(root: Path) -> None:
    import torchvision.datasets

    try:
        torchvision.datasets.CIFAR10(str(root), train=True, download=True)
    except Exception as exc:  # network errors come in many types
        raise DataError(
            f"{NAME}: download into {root} failed ({type(exc).__name__}: {exc}); "
            f"fetch the files yourself and pass --data-root DIR"
        ) from exc
