"""``digits``: scikit-learn's bundled 8x8 handwritten digits, the offline default."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch

from graphforge.builtin.datasets._common import parse_fractions, split_three
from graphforge.core.data import DataSplits, Split
from graphforge.core.dataset import Dataset

NAME = "digits"


class Digits(Dataset):
    """scikit-learn's 1,797 8x8 digit images (0..9), shipped with the package.

    Images are ``[N, 1, 8, 8]`` float32 in ``[0, 1]`` (pixel / 16), split into
    seeded, stratified train / validation / test parts. Needs no files and no
    network, so ``root`` and ``download`` are ignored.

    Args:
        val_fraction (float, optional): Fraction of samples for validation. (default: 0.1)
        test_fraction (float, optional): Fraction of samples for testing. (default: 0.1)
    """

    needs_files: ClassVar[bool] = False

    def __init__(self, val_fraction: float = 0.1, test_fraction: float = 0.1) -> None:
        self.val_fraction, self.test_fraction = parse_fractions(val_fraction, test_fraction)

    def load(
        self, *, root: Path | None = None, download: bool = False, seed: int = 0
    ) -> DataSplits:
        """Load the digits and split them with ``seed``.

        Args:
            root: Ignored.
            download: Ignored.
            seed: Seed of the stratified split.

        Returns:
            Images ``[N, 1, 8, 8]`` float32 with labels 0..9.
        """
        from sklearn.datasets import load_digits

        bunch: Any = load_digits()
        x = torch.from_numpy(bunch.images).float().div_(16.0).unsqueeze(1)
        y = torch.from_numpy(bunch.target).long()
        class_names = [str(c) for c in bunch.target_names]
        train, val, test = split_three(
            NAME, Split(x, y), self.val_fraction, self.test_fraction, seed, class_names
        )
        return DataSplits(train, val, test, len(class_names), "images", class_names, NAME)
