"""The late-fusion baseline: learned weights over the voice and face models' logits, fitted on the validation split.

``models.pooling.late_fusion_logits`` combines the two models' log-probabilities with one weight per modality and a
bias per label. The weights are fitted (L-BFGS, cross-entropy) on the paired clips of the validation split, which the
voice and face models only selected on, never trained on; every report shows this baseline beside the fusion model.
"""
from __future__ import annotations

import torch

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
