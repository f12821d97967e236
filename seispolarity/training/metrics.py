"""Classification metrics from a confusion matrix (one place for the Trainer, reports and tests)."""
from __future__ import annotations

import numpy as np
import torch

from ..data.labels import CLASS_NAMES


def confusion_matrix(targets: torch.Tensor, predictions: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``cm[i, j]`` = traces of true class i predicted as j (int64)."""
    idx = targets.long().flatten() * num_classes + predictions.long().flatten()
    return torch.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def metrics_from_confusion(cm: torch.Tensor | np.ndarray, class_names=CLASS_NAMES) -> dict:
    """Accuracy, per-class precision / recall / F1 / support, macro F1 and up/down accuracy."""
    cm = np.asarray(cm, dtype=np.float64)
    k = cm.shape[0]
    names = list(class_names)[:k]
    total = cm.sum()
    tp = np.diag(cm)
    predicted = cm.sum(axis=0)
    actual = cm.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(actual > 0, tp / actual, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    out = {
        "accuracy": float(tp.sum() / total) if total else 0.0,
        "precision": {n: float(v) for n, v in zip(names, precision)},
        "recall": {n: float(v) for n, v in zip(names, recall)},
        "f1": {n: float(v) for n, v in zip(names, f1)},
        "support": {n: int(v) for n, v in zip(names, actual)},
        "macro_f1": float(f1[actual > 0].mean()) if (actual > 0).any() else 0.0,
        "confusion_matrix": cm.astype(np.int64).tolist(),
        "num_samples": int(total),
    }
    # Up/down only: of the traces truly up or down, the share predicted with the right sign.
    ud = cm[:2, :2]
    out["updown_accuracy"] = float(np.trace(ud) / cm[:2].sum()) if cm[:2].sum() else 0.0
    return out
