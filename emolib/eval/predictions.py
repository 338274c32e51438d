"""Predicting a split: each model's per-clip probabilities (calibrated by its temperature, and uncalibrated as ``raw_*``),
the fusion model's on paired clips and the late-fusion baseline's, in one table (the layout of predictions.csv).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ..data.datasets import FaceDataset, VoiceDataset, select_split
from ..data.face_cache import face_index
from ..data.features import paired_features, pooled_features
from ..fast.features import feature_extractor
from ..models.checkpoint import MODEL_KINDS, checkpoint_labels, find_models, load_model
from ..models.pooling import late_fusion_logits
from ..transforms import AudioSettings, FaceSettings
from .calibration import scaled, temperature

LATE = "late"  # the late-fusion baseline's rows and columns (train.late), reported beside the fusion model
RAW = "raw_"  # the prefix of a model's uncalibrated probability columns in a predictions table
LOG_FLOOR = 1e-12


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def unimodal_predictions(model, kind: str, rows: pd.DataFrame, faces=None, cache_dir=None, device="auto", progress=True,
                         speaker_norm: bool = True) -> pd.DataFrame:
    """Per-clip probabilities of a voice or face model on ``rows`` (embeddings cached for the fusion model).

    The face model gets only the clips with a detected face (``faces.clip_has_face``); the others have no face row.
    """
    if kind == "voice":
        dataset = VoiceDataset(rows, AudioSettings.of(model))
    else:
        dataset = FaceDataset(rows, faces, FaceSettings.of(model))
    if len(dataset) == 0:  # no clip has this model's input (an audio-only corpus for the face model): no rows, nothing run
        return probability_table([], kind, np.zeros((0, len(checkpoint_labels(model)))), checkpoint_labels(model))
    features, _ = pooled_features(model, dataset, kind, cache_dir, device, progress, feature_extractor(device), speaker_norm)
    with torch.inference_mode():
        logits = model.cpu().classify(features).numpy()
    return probability_table(dataset.rows["stem"], kind, softmax(logits), checkpoint_labels(model), temperature(model.checkpoint))


def probability_table(stems, kind: str, probabilities: np.ndarray, labels, t: float = 1.0) -> pd.DataFrame:
    """``stem``, ``KIND_LABEL`` probability columns (one per label of the model's label set), calibrated by the model's temperature
    ``t`` (``eval.calibration``), ``KIND_pred``, and the uncalibrated ones as ``raw_KIND_LABEL``."""
    calibrated = scaled(probabilities, t)
    table = pd.DataFrame(calibrated, columns=[f"{kind}_{label}" for label in labels])
    table.insert(0, "stem", list(stems))
    table[f"{kind}_pred"] = [labels[index] for index in calibrated.argmax(axis=1)] if len(calibrated) else []
    for index, label in enumerate(labels):
        table[f"{RAW}{kind}_{label}"] = probabilities[:, index] if len(probabilities) else []
    return table


def prediction_labels(predictions: pd.DataFrame, kind: str) -> tuple[str, ...]:
    """The label set of ``kind``'s columns in a predictions table (from ``predict_split`` or predictions.csv)."""
    known = predictions.attrs.get("labels", {}).get(kind)
    if known:
        return tuple(known)
    prefix = f"{kind}_"
    return tuple(column[len(prefix):] for column in predictions.columns if column.startswith(prefix) and column != f"{kind}_pred"
                 and not column.startswith(RAW))


def fusion_predictions(fusion, voice, face, manifest, split, faces, cache_dir, device="auto", progress=True, speaker_norm: bool = True) -> pd.DataFrame:
    """Per-clip probabilities of the fusion model on the paired clips of ``split``."""
    tensors, _, stems = paired_features(manifest, split, voice, face, faces, cache_dir, device, progress, feature_extractor(device), speaker_norm)
    with torch.inference_mode():
        logits = fusion.cpu()(**tensors).numpy()
    return probability_table(stems, "fusion", softmax(logits), checkpoint_labels(fusion), temperature(fusion.checkpoint))


def predict_split(manifest, models_dir, split="test", cache_dir=None, device="auto", progress=True, kinds=MODEL_KINDS,
                  speaker_norm: bool = True) -> pd.DataFrame:
    """One row per clip of ``split``: truth (``emotion``), the manifest's other columns and each of ``kinds``' probabilities.

    Per model, ``KIND_LABEL`` probabilities over its own label set (``attrs["labels"][KIND]``) and
    ``KIND_pred`` (NaN where a model has no input: the face model on a clip without a detected
    face, fusion on unpaired clips): the layout of predictions.csv, which ``evaluate_predictions``
    turns into a report. Models come from ``models.checkpoint.find_models``; embeddings are cached
    in ``cache_dir``. Use ``split="val"`` while developing: test is for the final evaluation only.
    """
    rows = select_split(manifest, split)
    table = rows.drop(columns=["label"]).copy()
    loaded = {kind: load_model(folder) for kind, folder in find_models(models_dir, kinds).items()}
    faces = face_index(rows, cache_dir, FaceSettings.of(loaded["face"]), progress=progress) if "face" in loaded else None
    for kind in ("voice", "face"):
        if kind in loaded and kind in kinds:
            table = table.merge(unimodal_predictions(loaded[kind], kind, rows, faces, cache_dir, device, progress, speaker_norm), on="stem",
                                how="left")
    paired = (rows["audio_path"].astype(str) != "") & (rows["video_path"].astype(str) != "")
    if "fusion" in loaded and paired.any():  # else no fusion row: the report says it had no input
        fused = fusion_predictions(loaded["fusion"], loaded["voice"], loaded["face"], rows, None, faces, cache_dir, device, progress, speaker_norm)
        table = table.merge(fused, on="stem", how="left")
        late = late_predictions(table, loaded["fusion"])
        if late is not None:
            table = table.merge(late, on="stem", how="left")
    table.attrs["labels"] = {kind: list(checkpoint_labels(model)) for kind, model in loaded.items() if kind in kinds}
    table.attrs["temperatures"] = {kind: temperature(model.checkpoint) for kind, model in loaded.items() if kind in kinds}
    if getattr(loaded.get("voice"), "speaker_norm", False):  # what every report of an eGeMAPS voice model says it used
        table.attrs["speaker_norm"] = ("per speaker: each clip standardised by its speaker's clips in this split (the corpus's statistics "
                                       "for a speaker with fewer than 5)") if speaker_norm else "off: the corpus statistics the model stores"
    if "late_pred" in table:
        table.attrs["labels"][LATE] = list(checkpoint_labels(loaded["fusion"]))
        table.attrs["temperatures"][LATE] = float(loaded["fusion"].checkpoint["late_fusion"].get("temperature", 1.0))
    return table


def late_predictions(table: pd.DataFrame, fusion) -> pd.DataFrame | None:
    """The late-fusion baseline's probabilities on the clips the fusion model predicted, from the voice and face models'
    uncalibrated probabilities in ``table`` (the weights were fitted on their logits) and the weights the fusion checkpoint
    records (``train.late``), calibrated by the baseline's own temperature; None without them."""
    late = (getattr(fusion, "checkpoint", None) or {}).get("late_fusion")
    if not late or "voice_pred" not in table or "face_pred" not in table:
        return None
    labels = list(checkpoint_labels(fusion))
    paired = table[table["fusion_pred"].notna()]
    voice, face = (torch.tensor(paired[[f"{RAW}{kind}_{label}" for label in labels]].to_numpy(dtype=np.float64)) for kind in ("voice", "face"))
    present = torch.stack([torch.ones(len(paired), dtype=torch.float64), (~face.isnan().any(dim=1)).double()], dim=1)
    logits = late_fusion_logits(_log_probabilities(voice), _log_probabilities(face), present,
                                torch.tensor(late["weights"], dtype=torch.float64), torch.tensor(late["bias"], dtype=torch.float64))
    return probability_table(paired["stem"], LATE, softmax(logits.numpy()), labels, float(late.get("temperature", 1.0)))


def _log_probabilities(probabilities: torch.Tensor) -> torch.Tensor:
    """Log-probabilities (their own log-softmax, so ``late_fusion_logits`` takes them as logits); a missing row (NaN) gives 0."""
    return probabilities.nan_to_num(1.0).clamp(min=LOG_FLOOR).log()
