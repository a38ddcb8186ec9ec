"""``knn``: the exact k-nearest-neighbour classifier baseline, as a model plugin.

A thin adapter: the classifier itself is :class:`graphforge.neighbors.KNNClassifier`
(scikit-learn's API); :class:`KNN` is what the engine runs
(``graphforge run --converter none --model knn -o k=5``), adding the k sweep report.
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

from graphforge.checks import check_int
from graphforge.core.data import DataSplits
from graphforge.core.model import FitModel
from graphforge.errors import ConfigError
from graphforge.neighbors.classifier import WEIGHTS, KNNClassifier, neighbor_weights, vote
from graphforge.neighbors.metrics import canonical_metric

__all__ = ["KNN", "WEIGHTS", "KNNClassifier", "neighbor_weights", "vote"]  # the classifier's names stay importable here

log = logging.getLogger("graphforge")


def _check_k(k: Any, name: str = "k") -> int:
    return check_int(k, name, minimum=1)  # type: ignore[return-value]


class KNN(FitModel):
    """Exact kNN classifier on (normalised, flattened) images or vectors.

    Args:
        k (int, optional): Number of neighbours. (default: ``5``)
        metric (str, optional): Any metric of :mod:`graphforge.neighbors.metrics` (``euclidean``/``l2``,
            ``cosine``, ``chord``, ``cityblock``/``l1``, ``linf``, ``ip``, ...). (default: ``"euclidean"``)
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
