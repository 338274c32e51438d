"""Evaluate trained models on a split: metrics, breakdowns, human-rater comparison, report files.

``evaluate_models`` writes ``metrics.json``, ``predictions.csv`` and the PNG figures of
emolib.eval.plots. Each reported number carries its split and the actors in it.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..cremad import EMOTIONS, load_votes
from ..data.datasets import FaceDataset, VoiceDataset, select_split
from ..data.defects import excluded_list
from ..data.perceived import with_labels
from ..fast.features import feature_extractor
from ..data.face_cache import face_index
from ..data.features import cached_features, paired_features
from ..files import atomic_write
from ..models.checkpoint import MODEL_KINDS, find_models, load_model
from ..transforms import AudioSettings, FaceSettings
from .metrics import summary_metrics

LABEL_CHOICES = ("intended", "perceived", "both")
AGE_BINS = (0, 30, 45, 60, 200)
AGE_LABELS = ("<30", "30-44", "45-59", "60+")
VOTE_MODALITIES = {"voice": "voice", "face": "face", "audiovisual": "fusion"}


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def unimodal_predictions(model, kind: str, rows: pd.DataFrame, faces=None, cache_dir=None, device="auto", progress=True) -> pd.DataFrame:
    """Per-clip probabilities of a voice or face model on ``rows`` (embeddings cached for the fusion model).

    The face model gets only the clips with a detected face (``faces.clip_has_face``); the others have no face row.
    """
    if kind == "voice":
        dataset = VoiceDataset(rows, AudioSettings.of(model))
    else:
        dataset = FaceDataset(rows, faces, FaceSettings.of(model))
    features, _ = cached_features(model, dataset, kind, cache_dir, None, device, progress, feature_extractor(device))
    with torch.inference_mode():
        logits = model.cpu().classify(features).numpy()
    return probability_table(dataset.rows["stem"], kind, softmax(logits))


def probability_table(stems, kind: str, probabilities: np.ndarray) -> pd.DataFrame:
    table = pd.DataFrame(probabilities, columns=[f"{kind}_{emotion}" for emotion in EMOTIONS])
    table.insert(0, "stem", list(stems))
    table[f"{kind}_pred"] = [EMOTIONS[index] for index in probabilities.argmax(axis=1)]
    return table


def fusion_predictions(fusion, voice, face, manifest, split, faces, cache_dir, device="auto", progress=True) -> pd.DataFrame:
    """Per-clip probabilities of the fusion model on the paired clips of ``split``."""
    tensors, _, stems = paired_features(manifest, split, voice, face, faces, cache_dir, device, progress, feature_extractor(device))
    with torch.inference_mode():
        logits = fusion.cpu()(**tensors).numpy()
    return probability_table(stems, "fusion", softmax(logits))


def predict_split(manifest, models_dir, split="test", cache_dir=None, device="auto", progress=True, kinds=MODEL_KINDS) -> pd.DataFrame:
    """One row per clip of ``split``: truth, demographics and each of ``kinds``' probabilities.

    Per model, ``KIND_EMO`` probabilities and ``KIND_pred`` (NaN where a model has no input: the
    face model on a clip without a detected face, fusion on unpaired clips): the layout of
    predictions.csv, which ``evaluate_predictions`` turns into a report. Models come from
    ``models.checkpoint.find_models``; embeddings are cached in ``cache_dir``. Use
    ``split="val"`` while developing: test is for the final evaluation only.
    """
    rows = select_split(manifest, split)
    table = rows[["stem", "actor", "emotion", "label", "sex", "age", "audio_path", "video_path"]].copy()
    loaded = {kind: load_model(folder) for kind, folder in find_models(models_dir, kinds).items()}
    faces = face_index(rows, cache_dir, FaceSettings.of(loaded["face"]), progress=progress) if "face" in loaded else None
    for kind in ("voice", "face"):
        if kind in loaded and kind in kinds:
            table = table.merge(unimodal_predictions(loaded[kind], kind, rows, faces, cache_dir, device, progress), on="stem", how="left")
    if "fusion" in loaded:
        fused = fusion_predictions(loaded["fusion"], loaded["voice"], loaded["face"], rows, None, faces, cache_dir, device, progress)
        table = table.merge(fused, on="stem", how="left")
    return table


def model_kinds(predictions: pd.DataFrame) -> list[str]:
    return [kind for kind in MODEL_KINDS if f"{kind}_pred" in predictions]


def metrics_for(predictions: pd.DataFrame, kind: str) -> dict:
    rows = predictions.dropna(subset=[f"{kind}_pred"])
    predicted = rows[f"{kind}_pred"].map(EMOTIONS.index)
    return summary_metrics(rows["label"].astype(int), predicted)


def breakdowns(predictions: pd.DataFrame, kind: str) -> dict:
    """UAR and accuracy of ``kind`` by actor sex and by age group."""
    groups = {
        "sex": predictions["sex"].fillna("unknown"),
        "age": pd.cut(predictions["age"], AGE_BINS, labels=AGE_LABELS, right=False).astype(str),
    }
    result = {}
    for name, keys in groups.items():
        result[name] = {}
        for key, rows in predictions.groupby(keys):
            metrics = metrics_for(rows, kind)
            result[name][str(key)] = {"n": metrics["n"], "accuracy": metrics["accuracy"], "uar": metrics["uar"]}
    return result


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


def model_report(predictions: pd.DataFrame, kind: str, labels: str) -> dict:
    """Metrics and breakdowns of ``kind`` against ``labels`` (intended, perceived, or both: intended with a perceived block)."""
    view, dropped = with_labels(predictions, kind, "perceived" if labels == "perceived" else "intended")
    report = {**metrics_for(view, kind), "by": breakdowns(view, kind)}
    if labels == "perceived":
        report["dropped_no_majority"] = dropped
    if labels == "both":
        view, dropped = with_labels(predictions, kind, "perceived")
        metrics = metrics_for(view, kind)
        report["perceived"] = {name: metrics[name] for name in ("n", "accuracy", "uar", "macro_f1")} | {"dropped_no_majority": dropped}
    return report


def evaluate_predictions(predictions: pd.DataFrame, split: str, synthetic: bool = False, labels: str = "intended") -> dict:
    """The metrics.json content for one split's predictions, against the intended labels, the perceived ones or both."""
    if labels not in LABEL_CHOICES:
        raise ValueError(f"labels must be one of {LABEL_CHOICES}, got {labels!r}")
    report = {
        "split": split,
        "actors": sorted(int(actor) for actor in predictions["actor"].unique()),
        "clips": len(predictions),
        "labels": labels,
        "models": {kind: model_report(predictions, kind, labels) for kind in model_kinds(predictions)},
    }
    humans = human_accuracy(predictions)
    if humans:
        note = "votes of CREMA-D raters on the real recordings with these names"
        report["human_raters"] = {**humans, "note": note + (" (this dataset is synthetic: reference only)" if synthetic else "")}
    return report


def data_record(manifest: pd.DataFrame, split: str, context: dict | None = None) -> dict:
    """The data side of a report: context, the actors of each split, and what was left out of ``split``."""
    actors = {name: sorted(int(actor) for actor in rows["actor"].unique()) for name, rows in manifest.groupby("split")}
    return {**(context or {}), "split_actors": actors, "excluded": excluded_list(select_split(manifest, split))}


def split_report(predictions: pd.DataFrame, split: str = "val") -> dict:
    """The metrics report of a development split's predictions, without the human-rater comparison
    (which belongs to the final test report)."""
    report = evaluate_predictions(predictions, split)
    report.pop("human_raters", None)
    return report


def evaluate_models(manifest, models_dir, out_dir, split="test", cache_dir=None, device="auto", synthetic=False, progress=True,
                    context: dict | None = None, labels: str = "intended") -> dict:
    """Predict ``split`` with every model in ``models_dir``; write metrics.json, predictions.csv and figures.

    metrics.json records ``context`` (protocol, fold, label source, ...), the actors of every split
    and the clips of the evaluated split whose files were left out (``data.defects``) and why.
    """
    from .plots import save_report_figures

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    predictions = predict_split(manifest, models_dir, split, cache_dir, device, progress)
    report = evaluate_predictions(predictions, split, synthetic, labels)
    report.update(data_record(manifest, split, context))
    atomic_write(out_dir / "metrics.json", json.dumps(report, indent=2))
    atomic_write(out_dir / "predictions.csv", predictions.to_csv(index=False))
    save_report_figures(report, out_dir)
    return report


def results_table(report: dict) -> pd.DataFrame:
    """Accuracy, UAR and macro-F1 per model (and the human raters when known), for printing."""
    rows = {kind: {name: metrics[name] for name in ("accuracy", "uar", "macro_f1")} for kind, metrics in report["models"].items()}
    table = pd.DataFrame(rows).T
    labels = "" if report.get("labels", "intended") == "intended" else f"; {report['labels']} labels"
    table.index.name = f"{report['split']} split ({report['clips']} clips, {len(report['actors'])} actors{labels})"
    perceived = {kind: metrics["perceived"] for kind, metrics in report["models"].items() if "perceived" in metrics}
    if perceived:
        table["accuracy_perceived"] = [perceived[kind]["accuracy"] for kind in table.index]
        table["uar_perceived"] = [perceived[kind]["uar"] for kind in table.index]
    if "human_raters" in report:
        table["human_acc"] = [report["human_raters"].get(kind) for kind in table.index]
    return table.round(3)
