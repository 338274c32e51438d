"""The recipe's pooling heads: how frames (voice) and video frames (face) become one clip embedding.

- ``LayerWeights``: a learned softmax-weighted sum over an encoder's hidden layers (SUPERB's recipe;
  Pepino et al. 2021: for emotion the middle wav2vec2 layers carry more than the last).
- ``masked_mean`` / ``masked_stats`` / ``AttentiveStats``: mean, mean + standard deviation, or
  attentive statistics pooling over the frames a mask keeps (Okabe et al. 2018).
- ``TemporalPooling``: a face clip's per-frame embeddings -> mean, attention pooling, or a small
  transformer with a learned position embedding followed by attention pooling.
- ``late_fusion_logits``: the late-fusion baseline, learned weights over the voice and face logits.

They see tensors only; which one a model uses is its config (``nets.VoiceConfig``, ``nets.FaceConfig``).
"""
from __future__ import annotations

import torch
import torch.nn as nn

ATTENTION_HIDDEN = 128
TRANSFORMER_DIM = 256  # the transformer works on frame embeddings projected to this size (ResNet-50's 2048 would be ~70M weights)
TRANSFORMER_LAYERS = 2
TRANSFORMER_HEADS = 4
MAX_FACE_FRAMES = 64  # the learned position embedding's length: frames per clip beyond it are refused
STD_FLOOR = 1e-5


def masked_mean(hidden: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
    """Mean over time (dim 1) of the frames where ``frame_mask`` is 1."""
    weights = frame_mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


def masked_stats(hidden: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
    """[mean, standard deviation] over time of the frames where ``frame_mask`` is 1: (B, T, D) -> (B, 2D)."""
    mean = masked_mean(hidden, frame_mask)
    variance = masked_mean((hidden - mean.unsqueeze(1)) ** 2, frame_mask)
    return torch.cat([mean, variance.clamp(min=STD_FLOOR).sqrt()], dim=-1)


def pooled_size(pooling: str, dim: int) -> int:
    """The size of a ``pooling`` embedding of ``dim``-wide frames."""
    return dim if pooling == "mean" else 2 * dim


class AttentiveStats(nn.Module):
    """Attentive statistics pooling: a small MLP scores every frame, softmax over the kept frames,
    then the attention-weighted mean and standard deviation: (B, T, D) -> (B, 2D)."""

    def __init__(self, dim: int, hidden: int = ATTENTION_HIDDEN):
        super().__init__()
        self.score = frame_scorer(dim, hidden)

    def forward(self, frames: torch.Tensor, frame_mask: torch.Tensor | None = None) -> torch.Tensor:
        weights = attention_weights(self.score(frames).squeeze(-1), frame_mask).unsqueeze(-1)
        mean = (frames * weights).sum(dim=1)
        variance = (weights * (frames - mean.unsqueeze(1)) ** 2).sum(dim=1)
        return torch.cat([mean, variance.clamp(min=STD_FLOOR).sqrt()], dim=-1)


def frame_scorer(dim: int, hidden: int = ATTENTION_HIDDEN) -> nn.Module:
    """The small MLP that gives each frame an attention score: (..., dim) -> (..., 1)."""
    return nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, 1))


def attention_weights(scores: torch.Tensor, frame_mask: torch.Tensor | None) -> torch.Tensor:
    """Softmax over time of (B, T) scores, masked frames getting none (a clip with no kept frame weighs all equally)."""
    if frame_mask is not None:
        keep = frame_mask.bool()
        keep = keep | ~keep.any(dim=1, keepdim=True)
        scores = scores.masked_fill(~keep, torch.finfo(scores.dtype).min)
    return torch.softmax(scores.float(), dim=1).to(scores.dtype)


class LayerWeights(nn.Module):
    """A softmax-weighted sum over dim 1 (the layers) of (B, L, ...) tensors; starts as the plain mean."""

    def __init__(self, layers: int):
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(layers))

    def weights(self) -> torch.Tensor:
        return torch.softmax(self.logits, dim=0)

    def forward(self, stacked: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (stacked.dim() - 2)
        return (stacked * self.weights().to(stacked.dtype).view(shape)).sum(dim=1)


class TemporalPooling(nn.Module):
    """A face clip's (B, F, D) frame embeddings -> (B, D): ``mean``; ``attention`` (a learned score per frame,
    softmax over the clip's frames); ``transformer`` (TRANSFORMER_LAYERS encoder layers with a learned position
    embedding on frames projected to TRANSFORMER_DIM, then attention pooling). ``out_dim``: the clip embedding's size."""

    def __init__(self, mode: str, dim: int):
        super().__init__()
        self.mode, self.out_dim = mode, dim
        if mode == "transformer":
            self.out_dim = TRANSFORMER_DIM
            self.project = nn.Linear(dim, TRANSFORMER_DIM)
            self.position = nn.Parameter(torch.zeros(1, MAX_FACE_FRAMES, TRANSFORMER_DIM))
            nn.init.trunc_normal_(self.position, std=0.02)
            layer = nn.TransformerEncoderLayer(TRANSFORMER_DIM, TRANSFORMER_HEADS, dim_feedforward=2 * TRANSFORMER_DIM, dropout=0.1,
                                               batch_first=True, norm_first=True)
            self.transformer = nn.TransformerEncoder(layer, TRANSFORMER_LAYERS, enable_nested_tensor=False)
        if mode in ("attention", "transformer"):
            self.score = frame_scorer(self.out_dim)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        if self.mode == "mean":
            return frames.mean(dim=1)
        if self.mode == "transformer":
            frames = self.transformer(self.project(frames) + self.position[:, : frames.shape[1]])
        weights = attention_weights(self.score(frames).squeeze(-1), None).unsqueeze(-1)
        return (frames * weights).sum(dim=1)


def late_fusion_logits(voice: torch.Tensor, face: torch.Tensor, present: torch.Tensor, weights: torch.Tensor,
                       bias: torch.Tensor) -> torch.Tensor:
    """Late fusion: ``weights[0]`` x voice log-probabilities + ``weights[1]`` x face log-probabilities + ``bias``;
    a clip without a face (``present[:, 1] == 0``) keeps its voice term alone."""
    voice = torch.log_softmax(voice, dim=-1) * weights[0] * present[:, :1]
    face = torch.log_softmax(face, dim=-1) * weights[1] * present[:, 1:]
    return voice + face + bias
