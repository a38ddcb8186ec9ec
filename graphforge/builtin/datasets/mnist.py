"""The MNIST family from IDX files: ``mnist``, ``fashion-mnist``, ``kmnist`` and EMNIST.

Files are looked for where torchvision puts them (``ROOT/MNIST/raw/``,
``ROOT/FashionMNIST/raw/``, ``ROOT/KMNIST/raw/``, ``ROOT/EMNIST/raw/``), then in
``ROOT/<folder>/`` and ``ROOT/`` itself, raw or ``.gz``. ``--download`` asks torchvision
to fetch them; graphforge then reads them with its own strict IDX reader.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from graphforge.builtin.datasets._common import (
    carve_validation,
    check_labels,
    parse_fraction,
    resolve_root,
)
from graphforge.builtin.datasets.idx import read_idx_images, read_idx_labels
from graphforge.core.data import DataSplits, Split
from graphforge.core.dataset import Dataset
from graphforge.errors import DataError

_DIGITS = tuple(string.digits)
# EMNIST balanced / bymerge merge the lowercase letters that look like their capitals.
_EMNIST_MERGED = tuple(string.digits + string.ascii_uppercase + "abdefghnqrt")
_EMNIST_ALL = tuple(string.digits + string.ascii_uppercase + string.ascii_lowercase)
_FASHION = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
_KMNIST = ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo")  # hiragana, romanised


@dataclass(frozen=True)
class IdxVariant:
    """Where one MNIST-style dataset's files live and how to read them.

    Attributes:
        name: Registry name.
        folder: torchvision's folder for it under the root (``MNIST``, ``EMNIST``...).
        prefix: File name prefix (``""`` or ``"emnist-letters-"``).
        test_stem: Stem of the test files (``t10k`` for MNIST, ``test`` for EMNIST).
        class_names: Class names, in label order after ``label_offset``.
        label_offset: Subtracted from the stored labels (1 for EMNIST letters).
        transposed: Whether images are stored transposed (EMNIST).
        torchvision_class: Class in :mod:`torchvision.datasets` that downloads them.
        torchvision_kwargs: Extra arguments for it (EMNIST's ``split``).
    """

    name: str
    folder: str
    prefix: str
    test_stem: str
    class_names: tuple[str, ...]
    label_offset: int = 0
    transposed: bool = False
    torchvision_class: str = "MNIST"
    torchvision_kwargs: tuple[tuple[str, str], ...] = ()

    def file_names(self) -> dict[str, str]:
        """Return the four file names, keyed ``train_images``, ``train_labels``, ..."""
        stems = {"train": "train", "test": self.test_stem}
        return {
            f"{part}_{what}": f"{self.prefix}{stem}-{what}-idx{3 if what == 'images' else 1}-ubyte"
            for part, stem in stems.items()
            for what in ("images", "labels")
        }


def _emnist(split: str, class_names: tuple[str, ...], label_offset: int = 0) -> IdxVariant:
    return IdxVariant(
        name=f"emnist-{split}",
        folder="EMNIST",
        prefix=f"emnist-{split}-",
        test_stem="test",
        class_names=class_names,
        label_offset=label_offset,
        transposed=True,
        torchvision_class="EMNIST",
        torchvision_kwargs=(("split", split),),
    )


VARIANTS: dict[str, IdxVariant] = {
    v.name: v
    for v in (
        IdxVariant("mnist", "MNIST", "", "t10k", _DIGITS),
        IdxVariant(
            "fashion-mnist",
            "FashionMNIST",
            "",
            "t10k",
            _FASHION,
            torchvision_class="FashionMNIST",
        ),
        IdxVariant(
            "kmnist",
            "KMNIST",
            "",
            "t10k",
            _KMNIST,
            torchvision_class="KMNIST",
        ),
        _emnist("letters", tuple(string.ascii_lowercase), label_offset=1),
        _emnist("balanced", _EMNIST_MERGED),
        _emnist("bymerge", _EMNIST_MERGED),
        _emnist("byclass", _EMNIST_ALL),
        _emnist("digits", _DIGITS),
        _emnist("mnist", _DIGITS),
    )
}


def _existing(directory: Path, name: str) -> Path | None:
    for candidate in (directory / name, directory / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _search_dirs(root: Path, variant: IdxVariant) -> tuple[Path, ...]:
    return (root / variant.folder / "raw", root / variant.folder, root)


def find_idx_files(root: Path, variant: IdxVariant) -> dict[str, Path] | None:
    """Find a variant's four IDX files under ``root``.

    Args:
        root: The data root.
        variant: Which dataset.

    Returns:
        The four paths, or ``None`` when no directory holds any of them.

    Raises:
        DataError: If a directory holds some of the files but not all.
    """
    names = variant.file_names()
    for directory in _search_dirs(root, variant):
        found = {key: _existing(directory, name) for key, name in names.items()}
        present = {k: p for k, p in found.items() if p is not None}
        if len(present) == len(names):
            return present
        if present:
            missing = ", ".join(names[k] for k in names if k not in present)
            raise DataError(
                f"{variant.name}: {directory} holds some of the IDX files but not "
                f"{missing}[.gz]; add them, or pass --download to fetch the full set"
            )
    return None


def _download(root: Path, variant: IdxVariant) -> None:
    import torchvision.datasets

    factory = getattr(torchvision.datasets, variant.torchvision_class)
    try:
        factory(str(root), train=True, download=True, **dict(variant.torchvision_kwargs))
    except Exception as exc:  # network errors come in many types
        raise DataError(
            f"{variant.name}: download into {root} failed ({type(exc).__name__}: {exc}); "
            f"fetch the files yourself and pass --data-root DIR"
        ) from exc


def _read_part(variant: IdxVariant, images_path: Path, labels_path: Path) -> Split:
    images = read_idx_images(images_path)
    labels = read_idx_labels(labels_path)
    if len(images) != len(labels):
        raise DataError(
            f"{variant.name}: {images_path} has {len(images)} images but {labels_path} "
            f"has {len(labels)} labels"
        )
    if variant.transposed:
        images = np.ascontiguousarray(images.transpose(0, 2, 1))
    y = torch.from_numpy(labels.astype(np.int64))
    check_labels(
        variant.name, y, len(variant.class_names), str(labels_path), offset=variant.label_offset
    )
    return Split(torch.from_numpy(images).unsqueeze(1), y - variant.label_offset)


class MnistFamily(Dataset):
    """Base of the IDX-file datasets; subclasses set :attr:`variant`.

    Images are ``[N, 1, 28, 28]`` uint8; the validation split is a seeded,
    stratified part of the training files.

    Args:
        val_fraction (float, optional): Fraction of the training files used for
            validation. (default: 0.1)
    """

    variant: ClassVar[IdxVariant]

    def __init__(self, val_fraction: float = 0.1) -> None:
        self.val_fraction = parse_fraction("val_fraction", val_fraction)

    def load(
        self, *, root: Path | None = None, download: bool = False, seed: int = 0
    ) -> DataSplits:
        """Read the IDX files under ``root`` (downloading them first if allowed and missing).

        Args:
            root: Directory with the files (torchvision's layout or flat).
            download: Fetch missing files with torchvision.
            seed: Seed of the validation split.

        Returns:
            uint8 images ``[N, 1, H, W]`` and int64 labels.

        Raises:
            DataError: If files are missing, corrupt or inconsistent.
        """
        v = self.variant
        directory = resolve_root(v.name, root, download)
        paths = find_idx_files(directory, v)
        if paths is None and download:
            _download(directory, v)
            paths = find_idx_files(directory, v)
        if paths is None:
            looked = ", ".join(str(d) for d in _search_dirs(directory, v))
            raise DataError(
                f"{v.name}: no IDX files found under {directory} (looked for "
                f"{v.file_names()['train_images']}[.gz] and the other three files in {looked}); "
                f"pass --data-root DIR containing them, or --download to fetch them"
            )
        train = _read_part(v, paths["train_images"], paths["train_labels"])
        test = _read_part(v, paths["test_images"], paths["test_labels"])
        if train.x.shape[1:] != test.x.shape[1:]:
            raise DataError(
                f"{v.name}: train images are {tuple(train.x.shape[2:])} but test images are "
                f"{tuple(test.x.shape[2:])}"
            )
        names = list(v.class_names)
        train, val = carve_validation(v.name, train, self.val_fraction, seed, names)
        return DataSplits(train, val, test, len(names), "images", names, v.name)


class Mnist(MnistFamily):
    """MNIST handwritten digits (60,000 train / 10,000 test, 10 classes)."""

    variant = VARIANTS["mnist"]


class FashionMnist(MnistFamily):
    """Fashion-MNIST clothing images (60,000 train / 10,000 test, 10 classes)."""

    variant = VARIANTS["fashion-mnist"]


class Kmnist(MnistFamily):
    """Kuzushiji-MNIST cursive hiragana (60,000 train / 10,000 test, 10 classes)."""

    variant = VARIANTS["kmnist"]


class EmnistLetters(MnistFamily):
    """EMNIST letters a..z (124,800 train / 20,800 test, 26 classes; labels 1..26 -> 0..25)."""

    variant = VARIANTS["emnist-letters"]


class EmnistBalanced(MnistFamily):
    """EMNIST balanced: digits and letters, 47 classes with equal counts."""

    variant = VARIANTS["emnist-balanced"]


class EmnistByMerge(MnistFamily):
    """EMNIST by merge: digits and letters, 47 classes (look-alike cases merged)."""

    variant = VARIANTS["emnist-bymerge"]


class EmnistByClass(MnistFamily):
    """EMNIST by class: digits, upper- and lowercase letters, 62 classes."""

    variant = VARIANTS["emnist-byclass"]


class EmnistDigits(MnistFamily):
    """EMNIST digits (240,000 train / 40,000 test, 10 classes)."""

    variant = VARIANTS["emnist-digits"]


class EmnistMnist(MnistFamily):
    """EMNIST's MNIST-sized digits (60,000 train / 10,000 test, 10 classes)."""

    variant = VARIANTS["emnist-mnist"]


DATASETS: tuple[type[MnistFamily], ...] = (
    Mnist,
    FashionMnist,
    Kmnist,
    EmnistLetters,
    EmnistBalanced,
    EmnistByMerge,
    EmnistByClass,
    EmnistDigits,
    EmnistMnist,
)
