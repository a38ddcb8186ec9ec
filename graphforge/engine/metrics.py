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


def summarize(pred: torch.Tensor, target: torch.Tensor, num_classes: int, class_names: list[str]) -> dict[str, Any]:
    """Compute accuracy, macro-F1, the per-class report and the confusion matrix.

    Args:
        pred: Predicted labels ``[N]``.
        target: True labels ``[N]``.
        num_classes: Number of classes.
        class_names: One name per class.

    Returns:
        ``{"accuracy", "macro_f1", "report", "confusion"}``; ``report`` is
        scikit-learn's per-class dict, ``confusion`` a ``[C, C]`` list (rows = truth).
        An empty split has ``accuracy`` and ``macro_f1`` ``None``.
    """
    # scikit-learn takes ~1.5 s to import: only when a run reports, not for every CLI command.
    from sklearn.metrics import classification_report, confusion_matrix, f1_score

    p = pred.cpu().numpy()
    t = target.cpu().numpy()
    labels = np.arange(num_classes)
    if len(t) == 0:  # an empty split (e.g. val_fraction=0): nothing to score
        return {"accuracy": None, "macro_f1": None, "report": {},
                "confusion": np.zeros((num_classes, num_classes), dtype=int).tolist()}
    return {
        "accuracy": accuracy(pred.cpu(), target.cpu()),
        "macro_f1": float(f1_score(t, p, labels=labels, average="macro", zero_division=0)) if len(t) else 0.0,
        "report": classification_report(
            t, p, labels=labels, target_names=class_names, output_dict=True, zero_division=0
        )
        if len(t)
        else {},
        "confusion": confusion_matrix(t, p, labels=labels).tolist(),
    }


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
