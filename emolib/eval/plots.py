"""Figures: confusion matrices, model comparison, training curves. Each returns its Figure."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..cremad import EMOTIONS

MODEL_COLOURS = {"voice": "#4C72B0", "face": "#DD8452", "fusion": "#55A868", "late": "#8172B3", "human": "#8C8C8C"}


def _pyplot():
    import matplotlib.pyplot as plt

    return plt


def plot_confusion(matrix, title: str = "", normalize: bool = False, ax=None, labels=EMOTIONS):
    """Heatmap of a confusion matrix over ``labels`` (counts, or rows normalised to recall)."""
    import seaborn as sns

    plt = _pyplot()
    matrix = np.asarray(matrix, dtype=float)
    if normalize:
        matrix = matrix / np.clip(matrix.sum(axis=1, keepdims=True), 1, None)
    if ax is None:
        _, ax = plt.subplots(figsize=(4.6, 4))
    sns.heatmap(matrix, annot=True, fmt=".2f" if normalize else ".0f", cmap="Blues", cbar=False, square=True,
                xticklabels=list(labels), yticklabels=list(labels), vmin=0, vmax=1 if normalize else None, ax=ax)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    return ax.figure


def plot_confusions(report: dict, normalize: bool = False):
    """One confusion matrix per model of a metrics report, side by side."""
    plt = _pyplot()
    kinds = list(report["models"])
    figure, axes = plt.subplots(1, len(kinds), figsize=(4.6 * len(kinds), 4.2), squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        metrics = report["models"][kind]
        plot_confusion(metrics["confusion"], f"{kind} ({report['split']}, UAR {metrics['uar']:.2f})", normalize, ax,
                       metrics.get("labels", EMOTIONS))
    figure.tight_layout()
    return figure


def plot_comparison(report: dict):
    """Bar chart of accuracy and UAR per model (and human raters' accuracy when known)."""
    plt = _pyplot()
    kinds = list(report["models"])
    figure, ax = plt.subplots(figsize=(6, 3.6))
    positions = np.arange(len(kinds))
    for offset, metric in ((-0.2, "accuracy"), (0.2, "uar")):
        values = [report["models"][kind][metric] for kind in kinds]
        bars = ax.bar(positions + offset, values, 0.4, label=metric, color=[MODEL_COLOURS[k] for k in kinds],
                      alpha=1.0 if metric == "uar" else 0.55)
        ax.bar_label(bars, fmt="%.2f", fontsize=8)
    humans = report.get("human_raters")
    if humans:
        for position, kind in zip(positions, kinds):
            if kind not in humans:
                continue
            ax.hlines(humans[kind], position - 0.4, position + 0.4, colors="black", linestyles="dashed")
        reference = " — reference only" if "synthetic" in humans.get("note", "") else ""
        ax.plot([], [], "k--", label=f"human raters (acc.){reference}")
    ax.axhline(1 / len(next(iter(report["models"].values()), {}).get("labels", EMOTIONS)), color="grey", lw=0.8, ls=":", label="chance")
    ax.set(xticks=positions, xticklabels=kinds, ylim=(0, 1.05), ylabel="score", title=f"{report['split']} split: unimodal vs fusion")
    ax.legend(fontsize=8, loc="upper left")
    figure.tight_layout()
    return figure


def plot_history(history: list[dict], title: str = ""):
    """Training loss and validation loss/accuracy/UAR per epoch."""
    plt = _pyplot()
    epochs = [row["epoch"] for row in history]
    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.3))
    left.plot(epochs, [row["train_loss"] for row in history], "o-", label="train loss")
    left.plot(epochs, [row["val_loss"] for row in history], "o-", label="val loss")
    right.plot(epochs, [row["val_accuracy"] for row in history], "o-", label="val accuracy")
    right.plot(epochs, [row["val_uar"] for row in history], "o-", label="val UAR")
    best = [row["epoch"] for row in history if row.get("best")]
    if best:
        right.axvline(best[-1], color="grey", ls=":", label="best (val UAR)")
    left.set(xlabel="epoch", title=f"{title} loss")
    right.set(xlabel="epoch", ylim=(0, 1), title=f"{title} validation")
    left.legend(fontsize=8)
    right.legend(fontsize=8)
    figure.tight_layout()
    return figure


def plot_reliability(report: dict):
    """A reliability diagram per model: accuracy against confidence in each of the calibration bins, before and after its
    temperature (the diagonal is perfect calibration; the bars' width is the bin)."""
    plt = _pyplot()
    kinds = [kind for kind, metrics in report["models"].items() if metrics.get("calibration")]
    figure, axes = plt.subplots(1, max(1, len(kinds)), figsize=(3.6 * max(1, len(kinds)), 3.6), squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        block = report["models"][kind]["calibration"]
        width = 1.0 / block["bins"]
        for points, colour, label in ((block["reliability_before"], "#C44E52", f"before (ECE {block['ece_before']:.3f})"),
                                      (block["reliability"], MODEL_COLOURS.get(kind, "#4C72B0"), f"after (ECE {block['ece']:.3f})")):
            ax.bar([point["bin"] for point in points], [point["accuracy"] for point in points], width * 0.9, alpha=0.55, color=colour,
                   label=label, edgecolor="black", linewidth=0.3)
        ax.plot([0, 1], [0, 1], "k:", lw=0.8)
        temperature = block.get("temperature")
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence (top probability)", ylabel="accuracy",
               title=f"{kind}" + (f", T = {temperature:.2f}" if temperature else ""))
        ax.legend(fontsize=7, loc="upper left")
    figure.suptitle(f"reliability on the {report['split']} split", fontsize=10)
    figure.tight_layout()
    return figure


def plot_risk_coverage(report: dict):
    """Selective prediction: the error rate on the clips kept against the share kept, keeping the most confident first."""
    plt = _pyplot()
    figure, ax = plt.subplots(figsize=(5, 3.6))
    for kind, metrics in report["models"].items():
        curve = metrics.get("abstention")
        if curve:
            ax.plot(curve["coverage"], curve["risk"], label=kind, color=MODEL_COLOURS.get(kind))
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="coverage (share of clips answered)", ylabel="risk (error rate on them)",
           title=f"risk-coverage on the {report['split']} split")
    ax.legend(fontsize=8)
    figure.tight_layout()
    return figure


def save_report_figures(report: dict, out_dir) -> list[Path]:
    """Write confusion matrices (counts and normalised), the comparison chart, the reliability diagrams and the risk-coverage
    curves as PNGs."""
    plt = _pyplot()
    out_dir = Path(out_dir)
    figures = {
        "confusion_counts.png": plot_confusions(report, normalize=False),
        "confusion_normalized.png": plot_confusions(report, normalize=True),
        "comparison.png": plot_comparison(report),
    }
    if any(metrics.get("calibration") for metrics in report["models"].values()):
        figures.update({"reliability.png": plot_reliability(report), "risk_coverage.png": plot_risk_coverage(report)})
    paths = []
    for name, figure in figures.items():
        figure.savefig(out_dir / name, dpi=110)
        plt.close(figure)
        paths.append(out_dir / name)
    return paths
