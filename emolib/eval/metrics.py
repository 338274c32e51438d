"""Classification metrics over a label set, through scikit-learn: accuracy, UAR, macro-F1, confusion matrix.

UAR (unweighted average recall) and macro-F1 average over the classes present in the true labels,
so a split that lacks a class is not penalised for it.
"""
from __future__ import annotations

import warnings

import numpy as np

from ..cremad import EMOTIONS


def confusion(labels, predictions, num_labels: int = len(EMOTIONS)) -> np.ndarray:
    """Counts: rows are true labels, columns predicted ones (label indices 0 .. num_labels - 1)."""
    from sklearn.metrics import confusion_matrix

    return confusion_matrix(np.asarray(labels, dtype=int), np.asarray(predictions, dtype=int), labels=list(range(num_labels)))


def summary_metrics(labels, predictions, names=EMOTIONS) -> dict:
    """accuracy, uar (unweighted average recall over classes present), macro_f1, per-class recall, n.

    ``labels`` and ``predictions`` are indices into the label set ``names``.
    """
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, recall_score

    labels, predictions = np.asarray(labels, dtype=int), np.asarray(predictions, dtype=int)
    if len(labels) == 0:
        nan = float("nan")
        return {"n": 0, "accuracy": nan, "uar": nan, "macro_f1": nan, "recall": dict.fromkeys(names),
                "confusion": np.zeros((len(names), len(names)), dtype=int).tolist()}
    matrix = confusion(labels, predictions, len(names))
    present = sorted(set(labels.tolist()))
    recall = recall_score(labels, predictions, labels=list(range(len(names))), average=None, zero_division=0)
    return {
        "n": int(len(labels)),
        "accuracy": float(accuracy_score(labels, predictions)),
        "uar": float(_balanced_accuracy(labels, predictions, balanced_accuracy_score)),
        "macro_f1": float(f1_score(labels, predictions, labels=present, average="macro", zero_division=0)),
        "recall": {name: (float(recall[index]) if index in present else None) for index, name in enumerate(names)},
        "confusion": matrix.tolist(),
    }


def _balanced_accuracy(labels, predictions, score) -> float:
    with warnings.catch_warnings():  # a class predicted but absent from the labels is left out, as intended
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        return score(labels, predictions)
