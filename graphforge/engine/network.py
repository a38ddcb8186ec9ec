"""The network the engine trains: normalise -> convert -> model."""

from __future__ import annotations

import torch
from torch import nn

from graphforge.core.data import InputSpec, Split


class Normalizer(nn.Module):
    """Casts a batch to float and standardises it with statistics of the training split.

    Images (``[N, C, H, W]``) are standardised per channel, vectors (``[N, D]``) and
    plugin kinds (e.g. points ``[N, P, 3]``) per feature of their last axis; uint8
    images are first scaled to [0, 1]. The statistics are buffers,
    so they travel with the checkpoint.

    Args:
        mean: Per-channel or per-feature mean.
        std: Matching standard deviation (zeros are replaced by 1).
        scale: 1/255 when the training split was uint8 (kept for the record: every uint8
            input is scaled by 1/255, float input is taken as it is).
        enabled: If ``False`` only the cast and scale happen.
    """

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, scale: float = 1.0, enabled: bool = True) -> None:
        super().__init__()
        self.register_buffer("mean", mean.float())
        self.register_buffer("std", torch.where(std > 1e-12, std, torch.ones_like(std)).float())
        self.register_buffer("scale", torch.tensor(float(scale)))
        self.enabled = bool(enabled)

    @staticmethod
    def _layout(kind: str, ndim: int) -> tuple[int, tuple[int, ...]]:
        """Feature axis and the other axes: channels for images, the last axis otherwise."""
        feature_axis = 1 if kind == "images" else ndim - 1
        return feature_axis, tuple(d for d in range(ndim) if d != feature_axis)

    @classmethod
    def fit(cls, split: Split, kind: str, enabled: bool = True) -> Normalizer:
        """Compute the statistics on a training split."""
        x = split.x
        scale = 1.0 / 255.0 if x.dtype == torch.uint8 else 1.0
        axis, dims = cls._layout(kind, x.ndim)
        features = x.shape[axis]
        stats_shape = tuple(features if d == axis else 1 for d in range(x.ndim))
        total = torch.zeros(features, dtype=torch.float64)
        total_sq = torch.zeros_like(total)
        count = 0
        for start in range(0, x.shape[0], 4096):  # chunks keep memory flat
            chunk = x[start : start + 4096].double() * scale
            total += chunk.sum(dim=dims)
            total_sq += (chunk * chunk).sum(dim=dims)
            count += chunk.numel() // features
        count = max(count, 1)
        mean = total / count
        std = (total_sq / count - mean * mean).clamp_min(0).sqrt()
        return cls(mean.reshape(stats_shape), std.reshape(stats_shape), scale, enabled)

    @classmethod
    def empty(cls, spec: InputSpec) -> Normalizer:
        """Return a normaliser of the right shape for ``spec``, to load a state dict into."""
        ndim = len(spec.shape) + 1
        axis, _ = cls._layout(spec.kind, ndim)
        full = (0, *spec.shape)
        shape = tuple(full[d] if d == axis else 1 for d in range(ndim))
        return cls(torch.zeros(shape), torch.ones(shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # uint8 samples are 0..255 and float ones already scaled (the datasets' convention),
        # whichever of the two the training split was: a run trained on uint8 images
        # predicts float [0, 1] images alike, and the other way round.
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        if self.enabled:
            x = (x - self.mean) / self.std
        return x

    def extra_repr(self) -> str:
        return f"scale={float(self.scale):g}, enabled={self.enabled}"


class GraphforgeNet(nn.Module):
    """``model(converter(normalizer(x)))``: the module trained end to end.

    Args:
        normalizer: Input normalisation (or ``nn.Identity``).
        converter: The per-sample converter's module (may be learnable).
        model: The model's module, returning logits.
    """

    def __init__(self, normalizer: nn.Module, converter: nn.Module, model: nn.Module) -> None:
        super().__init__()
        self.normalizer = normalizer
        self.converter = converter
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self.converter(self.normalizer(x)))
