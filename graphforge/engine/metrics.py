"""Classification metrics and reports."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def accuracy(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Fraction of ``pred`` equal to ``target`` (0.0 for empty input)."""
    if target.numel() == 0:
        return 0.0
    return float((pred == target).float().mean())


def confusion(pred: np.ndarray, target: np.ndarray, num_classes: int) -> np.ndarray:
    """``[C, C]`` counts, rows = true class, columns = predicted class."""
    return np.bincount(target.astype(np.int64) * num_classes + pred.astype(np.int64),
                       minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def _prf(tp: np.ndarray, predicted: np.ndarray, actual: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall and F1 per class (0 where undefined, as scikit-learn's ``zero_division=0``)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / np.maximum(predicted, 1), 0.0)
        recall = np.where(actual > 0, tp / np.maximum(actual, 1), 0.0)
        total = precision + recall
        f1 = np.where(total > 0, 2 * precision * recall / np.where(total > 0, total, 1), 0.0)
    return precision, recall, f1


def summarize(pred: torch.Tensor, target: torch.Tensor, num_classes: int, class_names: list[str]) -> dict[str, Any]:
    """Compute accuracy, macro-F1, the per-class report and the confusion matrix.

    The report has scikit-learn's ``classification_report(..., output_dict=True,
    zero_division=0)`` layout and values (computed here with NumPy: importing scikit-learn
    would add about 1.5 s to every run).

    Args:
        pred: Predicted labels ``[N]``.
        target: True labels ``[N]``.
        num_classes: Number of classes.
        class_names: One name per class.

    Returns:
        ``{"accuracy", "macro_f1", "report", "confusion"}``; ``report`` maps each class name
        to its precision, recall, F1 and support, plus ``accuracy``, ``macro avg`` and
        ``weighted avg``; ``confusion`` is a ``[C, C]`` list (rows = truth). An empty split
        has ``accuracy`` and ``macro_f1`` ``None``.
    """
    p = pred.cpu().numpy()
    t = target.cpu().numpy()
    if len(t) == 0:  # an empty split (e.g. val_fraction=0): nothing to score
        return {"accuracy": None, "macro_f1": None, "report": {},
                "confusion": np.zeros((num_classes, num_classes), dtype=int).tolist()}
    cm = confusion(p, t, num_classes)
    tp = np.diag(cm).astype(np.float64)
    actual = cm.sum(1).astype(np.float64)
    predicted = cm.sum(0).astype(np.float64)
    precision, recall, f1 = _prf(tp, predicted, actual)
    report: dict[str, Any] = {
        name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1-score": float(f1[i]),
               "support": float(actual[i])}
        for i, name in enumerate(class_names)
    }
    acc = accuracy(pred.cpu(), target.cpu())
    total = float(actual.sum())
    weights = actual / total
    report["accuracy"] = acc
    report["macro avg"] = {"precision": float(precision.mean()), "recall": float(recall.mean()),
                           "f1-score": float(f1.mean()), "support": total}
    report["weighted avg"] = {"precision": float((precision * weights).sum()), "recall": float((recall * weights).sum()),
                              "f1-score": float((f1 * weights).sum()), "support": total}
    return {"accuracy": acc, "macro_f1": float(f1.mean()), "report": report, "confusion": cm.tolist()}


def report_text(report: dict[str, Any]) -> str:
    """Format a scikit-learn report dict as an aligned text table."""
    rows = [(name, v) for name, v in report.items() if isinstance(v, dict)]
    width = max([len(n) for n, _ in rows] + [12])
    lines = [f"{'':<{width}}  precision  recall  f1-score  support"]
    for name, v in rows:
        lines.append(
            f"{name:<{width}}  {v['precision']:9.4f}  {v['recall']:6.4f}  {v['f1-score']:8.4f}  {int(v['support']):7d}"
        )
    if "accuracy" in report:
        lines.append(f"{'accuracy':<{width}}  {'':9}  {'':6}  {report['accuracy']:8.4f}")
    return "\n".join(lines) + "\n"
