"""``image-folder``: images sorted into one sub-folder per class.

Two layouts: ``ROOT/<class>/*.png`` (split here, seeded and stratified), or
``ROOT/train/<class>/...`` and ``ROOT/test/<class>/...`` with an optional
``ROOT/val/<class>/...`` (carved from train when absent).
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from graphforge.builtin.datasets._common import (
    carve_validation,
    parse_bool,
    parse_fractions,
    split_three,
)
from graphforge.core.data import DataSplits, Split
from graphforge.core.dataset import Dataset
from graphforge.errors import ConfigError, DataError

log = logging.getLogger("graphforge")

NAME = "image-folder"
#: File extensions read as images (torchvision's ImageFolder list).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def parse_size(value: Any) -> tuple[int, int] | None:
    """Read the ``size`` option: ``32``, ``"32"``, ``"28x32"`` (H x W) or ``None``.

    Returns:
        ``(height, width)``, or ``None`` to keep the images' own (equal) size.

    Raises:
        ConfigError: If the value is not a positive size.
    """
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "null")):
        return None
    if isinstance(value, bool):
        raise ConfigError(f"size must be an integer, 'HxW' or None, got {value!r}")
    if isinstance(value, (list, tuple)) and len(value) == 2:
        parts = list(value)
    else:
        parts = str(value).lower().split("x")
        if len(parts) == 1:
            parts = parts * 2
    try:
        height, width = (int(p) for p in parts)
    except (TypeError, ValueError):
        raise ConfigError(f"size must be an integer, 'HxW' or None, got {value!r}") from None
    if height < 1 or width < 1:
        raise ConfigError(f"size must be positive, got {value!r}")
    return height, width


def list_classes(directory: Path) -> dict[str, list[Path]]:
    """Return ``{class name: sorted image files}`` for the class folders of ``directory``.

    Raises:
        DataError: If there are no class folders, or a class folder has no images.
    """
    base = directory.resolve()
    outside: list[Path] = []

    def inside(p: Path) -> bool:
        # Symbolic links may point anywhere; only what resolves inside the data folder is read.
        ok = p.resolve().is_relative_to(base)
        if not ok:
            outside.append(p)
        return ok

    classes = sorted(p for p in directory.iterdir() if p.is_dir() and not p.name.startswith(".") and inside(p))
    if not classes:
        raise DataError(
            f"{NAME}: {directory} has no class sub-folders (expected {directory}/<class>/<image>)"
        )
    files: dict[str, list[Path]] = {}
    for folder in classes:
        images = sorted(
            p
            for p in folder.rglob("*")
            if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".") and inside(p)
        )
        if not images:
            raise DataError(
                f"{NAME}: class folder {folder} has no images ({', '.join(IMAGE_EXTENSIONS)})"
            )
        files[folder.name] = images
    if outside:
        log.warning("%s: skipped %d symbolic link(s) that point outside %s (e.g. %s)", NAME, len(outside), directory,
                    outside[0])
    return files


def _read_image(path: Path, mode: str, size: tuple[int, int] | None) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img = img.convert(mode)
            if size is not None and img.size != (size[1], size[0]):
                img = img.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            array = np.asarray(img, dtype=np.uint8)
    except (
        OSError,
        UnidentifiedImageError,
        Image.DecompressionBombError,
        ValueError,
        SyntaxError,
    ) as exc:
        raise DataError(f"{NAME}: cannot read image {path} ({type(exc).__name__}: {exc})") from None
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def read_images(
    files: list[Path], *, grayscale: bool, size: tuple[int, int] | None
) -> torch.Tensor:
    """Read image files into one uint8 tensor ``[N, C, H, W]``.

    Args:
        files: Image paths.
        grayscale: Convert to one channel (else RGB).
        size: ``(H, W)`` to resize to, or ``None`` to require equal sizes.

    Returns:
        The images.

    Raises:
        DataError: If an image cannot be read, or sizes differ with ``size=None``.
    """
    mode = "L" if grayscale else "RGB"
    with ThreadPoolExecutor(max_workers=8) as pool:  # PIL decodes without the GIL
        arrays = list(pool.map(lambda p: _read_image(p, mode, size), files))
    first = arrays[0].shape
    for path, array in zip(files, arrays, strict=True):
        if array.shape != first:
            raise DataError(
                f"{NAME}: {path} is {array.shape[1]}x{array.shape[2]} but {files[0]} is "
                f"{first[1]}x{first[2]}; set the size option (e.g. -o size=32) to resize"
            )
    return torch.from_numpy(np.stack(arrays))


class ImageFolder(Dataset):
    """Images in one sub-folder per class, read with PIL.

    Args:
        size (int | str | None, optional): Resize every image to ``size x size``
            (or ``"HxW"``); ``None`` keeps them as they are but requires equal sizes.
            (default: 32)
        grayscale (bool, optional): Read one channel instead of RGB. (default: False)
        val_fraction (float, optional): Validation fraction when it is carved from the
            training images. (default: 0.1)
        test_fraction (float, optional): Test fraction when there is no ``test/``
            folder. (default: 0.1)
    """

    needs_files: ClassVar[bool] = True

    def __init__(
        self,
        size: int | str | None = 32,
        grayscale: bool = False,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
    ) -> None:
        self.size = parse_size(size)
        self.grayscale = parse_bool("grayscale", grayscale)
        self.val_fraction, self.test_fraction = parse_fractions(val_fraction, test_fraction)

    def _read(self, files: dict[str, list[Path]], class_names: list[str]) -> Split:
        paths = [p for name in class_names for p in files[name]]
        labels = [i for i, name in enumerate(class_names) for _ in files[name]]
        x = read_images(paths, grayscale=self.grayscale, size=self.size)
        return Split(x, torch.tensor(labels, dtype=torch.long))

    def load(
        self, *, root: Path | None = None, download: bool = False, seed: int = 0
    ) -> DataSplits:
        """Read the images under ``root``.

        Args:
            root: The image folder.
            download: Not supported (there is nothing to fetch).
            seed: Seed of the splits made here.

        Returns:
            uint8 images ``[N, C, H, W]`` and int64 labels; classes in sorted folder order.

        Raises:
            DataError: If the folder is missing or empty, an image is unreadable, or
                the class folders of train and test differ.
        """
        if root is None:
            raise DataError(
                f"{NAME}: pass --data-root DIR, a folder with one sub-folder of images per "
                f"class (or train/ and test/ folders laid out that way); --download cannot "
                f"fetch it"
            )
        root = Path(root).expanduser()
        if not root.is_dir():
            raise DataError(f"{NAME}: --data-root {root} is not a directory")
        if (root / "train").is_dir() and (root / "test").is_dir():
            return self._load_presplit(root, seed)
        files = list_classes(root)
        names = sorted(files)
        data = self._read(files, names)
        train, val, test = split_three(
            NAME, data, self.val_fraction, self.test_fraction, seed, names
        )
        return DataSplits(train, val, test, len(names), "images", names, NAME)

    def _load_presplit(self, root: Path, seed: int) -> DataSplits:
        parts = {"train": list_classes(root / "train"), "test": list_classes(root / "test")}
        if (root / "val").is_dir():
            parts["val"] = list_classes(root / "val")
        names = sorted(parts["train"])
        for part, files in parts.items():
            if sorted(files) != names:
                missing = sorted(set(names) - set(files))
                extra = sorted(set(files) - set(names))
                raise DataError(
                    f"{NAME}: class folders of {root / part} differ from {root / 'train'}: "
                    f"missing {missing or 'none'}, extra {extra or 'none'}"
                )
        train = self._read(parts["train"], names)
        test = self._read(parts["test"], names)
        if "val" in parts:
            val = self._read(parts["val"], names)
        else:
            train, val = carve_validation(NAME, train, self.val_fraction, seed, names)
        for part, split in (("val", val), ("test", test)):
            if len(split) and split.x.shape[1:] != train.x.shape[1:]:
                raise DataError(
                    f"{NAME}: {part} images are {tuple(split.x.shape[1:])} but train images are "
                    f"{tuple(train.x.shape[1:])}; set the size option to resize"
                )
        return DataSplits(train, val, test, len(names), "images", names, NAME)
