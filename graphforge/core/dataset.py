"""Base class of dataset plugins."""

from __future__ import annotations

import abc
from pathlib import Path
from typing import ClassVar

from graphforge.core.data import DataSplits


class Dataset(abc.ABC):
    """A source of labelled samples split into train / validation / test.

    Subclasses take their own options as keyword arguments in ``__init__`` (they
    become ``-o key=value`` on the CLI) and implement :meth:`load`.
    """

    #: Whether the dataset needs files (``--data-root``) or can download them.
    needs_files: ClassVar[bool] = True

    @abc.abstractmethod
    def load(self, *, root: Path | None, download: bool, seed: int) -> DataSplits:
        """Load the data.

        Args:
            root: Directory (or file) given by ``--data-root``; ``None`` when not given.
            download: Whether fetching missing files from the internet is allowed.
            seed: Seed for any random split made here.

        Returns:
            The data with train, validation and test splits.

        Raises:
            graphforge.errors.DataError: If files are missing or malformed; the message
                says how to get them.
        """

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({opts})"
