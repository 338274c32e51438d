"""Evaluate trained models on a split: metrics, breakdowns, human-rater comparison, report files.

``evaluate_models`` writes ``metrics.json``, ``predictions.csv`` and the PNG figures of
emolib.eval.plots. Each reported number carries its split and the actors in it.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ..cremad import load_votes
from ..data.datasets import select_split
from ..data.defects import excluded_list
from ..data.perceived import with_labels
from ..data.splits import speaker_ids, speakers_by_split
from ..files import atomic_write
from ..labels import map_labels
from ..errors import DataError, ModelError
from ..models.checkpoint import MODEL_KINDS, find_models, read_checkpoint_config
from .calibration import calibration_block, risk_coverage
from .fairness import fairness_report, group_columns
from .metrics import summary_metrics
from .predictions import LATE, RAW, predict_split, prediction_labels  # noqa: F401  (predict_split: the notebooks' name for it)
from .provenance import refuse_seen, seen_speakers

LABEL_CHOICES = ("intended", "perceived", "both")
VOTE_MODALITIES = {"voice": "voice", "face": "face", "audiovisual": "fusion"}


def model_kinds(predictions: pd.DataFrame) -> list[str]:
    """The models that predicted at least one clip of ``predictions``."""
    return [kind for kind in (*MODEL_KINDS, LATE) if f"{kind}_pred" in predictions and predictions[f"{kind}_pred"].notna().any()]


def unscored(predictions: pd.DataFrame) -> dict:
    """The loaded models that had no input in these clips, and why (an audio-only corpus gives the face model none)."""
    inputs = {"face": "no clip has a video with a detected face", "fusion": "no clip has both a voice and a detected face"}
    loaded = predictions.attrs.get("labels", {})
    return {kind: inputs.get(kind, "no clip has audio") for kind in loaded if kind not in model_kinds(predictions)}


def metrics_for(predictions: pd.DataFrame, kind: str) -> dict:
    """``kind``'s metrics over its label set on the clips it predicted whose true label is in that set."""
    labels = prediction_labels(predictions, kind)
    rows = predictions.dropna(subset=[f"{kind}_pred"])
    rows = rows[rows["emotion"].astype(str).isin(labels)]
    truth, predicted = (rows[column].astype(str).map(labels.index) for column in ("emotion", f"{kind}_pred"))
    return {**summary_metrics(truth, predicted, labels), "labels": list(labels)}


def outside_label_set(predictions: pd.DataFrame, kind: str) -> dict[str, int]:
    """Clips ``kind`` predicted whose true label is not in its label set, counted per label (left out of its metrics)."""
    rows = predictions.dropna(subset=[f"{kind}_pred"])
    outside = rows.loc[~rows["emotion"].astype(str).isin(prediction_labels(predictions, kind)), "emotion"].astype(str)
    return {str(label): int(count) for label, count in outside.value_counts().sort_index().items()}


def breakdowns(predictions: pd.DataFrame, kind: str, by=()) -> dict:
    """UAR and accuracy of ``kind`` per group of each grouping column (``fairness.group_columns``: sex, age group, race, ethnicity
    where the data has them, and each column of ``by``)."""
    result = {}
    for name, keys in group_columns(predictions, by).items():
        result[name] = {}
        for key, rows in predictions.groupby(keys):
            metrics = metrics_for(rows, kind)
            result[name][str(key)] = {"n": metrics["n"], "accuracy": metrics["accuracy"], "uar": metrics["uar"]}
    return result


def confidence_report(predictions: pd.DataFrame, kind: str, t: float | None = None) -> dict:
    """``calibration`` (temperature, ECE after and before, NLL, Brier, reliability points) and ``abstention`` (coverage and
    accuracy at a few thresholds, and the risk-coverage curve) of ``kind`` on the clips it predicted; {} without the
    uncalibrated columns (a predictions.csv of an older emolib)."""
    labels = prediction_labels(predictions, kind)
    rows = predictions.dropna(subset=[f"{kind}_pred"])
    rows = rows[rows["emotion"].astype(str).isin(labels)]
    raw_columns = [f"{RAW}{kind}_{label}" for label in labels]
    if not set(raw_columns) <= set(rows.columns) or rows.empty:
        return {}
    truth = rows["emotion"].astype(str).map(labels.index).to_numpy()
    calibrated, raw = rows[[f"{kind}_{label}" for label in labels]].to_numpy(float), rows[raw_columns].to_numpy(float)
    block = calibration_block(calibrated, raw, truth)
    block["temperature"] = t
    return {"calibration": block, "abstention": risk_coverage(calibrated, truth)}


def human_accuracy(predictions: pd.DataFrame) -> dict | None:
    """CREMA-D raters' majority-vote accuracy (strict: ties count as wrong) on the same clips."""
    votes = load_votes()
    rows = predictions[predictions["stem"].isin(votes.index)]
    if rows.empty:
        return None
    clip_votes = votes.loc[rows["stem"]]
    result = {"n": len(rows)}
    for column, kind in VOTE_MODALITIES.items():
        correct = [vote == frozenset([emotion]) for vote, emotion in zip(clip_votes[column], rows["emotion"])]
        result[kind] = float(np.mean(correct))
    return result


def model_report(predictions: pd.DataFrame, kind: str, labels: str, by=()) -> dict:
    """Metrics and breakdowns of ``kind`` against ``labels`` (intended, perceived, or both: intended with a perceived block), its
    calibration and abstention (``eval.calibration``), and its results per group of people (``eval.fairness``)."""
    view, dropped = with_labels(predictions, kind, "perceived" if labels == "perceived" else "intended")
    report = {**metrics_for(view, kind), "by": breakdowns(view, kind, by), "outside_label_set": outside_label_set(view, kind),
              **confidence_report(view, kind, predictions.attrs.get("temperatures", {}).get(kind)),
              "fairness": fairness_report(view, kind, metrics_for, by)}
    if labels == "perceived":
        report["dropped_no_majority"] = dropped
    if labels == "both":
        view, dropped = with_labels(predictions, kind, "perceived")
        metrics = metrics_for(view, kind)
        report["perceived"] = {name: metrics[name] for name in ("n", "accuracy", "uar", "macro_f1")} | {"dropped_no_majority": dropped}
    return report


def evaluate_predictions(predictions: pd.DataFrame, split: str, synthetic: bool = False, labels: str = "intended", by=()) -> dict:
    """The metrics.json content for one split's predictions, against the intended labels, the perceived ones or both;
    breakdowns by sex, age and the columns ``by``."""
    if labels not in LABEL_CHOICES:
        raise ValueError(f"labels must be one of {LABEL_CHOICES}, got {labels!r}")
    report = {
        "split": split,
        "actors": speaker_ids(predictions["actor"]),
        "clips": len(predictions),
        "labels": labels,
        "models": {kind: model_report(predictions, kind, labels, by) for kind in model_kinds(predictions)},
    }
    if unscored(predictions):
        report["not_scored"] = unscored(predictions)
    if predictions.attrs.get("speaker_norm"):
        report["speaker_norm"] = predictions.attrs["speaker_norm"]
    humans = human_accuracy(predictions)
    if humans:
        note = "votes of CREMA-D raters on the real recordings with these names"
        report["human_raters"] = {**humans, "note": note + (" (this dataset is synthetic: reference only)" if synthetic else "")}
    return report


def data_record(manifest: pd.DataFrame, split: str, context: dict | None = None) -> dict:
    """The data side of a report: context, the speakers of each split, and what was left out of ``split``."""
    return {**(context or {}), "split_actors": speakers_by_split(manifest), "excluded": excluded_list(select_split(manifest, split))}


def apply_label_map(manifest: pd.DataFrame, mapping: dict | None, labels) -> tuple[pd.DataFrame, dict]:
    """Cross-corpus evaluation: ``manifest`` with its labels renamed by ``mapping`` onto the models' ``labels``, the
    rest dropped; returns (rows, {"map": mapping, "dropped": {label: clips}}). Without a mapping, nothing changes."""
    if not mapping:
        return manifest, {}
    mapped, dropped = map_labels(manifest, mapping, labels)
    return mapped, {"map": mapping, "dropped": dropped}


def split_report(predictions: pd.DataFrame, split: str = "val") -> dict:
    """The metrics report of a development split's predictions, without the human-rater comparison
    (which belongs to the final test report)."""
    report = evaluate_predictions(predictions, split)
    report.pop("human_raters", None)
    return report


def evaluate_models(manifest, models_dir, out_dir, split="test", cache_dir=None, device="auto", synthetic=False, progress=True,
                    context: dict | None = None, labels: str = "intended", label_map: dict | None = None, by=(),
                    allow_seen_speakers: bool = False, speaker_norm: bool = True) -> dict:
    """Predict ``split`` with every model in ``models_dir``; write metrics.json, predictions.csv and figures.

    metrics.json records ``context`` (protocol, fold, label source, ...), the speakers of every split,
    the clips of the evaluated split whose files were left out (``data.defects``) and why, and with
    ``label_map`` (data label -> model label, "" to drop) the mapping and the clips it dropped.
    Each model is scored over its own label set; clips whose label is outside it are counted, not scored.
    A split holding speakers that a checkpoint records as its training or validation speakers is
    refused (``provenance``), or with ``allow_seen_speakers`` evaluated and marked in the report.
    Nothing is written when the evaluation is refused.
    """
    from .plots import save_report_figures

    out_dir = Path(out_dir)
    found = find_models(models_dir)
    unknown = [column for column in by if column not in manifest.columns]
    if unknown:
        raise DataError(f"--by {unknown[0]}: no such manifest column (columns: {', '.join(map(str, manifest.columns))})")
    rows = select_split(manifest, split)
    seen = seen_speakers(found, rows["actor"], split)
    if not allow_seen_speakers:
        refuse_seen(seen, found, split)
    models_labels = {tuple(read_checkpoint_config(folder)[1]["labels"]) for folder in found.values()} if label_map else set()
    if len(models_labels) > 1:
        raise ModelError(f"{models_dir}: its models have different label sets; evaluate them one at a time with a label map")
    evaluated, mapping = apply_label_map(rows, label_map, next(iter(models_labels), ()))
    if evaluated.empty:
        kept = f" after the label map {mapping['map']} (dropped: {mapping['dropped']})" if mapping else ""
        raise DataError(f"nothing left to score: no clip of the {split} split{kept} has one of the models' labels "
                        f"{', '.join(next(iter(models_labels), ()))}")
    predictions = predict_split(evaluated, models_dir, split, cache_dir, device, progress, speaker_norm=speaker_norm)
    report = evaluate_predictions(predictions, split, synthetic, labels, by)
    report.update(data_record(manifest, split, context))
    if mapping:
        report["label_map"] = mapping
    if seen:
        report["seen_speakers"] = seen
        report["warning"] = (f"evaluated with --allow-seen-speakers: the {split} split holds speakers the models trained or selected on "
                             f"({'; '.join(f'{kind}: {len(speakers)}' for kind, speakers in seen.items())}); not a speaker-independent result")
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(out_dir / "metrics.json", json.dumps(report, indent=2))
    atomic_write(out_dir / "predictions.csv", predictions.to_csv(index=False))
    save_report_figures(report, out_dir)
    return report


def results_table(report: dict) -> pd.DataFrame:
    """Accuracy, UAR and macro-F1 per model (and the human raters when known), for printing."""
    rows = {kind: {name: metrics[name] for name in ("accuracy", "uar", "macro_f1")} for kind, metrics in report["models"].items()}
    table = pd.DataFrame(rows).T
    labels = "" if report.get("labels", "intended") == "intended" else f"; {report['labels']} labels"
    seen = "; SEEN SPEAKERS (--allow-seen-speakers)" if report.get("seen_speakers") else ""
    table.index.name = f"{report['split']} split ({report['clips']} clips, {len(report['actors'])} actors{labels}{seen})"
    perceived = {kind: metrics["perceived"] for kind, metrics in report["models"].items() if "perceived" in metrics}
    if perceived:
        table["accuracy_perceived"] = [perceived[kind]["accuracy"] for kind in table.index]
        table["uar_perceived"] = [perceived[kind]["uar"] for kind in table.index]
    if "human_raters" in report:
        table["human_acc"] = [report["human_raters"].get(kind) for kind in table.index]
    return table.round(3)
