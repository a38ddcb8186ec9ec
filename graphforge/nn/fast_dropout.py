"""Dropout with the native mask of :func:`graphforge.ops.dropout.dropout_mask` on the CPU.

The same semantics as ``torch.nn.functional.dropout`` (zero with probability ``p``, scale
the rest by ``1 / (1 - p)``, identity in eval mode), about 4x faster on the CPU; elsewhere it
is ``torch.nn.functional.dropout`` itself.
"""

from __future__ import annotations

from torch import Tensor, nn

from graphforge.ops import _extension

__all__ = ["Dropout", "dropout"]


def dropout(x: Tensor, p: float, training: bool = True) -> Tensor:
    """Zero each entry of ``x`` with probability ``p`` and scale the rest by ``1 / (1 - p)`` (training only).

    Args:
        x: Input.
        p: Probability of a zero, ``0 <= p < 1``.
        training: Apply it (``False``: return ``x``).
    """
    if not training or p == 0:
        return x
    if x.device.type != "cpu" or not x.is_floating_point() or not _extension.native_available("cpu"):
        return nn.functional.dropout(x, p, True)
    from graphforge.ops.dropout import dropout_mask  # noqa: PLC0415

    return x * dropout_mask(x, p)


class Dropout(nn.Module):
    """:func:`dropout` as a module (``torch.nn.Dropout``'s drop-in).

    Args:
        p: Probability of a zero. (default: ``0.5``)
    """

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p < 1:
            raise ValueError(f"dropout probability must be in [0, 1), got {p!r}")
        self.p = float(p)

    def forward(self, x: Tensor) -> Tensor:
        """Apply dropout in training mode."""
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"

