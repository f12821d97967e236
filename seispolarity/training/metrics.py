"""Classification metrics from a confusion matrix (one place for the Trainer, reports and tests),
and the running sums of an evaluation."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..data.labels import CLASS_NAMES
from .distributed import DistContext, all_reduce_sum


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


class EvaluationSums:
    """An evaluation's running sums on the device: the confusion matrix, the loss summed over the
    scored traces, the traces left out (a label the model cannot output: unknown, for a two-class
    model) and, when asked, each trace's probabilities, label and index."""

    def __init__(self, num_classes: int, device: torch.device, keep_predictions: bool = False) -> None:
        self.k = num_classes
        self.cm = torch.zeros(num_classes, num_classes, dtype=torch.long, device=device)
        self.sums = torch.zeros(2, dtype=torch.float64, device=device)  # loss sum, traces left out
        self.kept: list[tuple[torch.Tensor, ...]] | None = [] if keep_predictions else None

    def add(self, logits: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor) -> None:
        keep = labels < self.k
        self.sums[1] += (~keep).sum()
        lk, yk = logits[keep], labels[keep]
        if len(yk):
            self.sums[0] += F.cross_entropy(lk, yk, reduction="sum").double()
            self.cm += confusion_matrix(yk, lk.argmax(dim=1), self.k)
        if self.kept is not None:
            self.kept.append((torch.softmax(logits, dim=1).cpu(), labels.cpu(), indices))

    def metrics(self, ctx: DistContext) -> dict[str, Any]:
        """The metrics, summed over DDP ranks (each scored a shard)."""
        all_reduce_sum(self.cm, ctx)
        all_reduce_sum(self.sums, ctx)
        out = metrics_from_confusion(self.cm.cpu(), CLASS_NAMES[:self.k])
        out["loss"] = float(self.sums[0] / max(1, int(self.cm.sum())))
        out["excluded_unknown"] = int(self.sums[1])
        return out if self.kept is None else {**out, **per_trace_arrays(self.kept, self.k)}


def per_trace_arrays(kept: list[tuple[torch.Tensor, ...]], num_classes: int) -> dict[str, np.ndarray]:
    """``evaluate(return_predictions=True)``'s per-trace arrays from its batches' (probabilities, labels, indices)."""
    if not kept:
        return {"predictions": np.zeros(0, np.int64), "probabilities": np.zeros((0, num_classes), np.float32),
                "labels": np.zeros(0, np.int64), "indices": np.zeros(0, np.int64)}
    probs, labels, indices = (torch.cat(parts) for parts in zip(*kept))
    return {"predictions": probs.argmax(dim=1).numpy(), "probabilities": probs.numpy(), "labels": labels.numpy(),
            "indices": indices.numpy()}
