"""``knn``: the exact k-nearest-neighbour classifier baseline.

:class:`KNNClassifier` is a standalone classifier with scikit-learn's API
(``fit``, ``predict``, ``predict_proba``, ``score``, ``kneighbors``) on top of
:func:`graphforge.neighbors.exact_knn_search`; :class:`KNN` is the model plugin
the engine runs (``graphforge run --converter none --model knn -o k=5``).

Example:
    >>> from graphforge.builtin.models.knn import KNNClassifier
    >>> clf = KNNClassifier(k=3).fit(x_train, y_train)  # doctest: +SKIP
    >>> clf.score(x_test, y_test)  # doctest: +SKIP
    0.98...
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from graphforge.config import check_int
from graphforge.core.data import DataSplits
from graphforge.core.model import FitModel
from graphforge.errors import ConfigError, DataError
from graphforge.hookspecs import hookimpl
from graphforge.neighbors import BACKENDS, KNNIndex, as_float_matrix, canonical_metric

log = logging.getLogger("graphforge")

WEIGHTS = ("uniform", "distance")


def _check_k(k: Any, name: str = "k") -> int:
    return check_int(k, name, minimum=1)  # type: ignore[return-value]


def neighbor_weights(distances: torch.Tensor, weights: str) -> torch.Tensor:
    """Vote weights of neighbours at ``distances`` ``[M, k]``.

    ``uniform`` gives every neighbour weight 1. ``distance`` gives ``1 / d``; when a
    query has neighbours at distance 0 those get weight 1 and the others 0 (as in
    scikit-learn).
    """
    if weights == "uniform":
        return torch.ones_like(distances, dtype=torch.float64)
    d = distances.double()
    zero = d == 0
    w = 1.0 / d.masked_fill(zero, 1.0)
    has_zero = zero.any(1, keepdim=True)
    return torch.where(has_zero, zero.double(), w)


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
        metric (str, optional): ``euclidean``, ``cosine`` or ``cityblock``
            (aliases ``l2``, ``l1``, ``manhattan``). (default: ``"euclidean"``)
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
        self.k = _check_k(k)
        self.metric = canonical_metric(metric)
        if weights not in WEIGHTS:
            raise ConfigError(f"weights must be one of {', '.join(WEIGHTS)}, got {weights!r}")
        if weights == "distance" and self.metric == "ip":
            raise ConfigError("weights='distance' (1 / d) needs a distance; the ip metric's is -<q, x>, use uniform")
        self.weights = weights
        if batch_size is not None:
            _check_k(batch_size, "batch_size")
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
        k = self.k if k is None else _check_k(k)
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
        ks = sorted({_check_k(k, "every k of the sweep") for k in ks})
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


class KNN(FitModel):
    """Exact kNN classifier on (normalised, flattened) images or vectors.

    Args:
        k (int, optional): Number of neighbours. (default: ``5``)
        metric (str, optional): ``euclidean``, ``cosine`` or ``cityblock`` (``l1``). (default: ``"euclidean"``)
        weights (str, optional): ``uniform`` or ``distance``. (default: ``"uniform"``)
        sweep (list of int, optional): Also evaluate these k values (one search at the
            largest); writes ``k_sweep.csv`` and ``plots/k_sweep.png`` and adds
            ``k_sweep`` / ``best_k`` to the metrics. (default: ``None``)
        batch_size (int, optional): Queries per search block. (default: automatic)
        device (str, optional): Search device: ``auto``, ``cpu`` or ``cuda``. (default: ``"auto"``)
        backend (str, optional): ``auto``, ``torch`` or ``faiss``. (default: ``"auto"``)
    """

    name = "knn"
    inputs = frozenset({"vectors", "images"})
    default_epochs = 1
    #: Predicting the training split is a full extra search (N x N); skip it.
    score_train: ClassVar[bool] = False

    def __init__(
        self,
        k: int = 5,
        metric: str = "euclidean",
        weights: str = "uniform",
        sweep: Sequence[int] | None = None,
        batch_size: int | None = None,
        device: str = "auto",
        backend: str = "auto",
    ) -> None:
        self.k = _check_k(k)
        self.metric = canonical_metric(metric)
        self.weights = weights
        if sweep is not None:
            if isinstance(sweep, (int, np.integer)) and not isinstance(sweep, bool):
                sweep = [int(sweep)]
            if not isinstance(sweep, (list, tuple)) or not sweep:
                raise ConfigError(f"sweep must be a non-empty list of k values such as [1,3,5,9,50], got {sweep!r}")
            sweep = sorted({_check_k(v, "every k of the sweep") for v in sweep})
        self.sweep = list(sweep) if sweep is not None else None
        self.batch_size = batch_size
        self.device = device
        self.backend = backend
        self._clf = KNNClassifier(k, metric, weights, batch_size, device, backend)

    @property
    def classifier(self) -> KNNClassifier:
        """The underlying :class:`KNNClassifier`."""
        return self._clf

    def _check_train_size(self, n: int) -> None:
        largest = max([self.k, *(self.sweep or [])])
        if largest > n:
            raise ConfigError(
                f"k={largest} is larger than the training set ({n} samples); "
                "lower k (or the sweep) or use more training data"
            )

    def check_data(self, data: DataSplits) -> None:
        """Every k must fit the training split (checked before the run starts)."""
        self._check_train_size(len(data.train))

    def fit(self, x: torch.Tensor, y: torch.Tensor, num_classes: int) -> KNN:
        """Store the training features; check that every k fits the training set."""
        self._check_train_size(len(x))
        self._clf.fit(x, y, num_classes)
        return self

    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """Return class probabilities ``[N, num_classes]`` (float32)."""
        return self._clf.predict_proba(x).float()

    def report(self, features: dict[str, torch.Tensor], labels: dict[str, torch.Tensor], rundir: Any) -> dict[str, Any]:
        """Evaluate the k sweep (when set) on validation and test; write table and plot."""
        if not self.sweep:
            return {}
        rows = [{"k": k} for k in self.sweep]
        for split in ("val", "test"):
            x, y = features.get(split), labels.get(split)
            if x is None or y is None or len(x) == 0:
                continue
            probas = self._clf.predict_proba_sweep(x, self.sweep)
            for row in rows:
                pred = probas[row["k"]].argmax(1)
                row[f"{split}_accuracy"] = float((pred == y.cpu()).double().mean())
        key = "val_accuracy" if "val_accuracy" in rows[0] else "test_accuracy"
        best = max(rows, key=lambda r: (r.get(key, -1.0), -r["k"])) if key in rows[0] else rows[0]
        if rundir is not None:
            _write_sweep(rows, rundir, f"kNN ({self.metric}, {self.weights} weights)")
        log.info("k sweep: %s", "  ".join(f"k={r['k']}: {r.get('test_accuracy', float('nan')):.4f}" for r in rows))
        return {"k_sweep": rows, "best_k": best["k"]}

    def state_dict(self) -> dict:
        """Return the training features and labels."""
        return self._clf.state_dict()

    def load_state_dict(self, state: dict) -> None:
        """Restore from :meth:`state_dict`."""
        self._clf.load_state_dict(state)


def _write_sweep(rows: list[dict[str, Any]], rundir: Any, title: str) -> None:
    """Write ``k_sweep.csv`` and ``plots/k_sweep.png`` into the run directory."""
    from graphforge.engine.plots import plt, save_figure  # noqa: PLC0415 (matplotlib is slow to import)
    from graphforge.io import write_text  # noqa: PLC0415

    columns = ["k"] + [c for c in ("val_accuracy", "test_accuracy") if c in rows[0]]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    path = Path(getattr(rundir, "path", rundir))
    write_text(path / "k_sweep.csv", buf.getvalue())
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    ks = [r["k"] for r in rows]
    for col, label in (("val_accuracy", "validation"), ("test_accuracy", "test")):
        if col in columns:
            ax.plot(ks, [r[col] for r in rows], marker="o", label=label)
    ax.set_xscale("log")
    ax.minorticks_off()
    ax.set_xticks(ks, labels=[str(k) for k in ks])
    ax.set(xlabel="k (neighbours)", ylabel="accuracy", title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    (path / "plots").mkdir(exist_ok=True)
    save_figure(fig, path / "plots" / "k_sweep.png")


@hookimpl
def register_models(register):  # type: ignore[no-untyped-def]
    register("knn", KNN, "exact k-nearest-neighbour classifier (euclidean, cosine, L1); k sweeps in one search")
