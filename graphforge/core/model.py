"""Base classes of model plugins."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from graphforge.core.data import DataSplits, InputSpec, graph_split_nodes
from graphforge.errors import ConfigError


class Model:
    """A model trained by gradient descent.

    :meth:`build` returns an ``nn.Module`` mapping the converter's output for a
    batch to class logits ``[batch, num_classes]``. Subclasses take their options
    (depth, width, ...) as keyword arguments in ``__init__``.
    """

    #: Input kinds this model accepts (see :class:`graphforge.InputSpec`).
    inputs: ClassVar[frozenset[str]] = frozenset({"vectors"})
    #: Default number of training epochs when ``--epochs`` is not given.
    default_epochs: ClassVar[int] = 30
    #: Peak learning rate of mini-batch training when ``--lr`` is not given (``None``: the
    #: engine's 1e-3). Full-graph training keeps its own default.
    default_lr: ClassVar[float | None] = None

    #: Shape of one sample for each input kind graphforge does not know itself (e.g.
    #: ``{"points": (64, 3)}``); :mod:`graphforge.testing` feeds such samples to the plugin.
    example_shapes: ClassVar[dict[str, tuple[int, ...]]] = {}

    def check_input(self, spec: InputSpec) -> None:
        """Raise :class:`ConfigError` if this model cannot take ``spec``."""
        if spec.kind not in self.inputs:
            raise ConfigError(
                f"model {self.registry_name()!r} takes {sorted(self.inputs)} input, "
                f"but gets {spec.kind}; pick a converter that produces one of those"
            )

    def check_data(self, data: DataSplits) -> None:
        """Raise :class:`ConfigError` if the options cannot work on ``data`` (optional).

        Called before the run directory is created, so a mistake such as a k larger
        than the training set leaves nothing behind.
        """

    def build(self, spec: InputSpec, num_classes: int) -> nn.Module:
        """Return the network for inputs of ``spec`` and ``num_classes`` classes."""
        raise NotImplementedError

    def neighbor_sampling(self, num_nodes: int) -> list[int] | None:
        """Return the fanout per layer for training on a dataset graph of ``num_nodes``
        nodes with neighbour sampling, or ``None`` to train on the whole graph at once
        (the default).

        Each entry is how many neighbours of a node are sampled at that hop (``-1``:
        all); see :mod:`graphforge.engine.sampling`.
        """
        return None

    def write_plots(self, history: list[dict[str, Any]], plot_dir: Path) -> list[Path]:
        """Write plugin-specific plots into ``plot_dir`` after training (optional; see
        :meth:`graphforge.Converter.write_plots`)."""
        return []

    def registry_name(self) -> str:
        """Name used in messages: the name it was registered under, else its class's ``name``."""
        return getattr(self, "_registered_name", None) or getattr(type(self), "name", type(self).__name__)

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({opts})"


class FitModel(Model):
    """A model fitted in one pass instead of by gradient descent (e.g. kNN).

    The engine calls :meth:`fit` on the training features, then
    :meth:`predict_proba` on validation and test features (and on the training
    features when :attr:`score_train` is true), then :meth:`report`. Features are
    ``[N, D]`` float tensors (images arrive flattened).
    """

    default_epochs: ClassVar[int] = 1
    #: Whether the engine predicts the training split to report ``train_accuracy``
    #: (a model whose prediction costs as much as a search over the training set,
    #: such as kNN, turns it off; ``train_accuracy`` is then ``None``).
    score_train: ClassVar[bool] = True

    def fit(self, x: torch.Tensor, y: torch.Tensor, num_classes: int) -> FitModel:
        """Fit on features ``x`` ``[N, D]`` and labels ``y`` ``[N]``."""
        raise NotImplementedError

    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """Return class probabilities ``[N, num_classes]``."""
        raise NotImplementedError

    def report(
        self, features: dict[str, torch.Tensor], labels: dict[str, torch.Tensor], rundir: Any
    ) -> dict[str, Any]:
        """Add model-specific results to the run (optional; the default adds nothing).

        Called once after fitting and prediction.

        Args:
            features: ``{"train": ..., "val": ..., "test": ...}`` features ``[N, D]``.
            labels: Labels ``[N]`` of the same splits.
            rundir: The :class:`graphforge.engine.rundir.RunDirectory`; the model may
                write extra files there (atomically, through :mod:`graphforge.io` and
                :func:`graphforge.engine.plots.save_figure`).

        Returns:
            JSON-serialisable values merged into ``metrics.json`` (e.g. a k sweep).
        """
        return {}

    def state_dict(self) -> dict:
        """Return what is needed to restore the fitted model."""
        raise NotImplementedError

    def load_state_dict(self, state: dict) -> None:
        """Restore a fitted model from :meth:`state_dict`."""
        raise NotImplementedError


class GraphFitModel(Model):
    """A model computed from one dataset graph instead of trained by gradient descent
    (e.g. label propagation).

    It takes the ``"graph"`` input of a dataset converter (``level = "dataset"``, such as
    ``similarity``): the engine calls :meth:`fit_predict` once with the whole graph, reads
    the validation and test predictions (and the training ones, for ``train_accuracy``)
    at the split's nodes, saves :meth:`state_dict` in the checkpoint and merges
    :meth:`report` into ``metrics.json``. Only the training labels may be used:
    :meth:`training_labels` returns them for either graph layout.
    """

    inputs: ClassVar[frozenset[str]] = frozenset({"graph"})
    default_epochs: ClassVar[int] = 1

    def fit_predict(self, graph: Any, num_classes: int) -> torch.Tensor:
        """Return class probabilities ``[num_nodes, num_classes]`` of every node of ``graph``.

        Args:
            graph: A PyG ``Data`` from a dataset converter (``edge_index``, optional
                ``edge_weight``, ``x``, and the split layout of :class:`graphforge.Converter`).
            num_classes: Number of classes.
        """
        raise NotImplementedError

    def predict_proba(self) -> torch.Tensor:
        """Return the node probabilities of the last :meth:`fit_predict` (or of the
        loaded state): what a reloaded run can still answer."""
        raise NotImplementedError

    def report(self, graph: Any, proba: torch.Tensor, rundir: Any) -> dict[str, Any]:
        """Add model-specific results to the run (optional; the default adds nothing).

        Args:
            graph: The graph :meth:`fit_predict` was given.
            proba: Its output ``[num_nodes, num_classes]``.
            rundir: The :class:`graphforge.engine.rundir.RunDirectory`.

        Returns:
            JSON-serialisable values merged into ``metrics.json``.
        """
        return {}

    def state_dict(self) -> dict:
        """Return what is needed to restore the fitted model."""
        raise NotImplementedError

    def load_state_dict(self, state: dict) -> None:
        """Restore a fitted model from :meth:`state_dict`."""
        raise NotImplementedError

    @staticmethod
    def training_labels(graph: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the training samples' nodes (int64 ``[n]``) and labels ``[n]``.

        Masks layout: the nodes in ``train_mask`` and their ``y``; mapped layout:
        ``train_index`` and ``train_y`` (several samples may share a node).

        Raises:
            DataError: If the graph has neither layout.
        """
        return graph_split_nodes(graph, "train")
