"""Result tables and figures for the notebooks: comparisons, breakdowns, human raters, prediction examples.

Every public function returns a pandas DataFrame or a matplotlib Figure and reads only what it is
given: a metrics report (metrics.json), predictions (predictions.csv or
``evaluation.predict_split``) and the face-crop cache. Tables and titles name the split they were
computed on.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .evaluation import results_table
from .predictions import prediction_labels
from .fairness import AGE_LABELS
from .explore import face_crop_paths, show_crop

METRICS = ("n", "accuracy", "uar")
HUMAN_RATINGS = {"voice": "voice only", "face": "face only (silent video)", "fusion": "audiovisual"}


def _pyplot():
    import matplotlib.pyplot as plt

    return plt


def _spread(rows: pd.DataFrame, confidence: pd.Series, n: int) -> pd.DataFrame:
    """The ``n`` most confident rows, taking the best of each true emotion in turn."""
    ranked = rows.assign(_confidence=confidence[rows.index]).sort_values("_confidence", ascending=False, kind="stable")
    ranked["_rank"] = ranked.groupby("emotion").cumcount()
    return ranked.sort_values(["_rank", "_confidence"], ascending=[True, False], kind="stable").head(n)


def prediction_examples(predictions: pd.DataFrame, cache_dir, kind: str = "face", split: str = "val", n: int = 6, settings=None):
    """Face crops of confident correct (top row) and wrong (bottom row) predictions of ``kind``.

    ``predictions`` has stem, video_path, emotion, ``{kind}_pred`` and ``{kind}_EMO`` probability columns (as in
    predictions.csv); ``split`` names the split they come from, for the title. Examples cover the
    emotions in turn, the most confident first.
    """
    plt = _pyplot()
    rows = predictions.dropna(subset=[f"{kind}_pred"])
    probabilities = rows[[f"{kind}_{label}" for label in prediction_labels(predictions, kind)]].to_numpy(dtype=float)
    confidence = pd.Series(probabilities.max(axis=1), index=rows.index)
    correct = rows[f"{kind}_pred"] == rows["emotion"]
    chosen = {"correct": _spread(rows[correct], confidence, n), "wrong": _spread(rows[~correct], confidence, n)}
    paths = face_crop_paths(rows, cache_dir, settings)
    figure, axes = plt.subplots(2, n, figsize=(1.95 * n, 4.6), squeeze=False)
    for row_axes, (name, examples) in zip(axes, chosen.items()):
        for ax in row_axes[len(examples):]:
            ax.axis("off")
        for ax, (_, clip) in zip(row_axes, examples.iterrows()):
            show_crop(ax, paths[clip["stem"]], f"true {clip['emotion']}, pred {clip[f'{kind}_pred']}\n"
                       f"p={clip['_confidence']:.2f}, actor {clip['actor']}", fontsize=7)
        row_axes[0].set_ylabel(f"{name}\n({int((correct == (name == 'correct')).sum())} clips)")
    accuracy = float(correct.mean()) if len(rows) else float("nan")
    figure.suptitle(f"{kind} model on the {split} split (accuracy {accuracy:.2f}, {len(rows)} clips): confident correct and wrong predictions")
    figure.tight_layout()
    return figure


def breakdown_table(report: dict) -> pd.DataFrame:
    """Per-sex and per-age-group n, accuracy and UAR of each model of a metrics report (metrics.json)."""
    records: dict = {}
    for kind, metrics in report["models"].items():
        for group, values in metrics.get("by", {}).items():
            for key, scores in values.items():
                records.setdefault((group, key), {}).update({(kind, metric): scores[metric] for metric in METRICS})
    table = pd.DataFrame.from_dict(records, orient="index")
    if table.empty:
        return table
    order = {label: index for index, label in enumerate(AGE_LABELS)}
    keys = sorted(table.index, key=lambda key: (key[0] != "sex", order.get(key[1], len(order)), key[1]))
    table = table.loc[keys]
    table.index = pd.MultiIndex.from_tuples(keys, names=["group", "value"])
    table.columns = pd.MultiIndex.from_tuples(table.columns, names=[f"{report['split']} split", "metric"])
    return table.round(3)


def comparison_table(report: dict) -> pd.DataFrame:
    """evaluation.results_table plus, with a fusion model, ``uar_vs_best_unimodal`` (each model's UAR
    minus the best of voice and face); the human column is marked reference-only on synthetic data."""
    table = results_table(report)
    unimodal = [report["models"][kind]["uar"] for kind in ("voice", "face") if kind in report["models"]]
    if unimodal and "fusion" in report["models"]:
        table["uar_vs_best_unimodal"] = [round(report["models"][kind]["uar"] - max(unimodal), 3) for kind in table.index]
    if "human_acc" in table and "reference only" in report["human_raters"].get("note", ""):
        table = table.rename(columns={"human_acc": "human_acc (reference only)"})
    return table


def human_rater_table(report: dict) -> pd.DataFrame:
    """Model accuracy next to the CREMA-D raters' majority-vote accuracy on the same clips' names.

    Empty when the report has no ``human_raters``. The index name states the split and, for a
    synthetic data set, that the human numbers are reference only (they rate the real recordings).
    """
    humans = report.get("human_raters")
    if not humans:
        table = pd.DataFrame(columns=["human rating", "model accuracy", "human raters accuracy"])
        table.index.name = f"{report['split']} split: no human votes for these clips"
        return table
    rows = {kind: {"human rating": rating, "model accuracy": report["models"].get(kind, {}).get("accuracy", float("nan")),
                   "human raters accuracy": humans[kind]} for kind, rating in HUMAN_RATINGS.items() if kind in humans}
    table = pd.DataFrame.from_dict(rows, orient="index").round(3)
    reference = " (REFERENCE ONLY: synthetic data, votes are for the real recordings)" if "reference only" in humans.get("note", "") else ""
    table.index.name = f"{report['split']} split, {humans['n']} clips with votes{reference}"
    return table


def plot_human_comparison(report: dict):
    """Bars of each model's accuracy next to the CREMA-D raters' accuracy for the same modality."""
    plt = _pyplot()
    table = human_rater_table(report)
    figure, ax = plt.subplots(figsize=(6, 3.4))
    if table.empty:
        ax.text(0.5, 0.5, "no human votes for these clips", ha="center", va="center", transform=ax.transAxes)
        ax.set(xticks=[], yticks=[], title=f"{report['split']} split: human raters")
        return figure
    positions = np.arange(len(table))
    for offset, column, colour in ((-0.2, "model accuracy", "#55A868"), (0.2, "human raters accuracy", "#8C8C8C")):
        bars = ax.bar(positions + offset, table[column], 0.4, label=column, color=colour)
        ax.bar_label(bars, fmt="%.2f", fontsize=8)
    reference = "\n(reference only: synthetic data)" if "REFERENCE ONLY" in table.index.name else ""
    ax.set(xticks=positions, xticklabels=[f"{kind}\n{rating}" for kind, rating in zip(table.index, table["human rating"])],
           ylim=(0, 1.1), ylabel="accuracy", title=f"{report['split']} split: models vs human raters{reference}")
    ax.legend(fontsize=8, loc="upper left")
    figure.tight_layout()
    return figure


def fairness_table(report: dict) -> pd.DataFrame:
    """One row per model, column and group of a metrics report: UAR, clips, too small, detection rate."""
    rows = []
    for kind, metrics in report.get("models", {}).items():
        for column, block in (metrics.get("fairness") or {}).items():
            for group, entry in block["groups"].items():
                rows.append({"model": kind, "column": column, "group": group, "uar": entry["uar"], "clips": entry["clips"],
                             "too_small": entry["too_small"], "detection_rate": entry.get("detection_rate"),
                             "gap (column)": block["gap"]})
    return pd.DataFrame(rows)
