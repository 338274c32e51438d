"""The late-fusion baseline: learned weights over the voice and face models' logits, fitted on the validation split.

``models.pooling.late_fusion_logits`` combines the two models' log-probabilities with one weight per modality and a
bias per label. The weights are fitted (L-BFGS, cross-entropy) on the paired clips of the validation split, which the
voice and face models only selected on, never trained on; every report shows this baseline beside the fusion model.
A fusion model trained with its encoders (``--finetune``) gets its weights after training, from the saved encoders
(``record_after_finetuning``): the ones fitted before would not fit the encoders that moved.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from ..data.features import paired_features
from ..fast.features import feature_extractor
from ..files import atomic_write
from ..locks import folder_lock
from ..models.checkpoint import CONFIG_FILE, load_model
from ..models.pooling import late_fusion_logits

LBFGS_STEPS = 50
L2 = 1e-3


def fit_late_fusion(voice_logits: torch.Tensor, face_logits: torch.Tensor, present: torch.Tensor, labels: torch.Tensor) -> dict:
    """{"weights": [voice, face], "bias": [per label], "fitted_on": "val", "clips": N} minimising the cross-entropy on the given clips."""
    weights = torch.ones(2, requires_grad=True)
    bias = torch.zeros(voice_logits.shape[1], requires_grad=True)
    optimizer = torch.optim.LBFGS([weights, bias], max_iter=LBFGS_STEPS, line_search_fn="strong_wolfe")
    voice_logits, face_logits, present = voice_logits.detach().float(), face_logits.detach().float(), present.float()

    def closure():
        optimizer.zero_grad()
        logits = late_fusion_logits(voice_logits, face_logits, present, weights, bias)
        loss = torch.nn.functional.cross_entropy(logits, labels.long()) + L2 * (weights.pow(2).sum() + bias.pow(2).sum())
        loss.backward()
        return loss

    if len(labels):
        optimizer.step(closure)
    return {"weights": [float(value) for value in weights.detach()], "bias": [float(value) for value in bias.detach()],
            "fitted_on": "val", "clips": int(len(labels))}


def fit_on_validation(voice, face, tensors: dict, labels: torch.Tensor) -> dict:
    """``fit_late_fusion`` on the voice and face models' logits of the validation split's paired embeddings
    (``features.paired_features``: ``voice``, ``face``, ``present``)."""
    with torch.inference_mode():
        voice_logits, face_logits = voice.cpu().classify(tensors["voice"]), face.cpu().classify(tensors["face"])
    return fit_late_fusion(voice_logits, face_logits, tensors["present"], labels)


def record_after_finetuning(out_dir, manifest, faces, cache_dir=None, device="auto", progress: bool = True) -> dict | None:
    """Fit the late-fusion weights on the validation clips with the fine-tuned encoders saved in ``out_dir/voice`` and
    ``out_dir/face`` (the best epoch's) and write them into the fusion checkpoint's config; None when nothing was saved."""
    out_dir = Path(out_dir)
    if not (out_dir / CONFIG_FILE).is_file():
        return None
    voice, face = load_model(out_dir / "voice"), load_model(out_dir / "face")
    tensors, labels, _ = paired_features(manifest, "val", voice, face, faces, cache_dir, device, progress, feature_extractor(device))
    late = fit_on_validation(voice, face, tensors, labels)
    with folder_lock(out_dir, "recording the late-fusion weights"):
        config = json.loads((out_dir / CONFIG_FILE).read_text())
        atomic_write(out_dir / CONFIG_FILE, json.dumps({**config, "late_fusion": late}, indent=2))
    return late

