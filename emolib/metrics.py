"""Classification metrics over the six emotions: accuracy, UAR, macro-F1, confusion matrix."""
from __future__ import annotations

import numpy as np

from .cremad import EMOTIONS


def confusion(labels, predictions, num_labels: int = len(EMOTIONS)) -> np.ndarray:
    """Counts: rows are true emotions, columns predicted ones."""
    matrix = np.zeros((num_labels, num_labels), dtype=np.int64)
    np.add.at(matrix, (np.asarray(labels, dtype=int), np.asarray(predictions, dtype=int)), 1)
    return matrix


def per_class_recall(matrix: np.ndarray) -> np.ndarray:
    """Recall of each true class (NaN for a class with no samples)."""
    support = matrix.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(matrix) / support, np.nan)


def summary_metrics(labels, predictions) -> dict:
    """accuracy, uar (unweighted average recall over classes present), macro_f1, per-class recall, n."""
    matrix = confusion(labels, predictions)
    recall = per_class_recall(matrix)
    predicted = matrix.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(predicted > 0, np.diag(matrix) / predicted, 0.0)
        f1 = np.where(precision + np.nan_to_num(recall) > 0, 2 * precision * recall / (precision + recall), 0.0)
    present = matrix.sum(axis=1) > 0
    total = int(matrix.sum())
    return {
        "n": total,
        "accuracy": float(np.trace(matrix) / total) if total else float("nan"),
        "uar": float(np.nanmean(recall)) if present.any() else float("nan"),
        "macro_f1": float(np.mean(f1[present])) if present.any() else float("nan"),
        "recall": {emotion: (None if np.isnan(value) else float(value)) for emotion, value in zip(EMOTIONS, recall)},
        "confusion": matrix.tolist(),
    }
