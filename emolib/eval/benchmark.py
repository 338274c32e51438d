"""Notebook 07's tables: the HiCMAE 5-fold protocol per recipe, per fold and mean ± std, beside the published anchors.

``benchmark_table`` reads ``cv_metrics.json`` summaries (``train.recipes.cross_validate``), one per recipe.
The anchors are the best published speaker-independent CREMA-D results under the same protocol (UAR, %), and
the CREMA-D raters' individual accuracy (%, Cao et al. 2014); docs/recipe.md cites them.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

METRICS = {"uar": "UAR", "accuracy": "accuracy", "macro_f1": "macro-F1"}
PUBLISHED = (  # (modality, method, UAR %, source): CREMA-D, HiCMAE's speaker-independent 5-fold protocol
    ("voice", "WavLM-Plus, fine-tuned", 73.3, "HiCMAE's CREMA-D comparison (Sun et al. 2024)"),
    ("face", "MAE-DFER / SVFAP", 77.3, "HiCMAE's CREMA-D comparison (Sun et al. 2024)"),
    ("fusion", "HiCMAE-B (folds 83.3-87.2)", 84.9, "HiCMAE (Sun et al. 2024)"),
    ("fusion", "AVF-MAE++", 86.0, "AVF-MAE++ (2025)"),
)
HUMAN_RATERS = {"voice": 40.9, "face": 58.2, "fusion": 63.6}  # individual raters' accuracy: voice only, face only, audio-visual


def read_summaries(reports_dir, recipes) -> dict:
    """{recipe: cv_metrics.json} for the recipes whose cross-validation finished under ``reports_dir/<recipe>``."""
    found = {}
    for recipe in recipes:
        path = Path(reports_dir) / recipe / "cv_metrics.json"
        if path.is_file():
            found[recipe] = json.loads(path.read_text())
    return found


def benchmark_table(summaries: dict) -> pd.DataFrame:
    """One row per (recipe, model): each fold's UAR (paper fold numbers) and each metric's mean ± std over the folds, in %."""
    rows = []
    for recipe, summary in summaries.items():
        folds = [fold + 1 if isinstance(fold, int) else fold for fold in summary.get("fold_ids", [])]
        for kind, stats in summary["models"].items():
            row = {"recipe": recipe, "model": kind}
            for fold, value in zip(folds, stats["uar_folds"]):
                row[f"fold {fold} UAR"] = round(100 * value, 1)
            for metric, name in METRICS.items():
                values = 100 * np.asarray(stats[f"{metric}_folds"], dtype=float)
                row[name] = f"{values.mean():.1f} ± {values.std():.1f}"
            row["folds"] = len(stats["uar_folds"])
            rows.append(row)
    return pd.DataFrame(rows).set_index(["recipe", "model"]) if rows else pd.DataFrame()


def anchors_table() -> pd.DataFrame:
    """The published anchors (UAR %) and the CREMA-D raters' individual accuracy (%) per modality."""
    rows = [{"model": kind, "reference": method, "UAR %": value, "source": source} for kind, method, value, source in PUBLISHED]
    rows += [{"model": kind, "reference": "CREMA-D raters (individual accuracy)", "UAR %": np.nan, "accuracy %": value,
              "source": "Cao et al. 2014"} for kind, value in HUMAN_RATERS.items()]
    return pd.DataFrame(rows).set_index(["model", "reference"])


def plot_benchmark(summaries: dict):
    """Mean UAR ± std per model and recipe, with the best published UAR of each modality as a dashed line."""
    import matplotlib.pyplot as plt

    figure, ax = plt.subplots(figsize=(7, 3.6))
    kinds = [kind for kind in ("voice", "face", "fusion", "late") if any(kind in summary["models"] for summary in summaries.values())]
    width = 0.8 / max(len(summaries), 1)
    for index, (recipe, summary) in enumerate(summaries.items()):
        means = [100 * summary["models"].get(kind, {}).get("uar_mean", np.nan) for kind in kinds]
        stds = [100 * summary["models"].get(kind, {}).get("uar_std", 0) for kind in kinds]
        ax.bar(np.arange(len(kinds)) + (index - (len(summaries) - 1) / 2) * width, means, width, yerr=stds, capsize=3, label=f"recipe {recipe}")
    for position, kind in enumerate(kinds):
        best = max((value for modality, _, value, _ in PUBLISHED if modality == kind), default=None)
        if best is not None:
            ax.hlines(best, position - 0.4, position + 0.4, colors="black", linestyles="dashed")
    ax.plot([], [], "k--", label="best published (HiCMAE protocol)")
    ax.set(xticks=np.arange(len(kinds)), xticklabels=kinds, ylim=(0, 100), ylabel="test UAR %", title="HiCMAE 5-fold protocol: mean ± std over folds")
    ax.legend(fontsize=8)
    figure.tight_layout()
    return figure
