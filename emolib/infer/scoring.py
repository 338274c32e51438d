"""From a prediction's embeddings to its probabilities: each model's calibrated softmax (``classify``), the fusion model's with
its presence flags (``fuse``), late fusion of the voice and face models' log-probabilities, and which of these a prediction
reports (``combine``); and why nothing could be predicted (``nothing_message``)."""
from __future__ import annotations

import numpy as np

from ..eval.calibration import temperature
from .prediction import probability_dict


def classify(model, features, labels) -> dict:
    """A voice or face model's calibrated probabilities (eval.calibration's temperature) for ``features`` (1, D)."""
    import torch

    with torch.inference_mode():
        logits = model.classify(features) / temperature(getattr(model, "checkpoint", None))
        return probability_dict(torch.softmax(logits, dim=1)[0].cpu().numpy(), labels)


def fuse(fusion, voice_features, face_features, present: list[int], labels, device) -> dict:
    """The fusion model's calibrated probabilities; a missing modality's features are zeros, flagged absent in ``present``."""
    import torch

    voice = voice_features if voice_features is not None else torch.zeros(1, fusion.config.voice_dim, device=device)
    face = face_features if face_features is not None else torch.zeros(1, fusion.config.face_dim, device=device)
    flags = torch.tensor([present], dtype=torch.float32, device=device)
    with torch.inference_mode():
        logits = fusion(voice, face, flags) / temperature(getattr(fusion, "checkpoint", None))
        return probability_dict(torch.softmax(logits, dim=1)[0].cpu().numpy(), labels)


def late_fusion(weights: dict, voice: dict, face: dict, labels) -> dict:
    """softmax(w_voice log p_voice + w_face log p_face): a weighted product of the two models' probabilities."""
    logits = (weights["voice"] * np.log(np.maximum(list(voice.values()), 1e-12))
              + weights["face"] * np.log(np.maximum(list(face.values()), 1e-12)))
    exp = np.exp(logits - logits.max())
    return probability_dict(exp / exp.sum(), labels)


def combine(predictor, result: dict, voice_features, face_features, notes: list) -> tuple[dict, str]:
    """(final probabilities, source) of a prediction whose models gave ``result["voice"]`` / ``result["face"]``: with both, the
    fusion model, else late fusion (the folder's weights), else their mean; with one, that model's, or the fusion model with the
    other flagged missing (``single="fusion"``). Adds the fusion model's figures to ``result`` and what was chosen to ``notes``."""
    have_voice, have_face = voice_features is not None, face_features is not None
    if have_voice and have_face:
        if predictor.fusion is not None:
            result["present"] = [1, 1]
            result["fusion"] = fuse(predictor.fusion, voice_features, face_features, [1, 1], predictor.labels, predictor.device)
            return result["fusion"], "fusion"
        if predictor.late:
            notes.append(f"late fusion: {predictor.late['voice']:g} x log p(voice) + {predictor.late['face']:g} x log p(face)")
            return late_fusion(predictor.late, result["voice"], result["face"], predictor.labels), "late"
        notes.append("no fusion model: mean of the voice and face probabilities")
        mean = (np.array(list(result["voice"].values())) + np.array(list(result["face"].values()))) / 2
        return probability_dict(mean, predictor.labels), "average"
    if predictor.single == "fusion" and predictor.fusion is not None:
        result["present"] = [int(have_voice), int(have_face)]
        result["fusion"] = fuse(predictor.fusion, voice_features, face_features, result["present"], predictor.labels, predictor.device)
        notes.append(f"fusion model with the {'face' if have_voice else 'voice'} flagged missing (present {result['present']})")
        return result["fusion"], "fusion"
    source = "voice" if have_voice else "face"
    return result[source], source


def nothing_message(predictor, audio_notes, frames, result: dict, image_name: str) -> str:
    """The one line of a prediction that had neither a usable voice nor a face: every reason."""
    reasons = [note for note in audio_notes if note != "no audio"] or (["no audio"] if predictor.voice is not None else [])
    if frames is None:
        reasons.append("no image")
    elif predictor.face is not None and not result.get("face_found"):
        reasons.append(f"no face found in {image_name}")
    if predictor.voice is None:
        reasons.append("no voice model")
    if predictor.face is None:
        reasons.append("no face model")
    return "nothing to predict from: " + "; ".join(reasons)
