"""Seeded, stratified splitting and subsetting of labelled samples."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from graphforge.errors import ConfigError


def _as_numpy(y: torch.Tensor | np.ndarray) -> np.ndarray:
    return y.cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)


def stratified_split(
    y: torch.Tensor | np.ndarray, fractions: Sequence[float], seed: int
) -> list[torch.Tensor]:
    """Split sample indices into parts with the given fractions, class by class.

    Every class is shuffled with ``seed`` and cut in the given proportions, so each
    part keeps the class balance. Rounding leftovers go to the first part.

    Args:
        y: Labels ``[N]``.
        fractions: Fraction of each part; must be positive and sum to 1.
        seed: Random seed.

    Returns:
        One sorted int64 index tensor per part.
    """
    fr = np.asarray(fractions, dtype=np.float64)
    if fr.ndim != 1 or len(fr) == 0 or (fr < 0).any() or not np.isclose(fr.sum(), 1.0):
        raise ConfigError(f"split fractions must be non-negative and sum to 1, got {list(fractions)}")
    labels = _as_numpy(y)
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[] for _ in fr]
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        rng.shuffle(idx)
        counts = np.floor(fr * len(idx)).astype(int)
        counts[0] += len(idx) - counts.sum()
        start = 0
        for p, c in enumerate(counts):
            parts[p].append(idx[start : start + c])
            start += c
    return [
        torch.from_numpy(np.sort(np.concatenate(p)) if p else np.zeros(0, dtype=np.int64)).long()
        for p in parts
    ]


def stratified_subset(y: torch.Tensor | np.ndarray, n: int, seed: int) -> torch.Tensor:
    """Pick ``n`` sample indices keeping the class proportions (seeded).

    Args:
        y: Labels ``[N]``.
        n: Number of samples to keep; ``n >= N`` keeps everything.
        seed: Random seed.

    Returns:
        Sorted int64 indices.
    """
    if n < 1:
        raise ConfigError(f"a sample limit must be at least 1, got {n}")
    labels = _as_numpy(y)
    total = len(labels)
    if n >= total:
        return torch.arange(total)
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    # Largest-remainder apportionment so the subset has exactly n samples.
    quota = counts * (n / total)
    take = np.floor(quota).astype(int)
    remainder = n - take.sum()
    order = np.argsort(-(quota - take), kind="stable")
    take[order[:remainder]] += 1
    chosen = []
    for cls, t in zip(classes, take):
        idx = np.flatnonzero(labels == cls)
        chosen.append(rng.choice(idx, size=t, replace=False))
    return torch.from_numpy(np.sort(np.concatenate(chosen))).long()
