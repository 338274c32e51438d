"""Confidence you can use: temperature scaling fitted on validation, calibration metrics, abstention and risk-coverage.

A model's softmax probabilities are rarely calibrated (a 0.9 is right less than 90 % of the time). Temperature scaling
(Guo et al., 2017) divides the logits by one scalar T, fitted after training by minimising the negative log-likelihood on
the validation split (one bounded scalar search over log T, ``fit_temperature``); the top emotion never changes, its
probability becomes one that can be read. Every checkpoint stores its T (``config["calibration"]``; the late-fusion
baseline's in ``config["late_fusion"]``), and every inference path divides by it (``temperature``); older checkpoints
keep 1 and say so.

Metrics, on probabilities whose rows sum to 1 and the true labels' indices: ``ece`` (expected calibration error, 15 equal
bins of confidence), ``nll`` (mean negative log-likelihood), ``brier`` (mean squared error of the probability vector).
``abstained``: a prediction whose top probability is below P says "uncertain"; ``risk_coverage`` is what that costs.
"""
from __future__ import annotations

import numpy as np

BINS = 15
LOG_T_RANGE = (-3.0, 3.0)  # temperatures 0.05 to 20
FLOOR = 1e-12
UNCERTAIN = "uncertain"
THRESHOLDS = (0.3, 0.5, 0.7, 0.9)  # abstention thresholds evaluate reports


def temperature(config: dict | None) -> float:
    """The temperature a checkpoint config stores (1.0: made before calibration, or never fitted)."""
    return float(((config or {}).get("calibration") or {}).get("temperature", 1.0))


def scaled(probabilities: np.ndarray, t: float) -> np.ndarray:
    """Probabilities as softmax(logits / t), from the probabilities softmax(logits) (log p is the logits up to a constant)."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if t == 1.0:
        return probabilities
    logits = np.log(np.maximum(probabilities, FLOOR)) / t
    logits -= logits.max(axis=1, keepdims=True)
    weights = np.exp(logits)
    return weights / weights.sum(axis=1, keepdims=True)


def nll(probabilities: np.ndarray, truth: np.ndarray) -> float:
    probabilities = np.asarray(probabilities, dtype=np.float64)
    return float(-np.mean(np.log(np.maximum(probabilities[np.arange(len(truth)), truth], FLOOR)))) if len(truth) else float("nan")


def fit_temperature(probabilities: np.ndarray, truth: np.ndarray) -> dict:
    """{"temperature", "nll_before", "nll_after", "clips"}: the T minimising the NLL of ``scaled(probabilities, T)`` against ``truth``
    (label indices), by a bounded search over log T; 1 with no clips."""
    from scipy.optimize import minimize_scalar

    truth = np.asarray(truth, dtype=int)
    if not len(truth):
        return {"temperature": 1.0, "nll_before": None, "nll_after": None, "clips": 0}
    found = minimize_scalar(lambda log_t: nll(scaled(probabilities, float(np.exp(log_t))), truth), bounds=LOG_T_RANGE, method="bounded")
    t = float(np.exp(found.x))
    return {"temperature": t, "nll_before": nll(probabilities, truth), "nll_after": nll(scaled(probabilities, t), truth), "clips": int(len(truth))}


def ece(probabilities: np.ndarray, truth: np.ndarray, bins: int = BINS) -> float:
    """Expected calibration error: the clip-weighted mean |accuracy - confidence| over ``bins`` equal bins of the top probability."""
    probabilities, truth = np.asarray(probabilities, dtype=np.float64), np.asarray(truth, dtype=int)
    if not len(truth):
        return float("nan")
    confidence, correct = probabilities.max(axis=1), probabilities.argmax(axis=1) == truth
    index = np.minimum((confidence * bins).astype(int), bins - 1)
    total = 0.0
    for bin_ in range(bins):
        rows = index == bin_
        if rows.any():
            total += rows.sum() * abs(correct[rows].mean() - confidence[rows].mean())
    return float(total / len(truth))


def brier(probabilities: np.ndarray, truth: np.ndarray) -> float:
    probabilities, truth = np.asarray(probabilities, dtype=np.float64), np.asarray(truth, dtype=int)
    if not len(truth):
        return float("nan")
    onehot = np.zeros_like(probabilities)
    onehot[np.arange(len(truth)), truth] = 1.0
    return float(np.mean(((probabilities - onehot) ** 2).sum(axis=1)))


def reliability(probabilities: np.ndarray, truth: np.ndarray, bins: int = BINS) -> list[dict]:
    """Per non-empty bin of the top probability: its confidence, accuracy and clips (a reliability diagram's points)."""
    probabilities, truth = np.asarray(probabilities, dtype=np.float64), np.asarray(truth, dtype=int)
    confidence, correct = probabilities.max(axis=1), probabilities.argmax(axis=1) == truth
    index = np.minimum((confidence * bins).astype(int), bins - 1)
    return [{"bin": (bin_ + 0.5) / bins, "confidence": float(confidence[index == bin_].mean()), "accuracy": float(correct[index == bin_].mean()),
             "clips": int((index == bin_).sum())} for bin_ in range(bins) if (index == bin_).any()]


def calibration_block(calibrated: np.ndarray, raw: np.ndarray, truth: np.ndarray) -> dict:
    """The ``calibration`` block of metrics.json for one model, from its calibrated and uncalibrated probabilities: ECE after
    (``ece``) and before, NLL and Brier after (and NLL before), and the reliability diagram's points before and after."""
    return {"ece": ece(calibrated, truth), "ece_before": ece(raw, truth), "nll": nll(calibrated, truth), "nll_before": nll(raw, truth),
            "brier": brier(calibrated, truth), "bins": BINS, "reliability": reliability(calibrated, truth),
            "reliability_before": reliability(raw, truth)}


def abstained(probabilities: dict, threshold: float | None) -> bool:
    """Whether a prediction says "uncertain": its top probability is below ``threshold`` (None or 0: never)."""
    return bool(threshold) and max(probabilities.values()) < threshold


def risk_coverage(probabilities: np.ndarray, truth: np.ndarray, thresholds=THRESHOLDS) -> dict:
    """Selective prediction: the curve (coverage, risk = error rate on the covered clips, from the most confident down) and, per
    abstention threshold, the coverage and the accuracy on the clips covered."""
    probabilities, truth = np.asarray(probabilities, dtype=np.float64), np.asarray(truth, dtype=int)
    confidence, correct = probabilities.max(axis=1), probabilities.argmax(axis=1) == truth
    order = np.argsort(-confidence, kind="stable")
    covered = np.arange(1, len(order) + 1)
    risk = 1.0 - np.cumsum(correct[order]) / covered
    at = {}
    for threshold in thresholds:
        keep = confidence >= threshold
        at[f"{threshold:g}"] = {"coverage": float(keep.mean()) if len(keep) else float("nan"),
                                "accuracy": float(correct[keep].mean()) if keep.any() else None}
    step = max(1, len(order) // 200)
    return {"coverage": (covered / max(len(order), 1))[::step].tolist(), "risk": risk[::step].tolist(), "at": at}
