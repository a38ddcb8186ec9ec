"""``mlp``: the fully connected baseline.

On per-sample input (images, vectors) it classifies each sample; on one dataset
graph (``graph`` input, e.g. from ``similarity``) it classifies each node from its
features ``data.x`` alone, ignoring the edges: the GNN's baseline on exactly the
same embeddings and split.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from graphforge.core.data import InputSpec
from graphforge.core.model import Model
from graphforge.nn.fast_dropout import Dropout

_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh}


class MLPNet(nn.Module):
    """Flatten, then ``Linear -> norm -> activation -> dropout`` blocks, then a linear classifier.

    Args:
        in_features: Input features per sample (after flattening).
        hidden: Width of each hidden layer.
        num_classes: Number of outputs.
        dropout: Dropout probability after each hidden block.
        activation: ``relu``, ``gelu``, ``silu`` or ``tanh``.
        norm: Apply LayerNorm in each hidden block.

    Shapes:
        input ``[N, *]``, output ``[N, num_classes]``.
    """

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int],
        num_classes: int,
        dropout: float = 0.1,
        activation: str = "relu",
        norm: bool = True,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h)]
            if norm:
                layers.append(nn.LayerNorm(h))
            layers += [_ACTIVATIONS[activation](), Dropout(dropout)]
            width = h
        layers.append(nn.Linear(width, num_classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class NodeMLP(nn.Module):
    """An :class:`MLPNet` on the node features of one graph; the edges are ignored.

    Args:
        mlp: The network applied to every node.

    Shapes:
        input: a PyG ``Data`` with ``x [N, F]``; output ``[N, num_classes]``.
    """

    def __init__(self, mlp: MLPNet) -> None:
        super().__init__()
        self.mlp = mlp

    def forward(self, data: Any) -> torch.Tensor:
        return self.mlp(data.x.float())


class MLP(Model):
    """Fully connected network on flattened images or vectors, or on the node features of a
    dataset graph (``graph`` input: each node is classified from ``data.x`` alone).

    Args:
        hidden (int or list of int, optional): Width of the hidden layers; a list
            gives one width per layer. (default: ``256``)
        layers (int, optional): Number of hidden layers when ``hidden`` is an int.
            (default: ``2``)
        dropout (float, optional): Dropout probability. (default: ``0.1``)
        activation (str, optional): ``relu``, ``gelu``, ``silu`` or ``tanh``. (default: ``"relu"``)
        norm (bool, optional): LayerNorm in each hidden block. (default: ``True``)
    """

    name = "mlp"
    inputs = frozenset({"vectors", "images", "graph"})
    default_epochs = 30

    def __init__(
        self,
        hidden: int | Sequence[int] = 256,
        layers: int = 2,
        dropout: float = 0.1,
        activation: str = "relu",
        norm: bool = True,
    ) -> None:
        if isinstance(hidden, bool) or not isinstance(hidden, (int, list, tuple)):
            raise ValueError(f"hidden must be an int or a list of ints, got {hidden!r}")
        if isinstance(hidden, int) and (isinstance(layers, bool) or not isinstance(layers, int) or layers < 0):
            raise ValueError(f"layers must be an integer >= 0, got {layers!r}")
        widths = [hidden] * layers if isinstance(hidden, int) else list(hidden)
        if any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in widths):
            raise ValueError(f"hidden widths must be integers >= 1, got {hidden!r}")
        if not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(_ACTIVATIONS)}, got {activation!r}")
        self.hidden = hidden
        self.layers = layers
        self.dropout = float(dropout)
        self.activation = activation
        self.norm = bool(norm)
        self._widths = widths

    def build(self, spec: InputSpec, num_classes: int) -> nn.Module:
        """Return an :class:`MLPNet` for ``spec`` (wrapped in a :class:`NodeMLP` for ``graph`` input)."""
        net = MLPNet(spec.num_features, self._widths, num_classes, self.dropout, self.activation, self.norm)
        return NodeMLP(net) if spec.kind == "graph" else net
