"""Base class of dataset plugins."""

from __future__ import annotations

import abc
import functools
import os
from pathlib import Path
from typing import Any, ClassVar

from graphforge.checks import check_int
from graphforge.core.data import DataSplits
from graphforge.errors import ConfigError


def _checked_load(load: Any) -> Any:
    """Wrap a subclass's ``load`` so every dataset refuses bad arguments with graphforge's errors."""

    @functools.wraps(load)
    def wrapper(self: Dataset, *, root: Path | None = None, download: bool = False, seed: int = 0) -> DataSplits:
        if root is not None and not isinstance(root, (str, os.PathLike)):
            raise ConfigError(f"root must be a path or None, got {type(root).__name__} {root!r}")
        if not isinstance(download, bool):
            raise ConfigError(f"download must be true or false, got {download!r}")
        check_int(seed, "seed", minimum=0)
        return load(self, root=Path(root) if root is not None else None, download=download, seed=int(seed))

    wrapper.__graphforge_checked__ = True  # type: ignore[attr-defined]
    return wrapper


class Dataset(abc.ABC):
    """A source of labelled samples split into train / validation / test.

    Subclasses take their own options as keyword arguments in ``__init__`` (they
    become ``-o key=value`` on the CLI) and implement :meth:`load`.
    """

    #: Whether the dataset needs files (``--data-root``) or can download them.
    needs_files: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        load = cls.__dict__.get("load")
        if load is not None and not getattr(load, "__graphforge_checked__", False):
            cls.load = _checked_load(load)  # type: ignore[method-assign]

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
