"""Base class of converter plugins (data -> graphs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from torch import nn

from graphforge.core.data import DataSplits, InputSpec
from graphforge.errors import ConfigError


class Converter:
    """Turns samples into graphs.

    Two levels exist:

    * ``level = "sample"``: one graph per sample. :meth:`build` returns an
      ``nn.Module`` that maps a batch of inputs to the model's input (a PyG
      ``Batch`` or a tensor); it runs inside the model's forward pass, so it may
      have learnable parameters.
    * ``level = "dataset"``: one graph over the whole dataset (similarity graphs)
      or a graph that summarises it (SOM). :meth:`convert` returns a PyG ``Data``
      with ``y`` and ``train_mask`` / ``val_mask`` / ``test_mask`` when the nodes are
      the samples; when samples map onto nodes instead (e.g. each sample onto its
      best-matching SOM neuron) it sets ``train_index`` / ``val_index`` / ``test_index``
      (the node of each sample) and ``train_y`` / ``val_y`` / ``test_y`` (their labels).

    Subclasses take their options as keyword arguments in ``__init__``.
    """

    #: ``"sample"`` or ``"dataset"``.
    level: ClassVar[Literal["sample", "dataset"]] = "sample"
    #: Input kinds this converter accepts (see :class:`graphforge.InputSpec`).
    inputs: ClassVar[frozenset[str]] = frozenset({"images", "vectors"})

    #: Shape of one sample for each input kind graphforge does not know itself (e.g.
    #: ``{"points": (64, 3)}``); :mod:`graphforge.testing` feeds such samples to the plugin.
    example_shapes: ClassVar[dict[str, tuple[int, ...]]] = {}

    def check_input(self, spec: InputSpec) -> None:
        """Raise :class:`ConfigError` if this converter cannot take ``spec``."""
        if spec.kind not in self.inputs:
            raise ConfigError(
                f"converter {self.registry_name()!r} takes {sorted(self.inputs)} input, "
                f"but the dataset gives {spec.kind}"
            )

    def check_data(self, data: DataSplits) -> None:
        """Raise :class:`ConfigError` if the options cannot work on ``data`` (optional;
        called before the run directory is created)."""

    def fit(self, data: DataSplits) -> None:
        """Fit the converter on the data before its module is built (optional).

        For per-sample converters that learn from the whole training split rather than
        by gradient descent (e.g. feature selection from a self-organising map). Only
        ``data.train`` may be used for fitting. Whatever :meth:`build` then needs for
        reloading must live in the module's buffers, since only the module's state dict
        is saved in the checkpoint.
        """

    def report(self, rundir: Any) -> dict[str, Any]:
        """Add converter-specific results to the run after training (optional).

        Args:
            rundir: The :class:`graphforge.engine.rundir.RunDirectory`; extra files may be
                written there (atomically, through :mod:`graphforge.io`).

        Returns:
            JSON-serialisable values merged into ``metrics.json``.
        """
        return {}

    def output_spec(self, spec: InputSpec) -> InputSpec:
        """Return what this converter produces from input ``spec``."""
        raise NotImplementedError

    def build(self, spec: InputSpec) -> nn.Module:
        """Return the module that converts a batch (``level = "sample"`` only)."""
        raise NotImplementedError(f"{type(self).__name__} is not a per-sample converter")

    def convert(self, data: DataSplits) -> Any:
        """Return one graph over ``data`` (``level = "dataset"`` only)."""
        raise NotImplementedError(f"{type(self).__name__} is not a dataset converter")

    def write_plots(self, history: list[dict[str, Any]], plot_dir: Path) -> list[Path]:
        """Write plugin-specific plots into ``plot_dir`` after training (optional).

        Args:
            history: The run's per-epoch rows (including ``graphforge_epoch_metrics``).
            plot_dir: The run's ``plots/`` folder.

        Returns:
            The files written.
        """
        return []

    def registry_name(self) -> str:
        """Name used in messages: the name it was registered under, else its class's ``name``."""
        return getattr(self, "_registered_name", None) or getattr(type(self), "name", type(self).__name__)

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({opts})"
