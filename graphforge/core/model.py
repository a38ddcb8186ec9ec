"""Base classes of model plugins."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from graphforge.core.data import InputSpec
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

    def check_input(self, spec: InputSpec) -> None:
        """Raise :class:`ConfigError` if this model cannot take ``spec``."""
        if spec.kind not in self.inputs:
            raise ConfigError(
                f"model {self.registry_name()!r} takes {sorted(self.inputs)} input, "
                f"but gets {spec.kind}; pick a converter that produces one of those"
            )

    def build(self, spec: InputSpec, num_classes: int) -> nn.Module:
        """Return the network for inputs of ``spec`` and ``num_classes`` classes."""
        raise NotImplementedError

    @classmethod
    def registry_name(cls) -> str:
        """Name used in messages (the registered name when set as ``name``)."""
        return getattr(cls, "name", cls.__name__)

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({opts})"


class FitModel(Model):
    """A model fitted in one pass instead of by gradient descent (e.g. kNN).

    The engine calls :meth:`fit` on the training features, then
    :meth:`predict_proba` on validation and test features. Features are
    ``[N, D]`` float tensors (images arrive flattened).
    """

    default_epochs: ClassVar[int] = 1

    def fit(self, x: torch.Tensor, y: torch.Tensor, num_classes: int) -> FitModel:
        """Fit on features ``x`` ``[N, D]`` and labels ``y`` ``[N]``."""
        raise NotImplementedError

    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """Return class probabilities ``[N, num_classes]``."""
        raise NotImplementedError

    def state_dict(self) -> dict:
        """Return what is needed to restore the fitted model."""
        raise NotImplementedError

    def load_state_dict(self, state: dict) -> None:
        """Restore a fitted model from :meth:`state_dict`."""
        raise NotImplementedError
