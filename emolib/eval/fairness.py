"""Results per group of people: each model's UAR in every group of a grouping column, the worst group and the gap.

Speech emotion models fine-tuned on CREMA-D have been found to differ by sex, race and age, and face detectors by skin
tone; CREMA-D ships each actor's sex, age, race and ethnicity (``cremad``), RAVDESS its actors' sex. ``group_columns`` names
what a split can be grouped by (those, and the manifest columns a user names with ``--by``); ``fairness_report`` gives, per
column, every group's UAR with its clip count (a group under ``MIN_CLIPS`` is flagged as too small to read), the worst UAR
and the gap (best minus worst), and for the face model the face detector's detection rate per group.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

MIN_CLIPS = 30
AGE_BINS = (0, 30, 45, 60, 200)
AGE_LABELS = ("<30", "30-44", "45-59", "60+")
DEMOGRAPHICS = ("sex", "age", "race", "ethnicity")


def group_columns(predictions: pd.DataFrame, by=()) -> dict[str, pd.Series]:
    """{column: each clip's group}: sex, age group, race and ethnicity where the data has them (and not all unknown), then ``by``."""
    groups = {}
    for column in DEMOGRAPHICS:
        if column not in predictions:
            continue
        if column == "age":
            values = pd.cut(pd.to_numeric(predictions["age"], errors="coerce"), AGE_BINS, labels=AGE_LABELS, right=False).astype(str)
            values = values.replace("nan", "unknown")
        else:
            values = predictions[column].fillna("unknown").astype(str)
        if not values.eq("unknown").all():
            groups["age group" if column == "age" else column] = values
    groups.update({column: predictions[column].fillna("").astype(str) for column in by if column in predictions})
    return groups


def fairness_report(predictions: pd.DataFrame, kind: str, metrics_for, by=()) -> dict:
    """Per grouping column: {"groups": {group: {"uar", "clips", "too_small"}}, "worst_uar", "best_uar", "gap", "worst_group"}; for the
    face model each group also has ``detection_rate`` (clips with a video whose face was detected). ``metrics_for(rows, kind)``
    scores a subset of the predictions."""
    report = {}
    for column, keys in group_columns(predictions, by).items():
        groups = {}
        for group, rows in predictions.groupby(keys):
            metrics = metrics_for(rows, kind)
            entry = {"uar": metrics["uar"], "clips": metrics["n"], "too_small": metrics["n"] < MIN_CLIPS}
            if kind == "face" and "video_path" in rows:
                videos = rows[rows["video_path"].fillna("").astype(str) != ""]
                entry["detection_rate"] = float(videos["face_pred"].notna().mean()) if len(videos) else None
            groups[str(group)] = entry
        scored = {group: entry for group, entry in groups.items() if entry["clips"] and np.isfinite(entry["uar"])}
        if not scored:
            continue
        worst = min(scored, key=lambda group: scored[group]["uar"])
        best = max(scored.values(), key=lambda entry: entry["uar"])["uar"]
        report[column] = {"groups": groups, "worst_group": worst, "worst_uar": scored[worst]["uar"], "best_uar": best,
                          "gap": best - scored[worst]["uar"], "min_clips": MIN_CLIPS}
    return report
