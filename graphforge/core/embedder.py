"""Base class of embedder plugins (samples -> feature vectors)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch

from graphforge.core.data import InputSpec
from graphforge.errors import ConfigError


class Embedder:
    """Turns raw samples into one feature vector each.

    Dataset-level converters such as ``similarity`` use an embedder to place each
    sample in a space where distances mean something (raw pixels, or the features
    of a pretrained CNN) before they join similar samples by edges. Results are
    cached on disk by :func:`graphforge.embedding_cache.cached_embed`, keyed by
    :meth:`cache_key` and the input's content, so :meth:`cache_key` must name
    everything that changes the output.

    Subclasses take their options as keyword arguments in ``__init__``.
    """

    #: Input kinds this embedder accepts (see :class:`graphforge.InputSpec`).
    inputs: ClassVar[frozenset[str]] = frozenset({"images"})

    #: Shape of one sample for each input kind graphforge does not know itself (e.g.
    #: ``{"points": (64, 3)}``); :mod:`graphforge.testing` feeds such samples to the plugin.
    example_shapes: ClassVar[dict[str, tuple[int, ...]]] = {}

    #: Options :mod:`graphforge.testing` builds the embedder with, for options that have
    #: no usable default (e.g. ``{"weights": "random", "image_size": 32}``).
    contract_options: ClassVar[dict[str, Any]] = {}

    #: Bump when a change of the code changes the vectors, so old cache files are not reused.
    cache_version: ClassVar[int] = 1

    @classmethod
    def contract_setup(cls, workdir: Path) -> dict[str, Any]:
        """Options for :mod:`graphforge.testing`'s contract check, which may first create
        files in the empty ``workdir`` (e.g. a trained run to embed with). The default
        returns :attr:`contract_options`."""
        return dict(cls.contract_options)

    def check_input(self, spec: InputSpec) -> None:
        """Raise :class:`ConfigError` if this embedder cannot take ``spec``."""
        if spec.kind not in self.inputs:
            raise ConfigError(
                f"embedder {self.registry_name()!r} takes {sorted(self.inputs)} input, "
                f"but the dataset gives {spec.kind}"
            )

    def output_dim(self, spec: InputSpec) -> int:
        """Return the length ``D`` of the vector made for one sample of ``spec``."""
        raise NotImplementedError

    def embed(self, x: torch.Tensor, device: torch.device, batch_size: int) -> torch.Tensor:
        """Embed every sample of ``x``.

        Args:
            x (torch.Tensor): A dataset split's samples as they are: images ``[N, C, H, W]``
                (uint8 in 0..255 or float in [0, 1]), vectors ``[N, D]``, or a plugin's kind.
            device (torch.device): Where to compute.
            batch_size (int): Samples per forward pass.

        Returns:
            ``[N, output_dim]`` float32 tensor on the CPU.
        """
        raise NotImplementedError

    def cache_key(self) -> dict[str, Any]:
        """Return JSON-serialisable values that determine the output (besides the input).

        The default holds the registered name, the class, :attr:`cache_version` and
        every public attribute; override to add what attributes miss (e.g. the
        checksum of a weights file).
        """
        cls = type(self)
        return {
            "embedder": self.registry_name(),
            "class": f"{cls.__module__}.{cls.__qualname__}",
            "version": self.cache_version,
            "options": {k: _plain(v) for k, v in sorted(vars(self).items()) if not k.startswith("_")},
        }

    def registry_name(self) -> str:
        """Name used in messages: the name it was registered under, else its class's ``name``."""
        return getattr(self, "_registered_name", None) or getattr(type(self), "name", type(self).__name__)

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({opts})"


def _plain(value: Any) -> Any:
    """``value`` as JSON-serialisable data (tuples as lists, unknown objects as their repr)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return repr(value) if not hasattr(value, "__fspath__") else str(value)
