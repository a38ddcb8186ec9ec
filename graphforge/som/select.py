"""Feature-selection rules on a trained self-organising map's prototypes.

All functions take the ``[M, D]`` neuron weights (the prototypes) and the map's training
statistics: ``hits [M]`` (training samples each neuron wins) and ``counts [M, C]`` (how
many of them belong to each class). Neurons that win no sample are ignored. Only
training labels enter, through ``counts``. Everything is computed in float64 on the CPU
and never materialises a ``[D, D]`` matrix, so it scales to wide inputs.

* :func:`between_class_variance` — univariate: how far the hits-weighted class means of
  the prototypes spread around the overall mean, per feature.
* :func:`hits_weighted_variance` — univariate, unsupervised: each feature's variance across
  the prototypes, each prototype counted as often as it wins.
* :func:`greedy_decorrelated` — greedy: a univariate score discounted by the feature's
  largest squared correlation (across the prototypes) with the features already kept.
* :func:`greedy_residual` — greedy, unsupervised column-subset selection: each step keeps
  the feature with the most prototype variance that the kept ones do not explain linearly.

Example:
    >>> score = between_class_variance(w, hits, counts)  # doctest: +SKIP
    >>> order = greedy_decorrelated(score, w, hits, 100)  # doctest: +SKIP
"""

from __future__ import annotations

import torch
from torch import Tensor

#: Exponent of the redundancy discount of :func:`greedy_decorrelated` (chosen on MNIST validation).
DECORRELATION_POWER = 2.0
#: Ridge of :func:`greedy_residual`, in units of the mean column energy (chosen on MNIST validation).
RESIDUAL_RIDGE = 0.1

_EPS = 1e-12


def _live(weights: Tensor, hits: Tensor, counts: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor | None]:
    """float64 CPU copies of the prototypes, hits (and class counts) of neurons with hits > 0."""
    keep = hits.cpu() > 0
    w = weights.detach().cpu().double()[keep]
    h = hits.cpu().double()[keep]
    c = None if counts is None else counts.cpu().double()[keep]
    return w, h, c


def _centered(w: Tensor, h: Tensor) -> Tensor:
    """``sqrt(h) * (w - hits-weighted mean)``: its column inner products are the weighted scatter."""
    mu = (h[:, None] * w).sum(0) / h.sum().clamp_min(_EPS)
    return (w - mu) * h.sqrt()[:, None]


def hits_weighted_variance(weights: Tensor, hits: Tensor) -> Tensor:
    """Each feature's variance across the prototypes, each weighted by its hits ``[D]``."""
    w, h, _ = _live(weights, hits)
    if w.shape[0] == 0:
        return torch.zeros(weights.shape[1], dtype=torch.float64)
    return (_centered(w, h) ** 2).sum(0) / h.sum()


def between_class_variance(weights: Tensor, hits: Tensor, counts: Tensor) -> Tensor:
    """Between-class variance of each feature across the labelled prototypes ``[D]``.

    Each neuron counts ``counts[m, c]`` times for class ``c``; the class means are
    ``mu_c = sum_m counts[m, c] w_m / n_c`` and the score is
    ``sum_c n_c (mu_c - mu)^2 / N`` (``mu``: the hits-weighted mean of all prototypes). It is
    the numerator of a Fisher score, in the feature's own units: a feature whose class means
    differ by a lot moves a sample's distance to the other classes by a lot, which is what
    a kNN on the kept features sees. (Dividing by the within-class variance, the full Fisher
    ratio, favours nearly constant border pixels and selects worse.)
    """
    w, h, c = _live(weights, hits, counts)
    assert c is not None
    if w.shape[0] == 0:
        return torch.zeros(weights.shape[1], dtype=torch.float64)
    nc = c.sum(0)
    ok = nc > 0
    c, nc = c[:, ok], nc[ok]
    mu_c = (c.T @ w) / nc[:, None]
    mu = (h[:, None] * w).sum(0) / h.sum()
    return (nc[:, None] * (mu_c - mu) ** 2).sum(0) / h.sum()


def greedy_decorrelated(score: Tensor, weights: Tensor, hits: Tensor, k: int,
                        power: float = DECORRELATION_POWER) -> Tensor:
    """Greedy redundancy-aware selection: the ``k`` kept features in the order they were picked.

    Step ``t`` keeps ``argmax_j score_j * (1 - max_{s kept} corr(j, s)^2) ** power`` among the
    features not yet kept, where ``corr`` is the hits-weighted correlation of two features
    across the prototypes. Neighbouring pixels of an image are strongly correlated, so a plain
    top-``k`` spends most of its budget on a few blobs; the discount spreads it over features
    that carry different information.

    Args:
        score (Tensor): Univariate relevance ``[D]`` (>= 0; e.g. :func:`between_class_variance`).
        weights (Tensor): Prototypes ``[M, D]``.
        hits (Tensor): Training samples per neuron ``[M]``.
        k (int): Features to keep (at most ``D``).
        power (float, optional): Exponent of the discount. (default: ``2``)

    Returns:
        int64 indices ``[k]``, in selection order.
    """
    w, h, _ = _live(weights, hits)
    d = weights.shape[1]
    k = min(int(k), d)
    x = _centered(w, h)  # [M', D]
    sd = (x * x).sum(0).sqrt()
    flat = sd <= _EPS * float(sd.max()) if d and float(sd.max()) > 0 else torch.ones(d, dtype=torch.bool)
    x = x / torch.where(flat, torch.ones_like(sd), sd)[None, :]  # unit columns (flat ones are zero)
    s = score.detach().cpu().double().clamp_min(0)
    keep_left = torch.ones(d, dtype=torch.float64)  # 1 - max r^2 so far
    avail = torch.ones(d, dtype=torch.bool)
    chosen: list[int] = []
    for _ in range(k):
        val = torch.where(avail, s * keep_left.clamp(0, 1) ** power, torch.full_like(s, -1.0))
        j = int(val.argmax())
        chosen.append(j)
        avail[j] = False
        if not flat[j]:
            r = x[:, j] @ x  # correlations of feature j with every feature [D]
            keep_left = torch.minimum(keep_left, 1.0 - r * r)
    return torch.tensor(chosen, dtype=torch.long)


def greedy_residual(weights: Tensor, hits: Tensor, k: int, ridge: float = RESIDUAL_RIDGE) -> Tensor:
    """Unsupervised greedy column-subset selection on the hits-weighted prototypes.

    Start from the centred, ``sqrt(hits)``-weighted prototype matrix ``R``. Each step keeps
    the feature ``j`` whose column of ``R`` has the largest energy ``||R[:, j]||^2`` (the
    prototype variance no kept feature explains linearly), then regresses every column on it,
    ``R -= q (q^T R) / (q^T q + ridge * e0)`` with ``q = R[:, j]`` and ``e0`` the mean initial
    column energy (pivoted Gram-Schmidt with a ridge). The kept pixels are those from which the
    prototypes, and so the sample distances a kNN measures, are best reconstructed; the ridge
    stops late picks on a small map from chasing exact collinearities.

    Returns:
        int64 indices ``[k]``, in selection order.
    """
    w, h, _ = _live(weights, hits)
    d = weights.shape[1]
    k = min(int(k), d)
    r = _centered(w, h)
    e0 = float((r * r).sum(0).mean()) if r.numel() else 0.0
    avail = torch.ones(d, dtype=torch.bool)
    chosen: list[int] = []
    for _ in range(k):
        energy = (r * r).sum(0)
        j = int(torch.where(avail, energy, torch.full_like(energy, -1.0)).argmax())
        chosen.append(j)
        avail[j] = False
        q = r[:, j]
        qq = float(q @ q)
        if qq > _EPS * max(e0, _EPS):
            r = r - torch.outer(q, (q @ r) / (qq + ridge * e0))
    return torch.tensor(chosen, dtype=torch.long)
