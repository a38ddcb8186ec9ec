"""``none``: pass samples to the model unchanged (for baselines such as mlp, cnn, knn)."""

from __future__ import annotations

from torch import nn

from graphforge.core.converter import Converter
from graphforge.core.data import InputSpec


class NoGraph(Converter):
    """No conversion: the model sees the (normalised) images or vectors themselves."""

    name = "none"
    level = "sample"
    inputs = frozenset({"images", "vectors"})

    def output_spec(self, spec: InputSpec) -> InputSpec:
        """The output is the input."""
        return spec

    def build(self, spec: InputSpec) -> nn.Module:
        """Return ``nn.Identity()``."""
        return nn.Identity()
