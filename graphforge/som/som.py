"""A Kohonen self-organising map trained in PyTorch: batched, seeded, on any device.

Training
    Every step finds each sample's best-matching unit (BMU, the neuron whose weight
    vector is nearest in Euclidean distance) with one matrix product per chunk of
    samples (``|x|^2 - 2 x W^T + |W|^2``), then moves the neurons towards the samples,
    weighted by a neighbourhood function ``h(d)`` of the grid distance ``d`` between a
    neuron and the sample's BMU:

    * ``mode="batch"`` — the classic batch SOM: once per epoch every neuron becomes the
      ``h``-weighted mean of all samples, ``w_j = sum_i h(j, b_i) x_i / sum_i h(j, b_i)``
      (no learning rate). With the signed mexican hat the step is taken as
      ``w_j += sum_i h (x_i - w_j) / sum_i |h|``, which is the same formula for
      non-negative kernels and stays bounded for signed ones; a neuron whose
      ``sum_i h`` is not positive (net repulsion) is not moved, since it would drift
      away from the data and never win again.
    * ``mode="online"`` — mini-batch sequential updates: the samples are shuffled and
      every mini-batch moves each neuron towards the batch's ``h``-weighted mean by the
      fraction ``1 - (1 - lr(t)) ** sum_i |h|``, which is how far ``sum_i |h|`` sequential
      per-sample steps of rate ``lr(t)`` would take it:
      ``w_j += (1 - (1 - lr) ** s_j) / s_j * sum_i h (x_i - w_j)`` with ``s_j = sum_i |h|``.
      With ``batch_size=1`` this is Kohonen's per-sample rule ``w_j += lr h (x - w_j)``
      for the BMU (``h = 1``) and ``1 - (1 - lr) ** h ~ lr h`` for its neighbours.

    The radius ``sigma`` and the learning rate decay from their start to their end
    values, ``exponential``-ly (``v0 * (v_end / v0) ** (t / T)``) or ``linear``-ly,
    per epoch in batch mode and per mini-batch in online mode.

Neighbourhoods (``d`` = grid distance, 1 between neighbours):
    ``gaussian`` ``exp(-d^2 / 2 sigma^2)``; ``bubble`` ``1 if d <= sigma else 0``;
    ``mexican_hat`` ``(1 - d^2 / sigma^2) exp(-d^2 / 2 sigma^2)``.

Quality measures
    *quantization error* — mean Euclidean distance of each sample to its BMU's weights;
    *topographic error* — fraction of samples whose two best units are not adjacent
    (8-neighbourhood on rectangular grids, 6 on hexagonal ones);
    *label-clustering accuracy* — each neuron votes the majority class of its samples,
    and a sample counts as correct when its BMU's vote is its own class.

Example:
    >>> som = SelfOrganizingMap(10, 10, seed=0)
    >>> history = som.fit(x, epochs=20, y=y)  # doctest: +SKIP
    >>> som.quantization_error(x)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from graphforge.errors import ConfigError, DataError
from graphforge.neighbors.metrics import Metric, get_metric
from graphforge.som.grid import (
    adjacent_matrix,
    check_grid,
    grid_edges,
    grid_sq_distances,
    neuron_positions,
)

log = logging.getLogger("graphforge")

NEIGHBORHOODS = ("gaussian", "bubble", "mexican_hat")
DECAYS = ("exponential", "linear")
MODES = ("batch", "online")
INITS = ("pca", "random")

#: Elements of the ``[chunk, neurons]`` distance block per BMU search step (~64 MB fp32).
_BLOCK_ELEMENTS = 16 * 1024 * 1024


#: The precisions a map trains in, by name.
DTYPES = {"float64": torch.float64, "float32": torch.float32}


def check_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """The torch dtype of ``"float64"`` / ``"float32"`` (or of those dtypes themselves).

    Raises:
        ConfigError: For any other value.
    """
    for name, found in DTYPES.items():
        if dtype == name or dtype is found:
            return found
    raise ConfigError(f"som: dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")


def _check_positive(name: str, value: Any, integer: bool = False) -> None:
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not value > 0 or not math.isfinite(value):
        what = "an integer >= 1" if integer else "a number > 0"
        raise ConfigError(f"som: {name} must be {what}, got {value!r}")


def neighborhood(kind: str, sq_dist: Tensor, sigma: float) -> Tensor:
    """Neighbourhood weights for squared grid distances.

    Args:
        kind (str): ``"gaussian"``, ``"bubble"`` or ``"mexican_hat"``.
        sq_dist (Tensor): Squared grid distances (any shape).
        sigma (float): Radius (> 0).

    Returns:
        Weights of the same shape (1 at distance 0).
    """
    s2 = sigma * sigma
    if kind == "gaussian":
        return torch.exp(-sq_dist / (2.0 * s2))
    if kind == "bubble":
        return (sq_dist <= s2 + 1e-6).to(sq_dist.dtype)
    if kind == "mexican_hat":
        return (1.0 - sq_dist / s2) * torch.exp(-sq_dist / (2.0 * s2))
    raise ConfigError(f"som: neighborhood must be one of {', '.join(NEIGHBORHOODS)}, got {kind!r}")


def decay_value(start: float, end: float, step: int, total: int, decay: str) -> float:
    """Value of a schedule going from ``start`` (step 0) to ``end`` (step ``total - 1``)."""
    frac = step / (total - 1) if total > 1 else 1.0
    if decay == "linear":
        return start + (end - start) * frac
    return start * (end / start) ** frac


def _unit_rows(x: Tensor) -> Tensor:
    norms = x.norm(dim=1, keepdim=True)
    return torch.where(norms > 0, x / norms.clamp_min(1e-30), torch.zeros_like(x))


def unit_distances(x: Tensor, weights: Tensor, metric: Metric) -> Tensor:
    """Distances ``[N, M]`` (in ``x``'s dtype) of samples ``x`` to neurons ``weights`` in ``metric`` (clamped to its range).

    The ``l2`` and ``ip`` families are one matrix product (``|x|^2 - 2 x W^T + |W|^2``,
    ``-x W^T``, rows normalised first for cosine and chord); city block and L-inf use
    ``torch.cdist``.
    """
    if metric.normalized:
        x, weights = _unit_rows(x), _unit_rows(weights)
    if metric.family == "l2":
        d = torch.addmm((weights * weights).sum(1), x, weights.T, beta=1.0, alpha=-2.0)
        d += (x * x).sum(1, keepdim=True)
        d.clamp_min_(0)
        if not metric.squared:
            d.sqrt_()
    elif metric.family == "ip":
        d = -(x @ weights.T)
        if metric.normalized:
            d += 1.0
    else:
        d = torch.cdist(x, weights, p=1.0 if metric.family == "l1" else math.inf)
    return metric.clamp(d)


def nearest_units(x: Tensor, weights: Tensor, k: int = 1, metric: str | Metric = "euclidean") -> tuple[Tensor, Tensor]:
    """Distances and indices of each sample's ``k`` nearest neurons.

    Samples are taken in chunks, so memory stays at about 64 MB whatever their number.

    Args:
        x (Tensor): Samples ``[N, D]`` (the weights' dtype and device).
        weights (Tensor): Neuron weights ``[M, D]``.
        k (int, optional): Neurons per sample. (default: ``1``)
        metric (str or Metric, optional): Any metric of :mod:`graphforge.neighbors.metrics`.
            (default: ``"euclidean"``)

    Returns:
        ``(distances [N, k], indices [N, k])`` in ``metric``, nearest first (ties to the lower neuron).
    """
    found = get_metric(metric)
    chunk = max(1, _BLOCK_ELEMENTS // weights.shape[0])
    dists, idxs = [], []
    for start in range(0, x.shape[0], chunk):
        d = unit_distances(x[start:start + chunk], weights, found)
        if k == 1:
            v, i = d.min(1, keepdim=True)
        else:
            v, i = d.topk(k, dim=1, largest=False)
        dists.append(v)
        idxs.append(i)
    if not dists:
        return x.new_zeros(0, k), torch.zeros(0, k, dtype=torch.long, device=x.device)
    return torch.cat(dists), torch.cat(idxs)


class SelfOrganizingMap:
    """A 2-D Kohonen self-organising map.

    Args:
        rows (int, optional): Rows of neurons. (default: ``10``)
        cols (int, optional): Columns of neurons. (default: ``10``)
        topology (str, optional): ``"rect"`` or ``"hex"``. (default: ``"rect"``)
        neighborhood (str, optional): ``"gaussian"``, ``"bubble"`` or ``"mexican_hat"``.
            (default: ``"gaussian"``)
        sigma (float, optional): Start radius in grid steps. (default: ``max(rows, cols) / 2``)
        sigma_end (float, optional): Final radius (clamped to at most ``sigma``). (default: ``0.5``)
        lr (float, optional): Start learning rate of online mode, in (0, 1]. (default: ``0.5``)
        lr_end (float, optional): Final learning rate of online mode. (default: ``0.01``)
        decay (str, optional): ``"exponential"`` or ``"linear"``. (default: ``"exponential"``)
        mode (str, optional): ``"batch"`` or ``"online"``. (default: ``"batch"``)
        init (str, optional): ``"pca"`` (the plane of the two leading principal components;
            random samples when there are fewer than 3 samples or 2 features) or ``"random"``
            (random training samples). (default: ``"pca"``)
        batch_size (int, optional): Samples per online update. (default: ``256``)
        connectivity (int, optional): 4 or 8 neighbours on rectangular grids, for
            :meth:`edges` and :meth:`u_matrix`. (default: ``4``)
        metric (str, optional): Distance that picks each sample's best-matching unit and
            measures the quantization error and the U-matrix: any metric of
            :mod:`graphforge.neighbors.metrics` (``euclidean``, ``cosine``, ``cityblock``
            / ``manhattan``, ``linf`` / ``chebyshev``, ...; as MiniSom's
            ``activation_distance``). Updates always move weights towards the samples.
            (default: ``"euclidean"``)
        seed (int, optional): Seed of the initialisation and shuffling. (default: ``0``)
        device (str or torch.device, optional): Where the weights live. (default: ``"cpu"``)
        dtype (str or torch.dtype, optional): ``"float64"`` or ``"float32"``: the precision of
            the weights, the distances and the updates. A map's training amplifies rounding:
            in float32 a sample whose two nearest neurons are nearly equidistant flips with the
            order of a matrix product's sums, which changes with the thread count, and the maps
            drift apart (on MNIST 20x20 the weights differ by up to 0.4 after 20 epochs between 1 and
            2 threads). In float64 the same seed gives the same map at any thread count (the
            weights agree to 1e-15, so every sample keeps its neuron), 1.5-3.6x slower on a CPU.
            (default: ``"float64"``)

    Attributes:
        weights (Tensor): ``[rows * cols, D]`` neuron weights after :meth:`fit`.
        history (list of dict): One row per epoch (``epoch``, ``sigma``, ``lr``,
            ``quantization_error``, ``topographic_error`` and, with labels,
            ``label_accuracy``).
    """

    def __init__(
        self,
        rows: int = 10,
        cols: int = 10,
        *,
        topology: str = "rect",
        neighborhood: str = "gaussian",
        sigma: float | None = None,
        sigma_end: float = 0.5,
        lr: float = 0.5,
        lr_end: float = 0.01,
        decay: str = "exponential",
        mode: str = "batch",
        init: str = "pca",
        batch_size: int = 256,
        connectivity: int = 4,
        metric: str = "euclidean",
        seed: int = 0,
        device: str | torch.device = "cpu",
        dtype: str | torch.dtype = "float64",
    ) -> None:
        check_grid(rows, cols, topology, connectivity)
        self.dtype = check_dtype(dtype)
        self.metric = get_metric(metric).name
        if neighborhood not in NEIGHBORHOODS:
            raise ConfigError(f"som: neighborhood must be one of {', '.join(NEIGHBORHOODS)}, got {neighborhood!r}")
        if decay not in DECAYS:
            raise ConfigError(f"som: decay must be one of {', '.join(DECAYS)}, got {decay!r}")
        if mode not in MODES:
            raise ConfigError(f"som: mode must be one of {', '.join(MODES)}, got {mode!r}")
        if init not in INITS:
            raise ConfigError(f"som: init must be one of {', '.join(INITS)}, got {init!r}")
        sigma = max(rows, cols) / 2.0 if sigma is None else sigma
        _check_positive("sigma", sigma)
        _check_positive("sigma_end", sigma_end)
        _check_positive("lr", lr)
        _check_positive("lr_end", lr_end)
        if lr > 1:
            raise ConfigError(f"som: lr must be in (0, 1], got {lr!r}")
        _check_positive("batch_size", batch_size, integer=True)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ConfigError(f"som: seed must be an integer, got {seed!r}")
        self.rows, self.cols, self.topology, self.connectivity = rows, cols, topology, connectivity
        self.neighborhood, self.decay, self.mode, self.init = neighborhood, decay, mode, init
        self.sigma = float(sigma)
        self.sigma_end = min(float(sigma_end), self.sigma)
        self.lr = float(lr)
        self.lr_end = min(float(lr_end), self.lr)
        self.batch_size = batch_size
        self.seed = seed
        self.device = torch.device(device)
        self.positions = neuron_positions(rows, cols, topology).to(self.device)
        self._grid_sq = grid_sq_distances(self.positions).to(self.dtype)
        self._adjacent = adjacent_matrix(rows, cols, topology).to(self.device)
        self.weights: Tensor | None = None
        self.history: list[dict[str, Any]] = []

    @property
    def num_neurons(self) -> int:
        """Number of neurons (``rows * cols``)."""
        return self.rows * self.cols

    def __repr__(self) -> str:
        return (f"SelfOrganizingMap({self.rows}x{self.cols}, topology={self.topology!r}, "
                f"neighborhood={self.neighborhood!r}, sigma={self.sigma:g}, mode={self.mode!r}, "
                f"init={self.init!r}, metric={self.metric!r}, seed={self.seed}, "
                f"dtype={str(self.dtype).removeprefix('torch.')!r})")

    # --- data ------------------------------------------------------------------------
    def _as_matrix(self, x: Any) -> Tensor:
        xt = torch.as_tensor(x)
        if xt.ndim < 2:
            raise DataError(f"som: samples must be [N, D] (or [N, ...], flattened), got shape {tuple(xt.shape)}")
        xt = xt.reshape(xt.shape[0], -1).to(self.device, self.dtype)
        if self.weights is not None and xt.shape[1] != self.weights.shape[1]:
            raise DataError(f"som: the map has {self.weights.shape[1]} features per neuron, the samples {xt.shape[1]}")
        if not torch.isfinite(xt).all():
            raise DataError("som: the samples contain NaN or infinite values")
        return xt

    def _fitted(self) -> Tensor:
        if self.weights is None:
            raise ConfigError("som: the map is not trained yet; call fit(x, epochs) first")
        return self.weights

    # --- initialisation --------------------------------------------------------------
    def initialize(self, x: Tensor, generator: torch.Generator) -> Tensor:
        """Return initial weights ``[M, D]`` for samples ``x`` (``init`` decides how)."""
        m = self.num_neurons
        if self.init == "random" or x.shape[0] < 3 or x.shape[1] < 2:
            pick = torch.randint(x.shape[0], (m,), generator=generator).to(x.device)
            return x[pick].clone()
        # The grid spans +-2 standard deviations of the two leading principal components,
        # the longer grid axis along the first component.
        sample = x[torch.randperm(x.shape[0], generator=generator)[:10_000].to(x.device)]
        mean = sample.mean(0)
        _, s, vh = torch.linalg.svd(sample - mean, full_matrices=False)
        std = s[:2] / math.sqrt(max(sample.shape[0] - 1, 1))
        pos = self.positions
        span = pos.max(0).values - pos.min(0).values
        unit = (pos - pos.min(0).values) / span.clamp_min(1e-12) * 2.0 - 1.0  # [-1, 1] per axis
        long_axis, short_axis = (0, 1) if span[0] >= span[1] else (1, 0)
        return (mean + 2.0 * unit[:, long_axis:long_axis + 1] * std[0] * vh[0]
                + 2.0 * unit[:, short_axis:short_axis + 1] * std[1] * vh[1]).contiguous()

    # --- best-matching units -------------------------------------------------------------
    def bmu(self, x: Any) -> Tensor:
        """Return the best-matching unit of each sample ``[N]`` (int64, on the map's device)."""
        weights = self._fitted()
        return self._nearest(self._as_matrix(x), weights, 1)[1][:, 0]

    def _nearest(self, x: Tensor, weights: Tensor, k: int) -> tuple[Tensor, Tensor]:
        return nearest_units(x, weights, k, self.metric)

    def _bmu_distances(self, x: Tensor, weights: Tensor, bmus: Tensor) -> Tensor:
        """Exact distances (in :attr:`metric`, from the differences) of samples to their units ``[N]``."""
        metric = get_metric(self.metric)
        step = max(1, _BLOCK_ELEMENTS // 4 // max(1, x.shape[1]))
        parts = [metric.distances(x[s:s + step].cpu(), weights[bmus[s:s + step]].cpu().unsqueeze(1))[:, 0]
                 for s in range(0, x.shape[0], step)]
        return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.float64)

    def quantization_error(self, x: Any) -> float:
        """Mean distance (in :attr:`metric`) of the samples to their best-matching units' weights."""
        weights = self._fitted()
        xt = self._as_matrix(x)
        return float(self._bmu_distances(xt, weights, self._nearest(xt, weights, 1)[1][:, 0]).mean())

    def topographic_error(self, x: Any) -> float:
        """Fraction of samples whose best and second-best units are not grid neighbours."""
        weights = self._fitted()
        idx = self._nearest(self._as_matrix(x), weights, 2)[1]
        return float((~self._adjacent[idx[:, 0], idx[:, 1]]).float().mean())

    def label_map(self, x: Any, y: Any, num_classes: int | None = None) -> tuple[Tensor, Tensor]:
        """Each neuron's majority class among the samples it wins.

        Args:
            x: Samples ``[N, D]``.
            y: Integer labels ``[N]``.
            num_classes: Number of classes (default: ``max(y) + 1``).

        Returns:
            ``(labels [M], counts [M, num_classes])``: ``labels`` is -1 for neurons no
            sample maps to; ties go to the smaller class.
        """
        bmus = self.bmu(x)
        yt = torch.as_tensor(y)
        if yt.ndim != 1 or yt.shape[0] != bmus.shape[0]:
            raise DataError(f"som: label_map needs one label per sample: {bmus.shape[0]} samples, "
                            f"labels of shape {tuple(yt.shape)}")
        if yt.dtype.is_floating_point or yt.dtype == torch.bool or (yt.numel() and int(yt.min()) < 0):
            raise DataError("som: labels must be non-negative integers")
        if num_classes is not None and yt.numel() and int(yt.max()) >= num_classes:
            raise DataError(f"som: labels must be below num_classes={num_classes}, got {int(yt.max())}")
        return self.label_counts(bmus, yt.to(self.device), num_classes)

    def label_counts(self, bmus: Tensor, y: Tensor, num_classes: int | None = None) -> tuple[Tensor, Tensor]:
        """Like :meth:`label_map`, from already computed best-matching units ``bmus [N]``."""
        y = y.long()
        c = int(num_classes) if num_classes is not None else int(y.max()) + 1 if y.numel() else 1
        counts = torch.bincount(bmus * c + y, minlength=self.num_neurons * c).reshape(self.num_neurons, c)
        labels = torch.where(counts.sum(1) > 0, counts.argmax(1), torch.full_like(counts[:, 0], -1))
        return labels, counts

    def hits(self, x: Any) -> Tensor:
        """Number of samples each neuron wins ``[M]`` (int64)."""
        return torch.bincount(self.bmu(x), minlength=self.num_neurons)

    # --- topology views ----------------------------------------------------------------------
    def edges(self) -> Tensor:
        """The grid adjacency ``edge_index [2, E]`` (both directions; see :func:`grid_edges`)."""
        return grid_edges(self.rows, self.cols, self.topology, self.connectivity).to(self.device)

    def edge_distances(self) -> Tensor:
        """Distance (in :attr:`metric`) between the weights of the two ends of every :meth:`edges` edge ``[E]``."""
        weights = self._fitted()
        e = self.edges()
        return get_metric(self.metric).distances(weights[e[0]].cpu(), weights[e[1]].cpu().unsqueeze(1))[:, 0].to(
            weights.device, torch.float32)

    def u_matrix(self) -> Tensor:
        """The U-matrix: each neuron's mean weight distance to its grid neighbours ``[rows, cols]``."""
        e = self.edges()
        d = self.edge_distances()
        total = torch.zeros(self.num_neurons, device=d.device).index_add_(0, e[1], d)
        count = torch.bincount(e[1], minlength=self.num_neurons).clamp_min(1)
        return (total / count).reshape(self.rows, self.cols)

    # --- training ----------------------------------------------------------------------------
    def _step_towards(self, weights: Tensor, x: Tensor, bmus: Tensor, h_full: Tensor, rate: float | None) -> None:
        """Move every neuron towards the ``h``-weighted samples (in place)."""
        m = self.num_neurons
        if x.shape[0] < m:  # small batch: weights of every (neuron, sample) pair, no scatter
            h = h_full[:, bmus]  # [M, B]
            h_counts = h.sum(1)  # sum_i h(j, b_i)
            delta = h @ x - h_counts[:, None] * weights  # sum_i h(j, b_i) (x_i - w_j)
            norm = h.abs().sum(1)  # sum_i |h(j, b_i)|
        else:  # many samples: per-neuron sums first, then the M x M neighbourhood
            counts = torch.bincount(bmus, minlength=m).to(x.dtype)
            # index_add_ sums in a fixed order on the CPU (index_put_ with accumulate does not).
            sums = torch.zeros(m, x.shape[1], device=x.device, dtype=x.dtype).index_add_(0, bmus, x)
            h_counts = h_full @ counts
            delta = h_full @ sums - h_counts[:, None] * weights
            norm = h_full.abs() @ counts
        if self.neighborhood == "mexican_hat":
            # A neuron the samples push away on balance would drift off and never win
            # again (the map collapses onto a few units): such neurons stay put.
            delta *= (h_counts > 0).to(delta.dtype)[:, None]
        if rate is None:  # batch SOM: the weighted mean (neurons no sample reaches stay)
            weights += delta / torch.where(norm > 0, norm, torch.ones_like(norm))[:, None]
        else:
            # Sequential updates with rate lr and weights h move a neuron by a fraction
            # 1 - prod(1 - lr h) ~ 1 - (1 - lr)^(sum h) of the way to the samples' weighted
            # mean: apply that fraction once for the whole mini-batch.
            moved = 1.0 - (1.0 - rate) ** norm
            weights += (moved / torch.where(norm > 0, norm, torch.ones_like(norm)))[:, None] * delta

    def fit(
        self,
        x: Any,
        epochs: int = 20,
        y: Any = None,
        *,
        track: bool = True,
        callback: Callable[[dict[str, Any]], None] | None = None,
    ) -> list[dict[str, Any]]:
        """Train the map from a fresh initialisation.

        Args:
            x: Training samples ``[N, D]`` (or ``[N, ...]``, flattened).
            epochs (int, optional): Passes over the data. (default: ``20``)
            y: Optional integer labels ``[N]`` for the label-clustering accuracy.
            track (bool, optional): Measure the quantization and topographic error after
                every epoch (one extra BMU search per epoch in online mode; batch mode
                reuses the next epoch's search). (default: ``True``)
            callback: Called with each epoch's history row.

        Returns:
            :attr:`history`, one row per epoch.
        """
        _check_positive("epochs", epochs, integer=True)
        self.weights = None
        xt = self._as_matrix(x)
        if xt.shape[0] == 0:
            raise DataError("som: cannot train on zero samples")
        yt = torch.as_tensor(y).to(self.device).long() if y is not None else None
        if yt is not None and yt.shape[0] != xt.shape[0]:
            raise DataError(f"som: {xt.shape[0]} samples but {yt.shape[0]} labels")
        num_classes = int(yt.max()) + 1 if yt is not None else None
        generator = torch.Generator().manual_seed(self.seed)
        weights = self.initialize(xt, generator)
        self.history = []
        n = xt.shape[0]
        steps_per_epoch = 1 if self.mode == "batch" else -(-n // self.batch_size)
        total = epochs * steps_per_epoch
        step = 0

        def record(epoch: int, sigma: float, rate: float | None, top2: tuple[Tensor, Tensor] | None) -> None:
            row: dict[str, Any] = {"epoch": epoch, "sigma": sigma, "lr": rate}
            if top2 is not None:
                _, idx = top2
                b = idx[:, 0]
                row["quantization_error"] = float(self._bmu_distances(xt, weights, b).mean())
                row["topographic_error"] = float((~self._adjacent[idx[:, 0], idx[:, 1]]).float().mean())
                if yt is not None:
                    _, counts = self.label_counts(b, yt, num_classes)
                    row["label_accuracy"] = float(counts.max(1).values.sum()) / n
            self.history.append(row)
            if callback is not None:
                callback(row)

        top2: tuple[Tensor, Tensor] | None = None
        for epoch in range(1, epochs + 1):
            if self.mode == "batch":
                sigma = decay_value(self.sigma, self.sigma_end, epoch - 1, epochs, self.decay)
                if top2 is None:
                    top2 = self._nearest(xt, weights, 2 if track else 1)
                bmus = top2[1][:, 0]
                h_full = neighborhood(self.neighborhood, self._grid_sq, sigma)
                self._step_towards(weights, xt, bmus, h_full, None)
                rate = None
                top2 = self._nearest(xt, weights, 2) if track else None
                record(epoch, sigma, rate, top2)
                if not track:
                    top2 = None
                continue
            order = torch.randperm(n, generator=generator).to(self.device)
            for start in range(0, n, self.batch_size):
                sigma = decay_value(self.sigma, self.sigma_end, step, total, self.decay)
                rate = decay_value(self.lr, self.lr_end, step, total, self.decay)
                xb = xt[order[start:start + self.batch_size]]
                bmus = self._nearest(xb, weights, 1)[1][:, 0]
                h_full = neighborhood(self.neighborhood, self._grid_sq, sigma)
                self._step_towards(weights, xb, bmus, h_full, rate)
                step += 1
            record(epoch, sigma, rate, self._nearest(xt, weights, 2) if track else None)
        self.weights = weights
        return self.history

    def state_dict(self) -> dict[str, Any]:
        """The trained weights and the options that shaped them."""
        return {"weights": None if self.weights is None else self.weights.cpu(), "rows": self.rows, "cols": self.cols,
                "topology": self.topology, "connectivity": self.connectivity, "metric": self.metric}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Load weights saved by :meth:`state_dict` (the grid must match)."""
        if (state["rows"], state["cols"], state["topology"]) != (self.rows, self.cols, self.topology):
            raise DataError(f"som: saved map is {state['rows']}x{state['cols']} {state['topology']}, "
                            f"this one {self.rows}x{self.cols} {self.topology}")
        self.weights = None if state["weights"] is None else state["weights"].to(self.device, self.dtype)
