"""OGM-GE: on-the-fly gradient modulation with generalisation enhancement (Peng et al., CVPR 2022), for the fusion model.

After each backward pass the fusion model scores each modality alone on the batch (the summed softmax
probability of the true label with the other modality hidden, which the model handles: it trains with
modality dropout). As in the authors' code (their Eq. 10), the gradients of the modality with the higher score
are scaled by ``1 - tanh(alpha * ratio)`` (ratio: its score over the other's), and Gaussian noise with each
gradient's own standard deviation is added to both modalities' gradients (the "GE" part), so the weaker modality
gets the chance to learn. ALPHA is the authors' recommendation for CREMA-D. The per-epoch mean ratio (voice score
/ face score) and the modality that dominated go into the training history.
"""
from __future__ import annotations

import numpy as np
import torch

ALPHA = 0.8  # strength of the modulation: the authors recommend 0.8 for CREMA-D (0.1 for VGGSound)


class GradientBalancer:
    """OGM-GE for a model with ``modality_parameters()`` ({modality: [(parameter, column slice or None)]}) and
    ``modality_scores(batch, labels)`` (``FusionModel``, ``JointFusion``). ``step(batch, labels)`` runs after the backward pass and before the optimizer."""

    def __init__(self, model, alpha: float = ALPHA, reduce=None, seed: int = 0, noise: bool = True):
        self.model, self.alpha, self.ratios, self.reduce, self.seed, self.steps = model, alpha, [], reduce, seed, 0
        self.noise = noise  # False: OGM alone (no generalisation enhancement)

    def step(self, batch: dict, labels: torch.Tensor) -> dict:
        """Modulate the gradients after a backward pass; under a launcher every process sums the scores of all processes'
        batches and draws the same noise, so the replicas stay equal."""
        scores = self._scores(batch, labels)
        self.steps += 1
        ratio = scores["voice"] / max(scores["face"], 1e-8)
        self.ratios.append(ratio)
        coefficients = {"voice": 1.0, "face": 1.0}
        if ratio > 1:
            coefficients["voice"] = 1 - float(np.tanh(self.alpha * ratio))
        else:
            coefficients["face"] = 1 - float(np.tanh(self.alpha / max(ratio, 1e-8)))
        for modality, coefficient in coefficients.items():
            for parameter, columns in self.model.modality_parameters()[modality]:
                generator = torch.Generator(parameter.device).manual_seed(self.seed * 1_000_003 + self.steps)
                _modulate(parameter, columns, coefficient, generator if self.noise else None)
        return coefficients

    def _scores(self, batch: dict, labels: torch.Tensor) -> dict:
        was_training = self.model.training
        self.model.eval()
        with torch.no_grad():
            scores = self.model.modality_scores(batch, labels)
        self.model.train(was_training)
        total = torch.stack([scores["voice"], scores["face"]])
        total = self.reduce(total) if self.reduce is not None else total
        return {"voice": float(total[0]), "face": float(total[1])}

    def epoch_summary(self) -> dict:
        """The epoch's mean voice/face score ratio and the modality that dominated; starts the next epoch's record."""
        if not self.ratios:
            return {}
        ratio = float(np.mean(self.ratios))
        self.ratios = []
        return {"balance_ratio": ratio, "dominant": "voice" if ratio > 1 else "face"}


def _modulate(parameter: torch.Tensor, columns, coefficient: float, generator: torch.Generator | None) -> None:
    """Scale a parameter's gradient (or the columns ``columns`` of it) and, with a ``generator``, add noise of the
    gradient's standard deviation."""
    grad = parameter.grad
    if grad is None:
        return
    part = grad if columns is None else grad[:, columns]
    modulated = part * coefficient
    if generator is not None and part.numel() > 1:
        modulated = modulated + torch.randn(part.shape, generator=generator, device=part.device, dtype=part.dtype) * part.std()
    if columns is None:
        grad.copy_(modulated)
    else:
        grad[:, columns] = modulated
