"""``pixels``: the samples themselves, flattened, as embedding vectors."""

from __future__ import annotations

import torch

from graphforge.core.data import InputSpec
from graphforge.core.embedder import Embedder


class Pixels(Embedder):
    """Raw samples flattened to vectors; uint8 images scaled to [0, 1].

    Args:
        normalize (bool, optional): Scale each vector to unit L2 length, so euclidean
            distances rank neighbours as cosine similarity does. (default: ``False``)

    Shapes:
        input ``[N, C, H, W]`` images or ``[N, D]`` vectors, output ``[N, C*H*W]`` or ``[N, D]``.
    """

    name = "pixels"
    inputs = frozenset({"images", "vectors"})

    def __init__(self, normalize: bool = False) -> None:
        if not isinstance(normalize, bool):
            raise TypeError(f"normalize must be true or false, got {normalize!r}")
        self.normalize = normalize

    def output_dim(self, spec: InputSpec) -> int:
        """Return the number of values in one sample."""
        self.check_input(spec)
        return spec.num_features

    def embed(self, x: torch.Tensor, device: torch.device, batch_size: int) -> torch.Tensor:
        """Flatten ``x``; computed on the CPU since it is one pass over memory."""
        out = x.reshape(len(x), -1)
        out = out.float() / 255.0 if out.dtype == torch.uint8 else out.float()
        if self.normalize:
            out = torch.nn.functional.normalize(out, dim=1)
        return out if out.data_ptr() != x.data_ptr() else out.clone()  # never alias the dataset
