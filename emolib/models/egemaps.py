"""The eGeMAPS voice model (``--backbone egemaps``): openSMILE's 88 functionals -> standardisation -> a small MLP head.

It has the voice model's interface (``features``, ``classify``, ``frozen_features``, ``from_frozen``), so training,
evaluation, prediction and the fusion model use it as they use a frozen wav2vec2: its "frozen features" are the raw
functionals of a clip, ``from_frozen`` standardises them by the corpus statistics it stores (``mean``, ``std``: buffers,
saved with the weights) and passes them through the hidden layer, whose output is the embedding the fusion model uses.
Where a speaker's own statistics are known (``egemaps.SpeakerStats``), callers standardise first and use
``from_standardised``. Its window is read without waveform normalisation (``AudioSettings(normalize=False)``): loudness
is one of its parameters.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from ..cremad import EMOTIONS
from ..egemaps import FEATURE_SET, FEATURES, functionals, opensmile_version

EGEMAPS = "egemaps"


@dataclass
class EgemapsConfig:
    """eGeMAPS voice model: the feature set and the opensmile version that computed its training features, the hidden width
    (the embedding), and whether it trained on per-speaker standardised features."""

    backbone: str = EGEMAPS
    feature_set: str = FEATURE_SET
    opensmile_version: str = ""
    num_labels: int = len(EMOTIONS)
    hidden_dim: int = 64
    dropout: float = 0.3
    speaker_norm: bool = True
    freeze: str = "all"  # the functionals are fixed: only the head learns (the cached-features path)
    layers: str = "last"
    pooling: str = "functionals"


class EgemapsModel(nn.Module):
    """Functionals -> (x - mean) / std -> Linear + GELU + dropout (the embedding) -> Linear (the head)."""

    exportable = False  # no ONNX fast path: openSMILE runs the features, the head is tiny
    pools_per_layer = False

    def __init__(self, config: EgemapsConfig, pretrained: bool = False):
        super().__init__()
        self.config = config
        self.register_buffer("mean", torch.zeros(FEATURES))
        self.register_buffer("std", torch.ones(FEATURES))
        self.hidden = nn.Sequential(nn.Linear(FEATURES, config.hidden_dim), nn.GELU())
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.hidden_dim, config.num_labels)
        self.feature_dim = config.hidden_dim

    @property
    def speaker_norm(self) -> bool:
        return bool(self.config.speaker_norm)

    def frozen_modules(self):
        return []

    @property
    def feature_identity(self) -> str:
        """What the cached functionals depend on (not the head's weights): the feature set and the installed openSMILE."""
        return f"{self.config.feature_set}-opensmile-{opensmile_version()}"

    def set_corpus_statistics(self, raw: torch.Tensor) -> None:
        """Store the mean and standard deviation of the training clips' functionals."""
        raw = raw.double()
        self.mean.copy_(raw.mean(0).float())
        self.std.copy_(raw.std(0).clamp_min(1e-6).float())

    def frozen_features(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None, speech_mask=None) -> torch.Tensor:
        """(B, 88) raw functionals of each window's real samples (``attention_mask``), by openSMILE on the CPU."""
        waves = input_values.detach().cpu().float().numpy()
        lengths = attention_mask.sum(1).tolist() if attention_mask is not None else [waves.shape[1]] * len(waves)
        rows = [functionals(wave[: int(length)]) for wave, length in zip(waves, lengths)]
        return torch.from_numpy(np.stack(rows)).to(input_values.device)

    def standardise(self, raw: torch.Tensor) -> torch.Tensor:
        """Raw functionals standardised by the stored corpus statistics."""
        return (raw - self.mean) / self.std.clamp_min(1e-6)

    def from_standardised(self, standardised: torch.Tensor) -> torch.Tensor:
        """The embedding of standardised functionals."""
        return self.hidden(standardised.float())

    def from_frozen(self, frozen: torch.Tensor) -> torch.Tensor:
        return self.from_standardised(self.standardise(frozen))

    def features(self, input_values, attention_mask=None, speech_mask=None) -> torch.Tensor:
        return self.from_frozen(self.frozen_features(input_values, attention_mask))

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(features))

    def forward(self, input_values, attention_mask=None, speech_mask=None) -> torch.Tensor:
        return self.classify(self.features(input_values, attention_mask))
