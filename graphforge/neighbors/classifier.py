"""The exact k-nearest-neighbour classifier, with scikit-learn's API.

:class:`KNNClassifier` (``fit``, ``predict``, ``predict_proba``, ``score``,
``kneighbors``, ``predict_proba_sweep``) runs on :class:`~graphforge.neighbors.KNNIndex`:
exact search, every metric of :mod:`graphforge.neighbors.metrics`, on the CPU (GEMM +
native selection), FAISS or a GPU. The ``knn`` model plugin is a thin adapter around it.

Example:
    >>> from graphforge.neighbors import KNNClassifier
    >>> clf = KNNClassifier(k=3).fit(x_train, y_train)  # doctest: +SKIP
    >>> clf.score(x_test, y_test)  # doctest: +SKIP
    0.98...
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from graphforge.checks import check_int
from graphforge.errors import ConfigError, DataError
from graphforge.neighbors.arrays import as_float_matrix
from graphforge.neighbors.metrics import get_metric
from graphforge.neighbors.search import BACKENDS, KNNIndex

__all__ = ["WEIGHTS", "KNNClassifier", "neighbor_weights", "vote"]


def _positive_int(k: Any, name: str = "k") -> int:
    return check_int(k, name, minimum=1)  # type: ignore[return-value]


WEIGHTS = ("uniform", "distance")


def neighbor_weights(distances: torch.Tensor, weights: str) -> torch.Tensor:
    """Vote weights of neighbours at ``distances`` ``[M, k]`` (float64, never negative or infinite).

    ``uniform`` gives every neighbour weight 1. ``distance`` gives ``1 / d``; a query
    with *exact matches* — neighbours whose ``1 / d`` is infinite (``d = 0``, or so
    small that its inverse overflows) — gives them weight 1 and every other neighbour
    0, as scikit-learn does. Distances are non-negative here (each metric is clamped
    to its range); a negative one is treated as 0.
    """
    if weights == "uniform":
        return torch.ones_like(distances, dtype=torch.float64)
    d = distances.double().clamp_min(0.0)
    with torch.no_grad():
        w = 1.0 / d  # inf where d == 0
    exact = torch.isinf(w)
    has_exact = exact.any(1, keepdim=True)
    return torch.where(has_exact, exact.double(), w)


def vote(labels: torch.Tensor, weights: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Class probabilities ``[M, num_classes]`` from neighbour labels and weights ``[M, k]``."""
    votes = torch.zeros(labels.shape[0], num_classes, dtype=torch.float64)
    votes.scatter_add_(1, labels, weights.double())
    total = votes.sum(1, keepdim=True)
    return votes / torch.where(total > 0, total, torch.ones_like(total))


class KNNClassifier:
    """Exact k-nearest-neighbour classifier (scikit-learn-like API, FAISS/torch search).

    Predictions equal scikit-learn's ``KNeighborsClassifier(algorithm="brute")``
    except on exact distance ties: neighbours at equal distance are ordered by
    training index, and equal votes go to the smallest class, as in scikit-learn.

    Args:
        k (int, optional): Number of neighbours. (default: ``5``)
        metric (str, optional): Any metric of :mod:`graphforge.neighbors.metrics`:
            ``euclidean`` (``l2``), ``sqeuclidean``, ``cosine``, ``chord``, ``cityblock``
            (``l1``, ``manhattan``), ``linf`` (``chebyshev``) or ``ip``. (default: ``"euclidean"``)
        weights (str, optional): ``uniform`` or ``distance`` (``1 / d``). (default: ``"uniform"``)
        batch_size (int, optional): Queries per search block (default: memory-bounded
            automatic choice).
        device (str, optional): Search device: ``auto``, ``cpu`` or ``cuda``. (default: ``"auto"``)
        backend (str, optional): ``auto``, ``torch`` or ``faiss`` (see
            :func:`graphforge.neighbors.exact_knn_search`). (default: ``"auto"``)

    Attributes:
        classes_ (np.ndarray): The distinct training labels, sorted.
        n_features_in_ (int): Features per sample seen by :meth:`fit`.
    """

    def __init__(
        self,
        k: int = 5,
        metric: str = "euclidean",
        weights: str = "uniform",
        batch_size: int | None = None,
        device: str = "auto",
        backend: str = "auto",
    ) -> None:
        self.k = _positive_int(k)
        found = get_metric(metric)
        self.metric = found.name
        if weights not in WEIGHTS:
            raise ConfigError(f"weights must be one of {', '.join(WEIGHTS)}, got {weights!r}")
        if weights == "distance" and not found.nonnegative:
            raise ConfigError("weights='distance' (1 / d) needs a distance; the ip metric's is -<q, x>, use uniform")
        self.weights = weights
        if batch_size is not None:
            _positive_int(batch_size, "batch_size")
        self.batch_size = batch_size
        if device != "auto" and not (str(device) in ("cpu", "cuda") or str(device).startswith("cuda:")):
            raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got {device!r}")
        self.device = device
        if backend not in BACKENDS:
            raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        self.backend = backend
        self._x: torch.Tensor | None = None
        self._index: KNNIndex | None = None  # built by fit (or on first search after loading)
        self._y: torch.Tensor | None = None  # class indices into classes_
        self.classes_: np.ndarray | None = None
        self.n_features_in_: int | None = None

    # --- fitting ---------------------------------------------------------------------
    def fit(self, x: Any, y: Any, num_classes: int | None = None) -> KNNClassifier:
        """Store the training samples.

        Args:
            x: Training features ``[N, D]`` (numpy array or tensor).
            y: Labels ``[N]`` (any sortable values).
            num_classes: When given, labels must be integers in ``0..num_classes-1`` and
                :meth:`predict_proba` has exactly ``num_classes`` columns (classes
                absent from ``y`` get probability 0).

        Returns:
            ``self``.
        """
        xt = as_float_matrix(x, "training features")
        ya = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
        if ya.ndim != 1 or len(ya) != len(xt):
            raise DataError(f"labels must be 1-D with one label per sample: {len(xt)} samples, labels of shape {ya.shape}")
        if len(xt) == 0:
            raise DataError("cannot fit a kNN classifier on zero samples")
        if num_classes is not None:
            if ya.min() < 0 or ya.max() >= num_classes:
                raise DataError(f"labels must be in 0..{num_classes - 1}")
            self.classes_ = np.arange(num_classes)
            codes = ya.astype(np.int64)
        else:
            self.classes_, codes = np.unique(ya, return_inverse=True)
        self._x = xt
        self._index = KNNIndex(xt, self.metric, device=self.device, backend=self.backend)
        self._y = torch.from_numpy(np.asarray(codes, dtype=np.int64).reshape(-1))
        self.n_features_in_ = int(xt.shape[1])
        return self

    def _check_fitted(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._x is None or self._y is None:
            raise ConfigError("this KNNClassifier is not fitted yet; call fit(x, y) first")
        return self._x, self._y

    def _queries(self, x: Any) -> torch.Tensor:
        xt = as_float_matrix(x, "query features")
        if xt.shape[1] != self.n_features_in_:
            raise DataError(
                f"feature size mismatch: fitted on {self.n_features_in_} features per sample, "
                f"got {xt.shape[1]}"
            )
        return xt

    # --- prediction ------------------------------------------------------------------
    def kneighbors(
        self, x: Any, k: int | None = None, return_distance: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor] | torch.Tensor:
        """Return ``(distances, indices)`` of the ``k`` nearest training samples (float64, int64 ``[M, k]``)."""
        train, _ = self._check_fitted()
        k = self.k if k is None else _positive_int(k)
        if k > len(train):
            raise ConfigError(f"k={k} is larger than the training set ({len(train)} samples); use k <= {len(train)}")
        queries = self._queries(x)
        if self._index is None:
            self._index = KNNIndex(train, self.metric, device=self.device, backend=self.backend)
        dist, idx = self._index.search(queries, k, batch_size=self.batch_size)
        return (dist, idx) if return_distance else idx

    def _proba_from_neighbors(self, dist: torch.Tensor, idx: torch.Tensor, k: int) -> torch.Tensor:
        _, labels = self._check_fitted()
        assert self.classes_ is not None
        w = neighbor_weights(dist[:, :k], self.weights)
        return vote(labels[idx[:, :k]], w, len(self.classes_))

    def predict_proba(self, x: Any) -> torch.Tensor:
        """Return class probabilities ``[M, n_classes]`` (float64; columns follow ``classes_``)."""
        dist, idx = self.kneighbors(x)  # type: ignore[misc]
        return self._proba_from_neighbors(dist, idx, self.k)

    def predict(self, x: Any) -> np.ndarray:
        """Return the predicted labels ``[M]`` (ties go to the smallest class)."""
        self._check_fitted()
        proba = self.predict_proba(x)
        return self.classes_[proba.argmax(1).numpy()]  # type: ignore[index]

    def score(self, x: Any, y: Any) -> float:
        """Return the accuracy on ``(x, y)``."""
        ya = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
        pred = self.predict(x)
        if ya.shape != pred.shape:
            raise DataError(f"score needs one label per sample: {len(pred)} samples, labels of shape {ya.shape}")
        return float((pred == ya).mean())

    def predict_proba_sweep(self, x: Any, ks: Sequence[int]) -> dict[int, torch.Tensor]:
        """Class probabilities for several ``k`` at the cost of one search (at the largest ``k``).

        Because ties are broken by training index, the neighbours at ``k`` are the
        first ``k`` of those at ``max(ks)``, so each entry equals a separate run.
        """
        ks = sorted({_positive_int(k, "every k of the sweep") for k in ks})
        if not ks:
            raise ConfigError("the k sweep is empty")
        dist, idx = self.kneighbors(x, k=ks[-1])  # type: ignore[misc]
        return {k: self._proba_from_neighbors(dist, idx, k) for k in ks}

    # --- persistence -----------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Return the fitted state (training samples, labels, classes)."""
        x, y = self._check_fitted()
        return {"x": x, "y": y, "classes": torch.as_tensor(self.classes_)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict`."""
        self._x = state["x"].float().contiguous()
        self._index = None
        self._y = state["y"].long()
        self.classes_ = state["classes"].numpy()
        self.n_features_in_ = int(self._x.shape[1])

    def __repr__(self) -> str:
        return f"KNNClassifier(k={self.k}, metric={self.metric!r}, weights={self.weights!r})"
