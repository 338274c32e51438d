"""The three emotion models. They see tensors only: preprocessing lives in emolib.transforms.

- VoiceModel: wav2vec2-family encoder -> masked mean pooling over time -> dropout -> linear head.
- FaceModel: ResNet encoder on face crops -> mean over a clip's frames -> dropout -> linear head.
- FusionModel: [voice features, face features, presence flags] -> MLP; missing modalities are
  zeroed and flagged, and modality dropout during training teaches it to cope with them.

Every model has ``features(...)`` (pooled embedding) and ``classify(features)`` (logits).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn

from .backbones import (
    DEFAULT_FACE_BACKBONE,
    DEFAULT_FACE_WEIGHTS,
    DEFAULT_VOICE_BACKBONE,
    build_face_encoder,
    build_voice_encoder,
    voice_encoder_config,
)
from ..cremad import EMOTIONS
from ..errors import ModelError

FREEZE_CHOICES = ("none", "cnn", "all")
FACE_CNN_STAGES = 6


@dataclass
class VoiceConfig:
    """Voice model: backbone is a hub name, a local HF directory or ``tiny``."""

    backbone: str = DEFAULT_VOICE_BACKBONE
    encoder_config: dict = field(default_factory=dict)
    num_labels: int = len(EMOTIONS)
    dropout: float = 0.1
    freeze: str = "cnn"


@dataclass
class FaceConfig:
    """Face model: a torchvision ResNet name or ``tiny``; weights an enum name, a file or None."""

    backbone: str = DEFAULT_FACE_BACKBONE
    weights: str | None = DEFAULT_FACE_WEIGHTS
    num_labels: int = len(EMOTIONS)
    dropout: float = 0.2
    freeze: str = "none"


@dataclass
class FusionConfig:
    """Fusion head over the pooled voice and face embeddings."""

    voice_dim: int
    face_dim: int
    hidden_dim: int = 256
    num_labels: int = len(EMOTIONS)
    dropout: float = 0.3
    modality_dropout: float = 0.3


def check_freeze(freeze: str) -> str:
    if freeze not in FREEZE_CHOICES:
        raise ModelError(f"unknown freeze mode '{freeze}' (expected one of {', '.join(FREEZE_CHOICES)})")
    return freeze


class FrozenAwareModule(nn.Module):
    """Keeps frozen submodules in eval mode (no dropout, fixed BatchNorm statistics) while training."""

    def frozen_modules(self) -> list[nn.Module]:
        return []

    def train(self, mode: bool = True):
        super().train(mode)
        for module in self.frozen_modules():
            module.eval()
        return self

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """Logits from pooled features."""
        return self.head(self.dropout(features))


class VoiceModel(FrozenAwareModule):
    """wav2vec2 / HuBERT / WavLM -> mean over valid frames -> linear head."""

    def __init__(self, config: VoiceConfig, pretrained: bool = False):
        super().__init__()
        check_freeze(config.freeze)
        if not config.encoder_config:
            config.encoder_config = voice_encoder_config(config.backbone)
        self.config = config
        self.encoder = build_voice_encoder(config.encoder_config, config.backbone if pretrained else None)
        self.feature_dim = self.encoder.config.hidden_size
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(self.feature_dim, config.num_labels)
        self._apply_freeze()

    def _apply_freeze(self) -> None:
        if self.config.freeze == "all":
            self.encoder.requires_grad_(False)
        elif self.config.freeze == "cnn":
            self.encoder.freeze_feature_encoder()

    def frozen_modules(self):
        if self.config.freeze == "all":
            return [self.encoder]
        return [self.encoder.feature_extractor] if self.config.freeze == "cnn" else []

    def features(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Mean of the encoder's last hidden states over the frames that cover real audio."""
        encoder_mask = attention_mask if self.encoder.config.feat_extract_norm == "layer" else None
        hidden = self.encoder(input_values, attention_mask=encoder_mask).last_hidden_state
        if attention_mask is None:
            return hidden.mean(dim=1)
        return masked_mean(hidden, self.encoder._get_feature_vector_attention_mask(hidden.shape[1], attention_mask))

    def forward(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.classify(self.features(input_values, attention_mask))


def masked_mean(hidden: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
    """Mean over time (dim 1) of the frames where ``frame_mask`` is 1."""
    weights = frame_mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


class FaceModel(FrozenAwareModule):
    """ResNet on face crops; a clip (B, F, 3, H, W) gets the mean of its frames' embeddings."""

    def __init__(self, config: FaceConfig, pretrained: bool = False):
        super().__init__()
        check_freeze(config.freeze)
        self.config = config
        self.encoder, self.feature_dim = build_face_encoder(config.backbone, config.weights if pretrained else None)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(self.feature_dim, config.num_labels)
        for module in self.frozen_modules():
            module.requires_grad_(False)

    def frozen_modules(self):
        if self.config.freeze == "all":
            return [self.encoder]
        if self.config.freeze == "cnn":
            return list(self.encoder.children())[:FACE_CNN_STAGES]
        return []

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        """Mean embedding of a clip's frames; accepts (B, 3, H, W) or (B, F, 3, H, W)."""
        if pixels.dim() == 4:
            pixels = pixels.unsqueeze(1)
        batch, frames = pixels.shape[:2]
        embeddings = self.encoder(pixels.flatten(0, 1))
        return embeddings.view(batch, frames, -1).mean(dim=1)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.classify(self.features(pixels))


class FusionModel(nn.Module):
    """Concatenated voice and face embeddings (each layer-normalised) plus presence flags -> MLP."""

    def __init__(self, config: FusionConfig, pretrained: bool = False):
        super().__init__()
        self.config = config
        self.voice_norm = nn.LayerNorm(config.voice_dim)
        self.face_norm = nn.LayerNorm(config.face_dim)
        self.mlp = nn.Sequential(
            nn.Linear(config.voice_dim + config.face_dim + 2, config.hidden_dim),
            nn.GELU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.hidden_dim, config.num_labels),
        )

    def forward(self, voice: torch.Tensor, face: torch.Tensor, present: torch.Tensor | None = None) -> torch.Tensor:
        """Logits; ``present`` (B, 2) flags which of voice and face are real (default: both)."""
        if present is None:
            present = torch.ones(voice.shape[0], 2, device=voice.device)
        present = present.to(voice.dtype)
        if self.training and self.config.modality_dropout > 0:
            present = drop_one_modality(present, self.config.modality_dropout)
        voice = self.voice_norm(voice) * present[:, :1]
        face = self.face_norm(face) * present[:, 1:]
        return self.mlp(torch.cat([voice, face, present], dim=1))


def drop_one_modality(present: torch.Tensor, probability: float) -> torch.Tensor:
    """Hide voice or face (never both) for a random subset of the clips that have both."""
    both = present.sum(dim=1) == 2
    drop = both & (torch.rand(present.shape[0], device=present.device) < probability)
    which = torch.randint(0, 2, (present.shape[0],), device=present.device)
    present = present.clone()
    present[drop, which[drop]] = 0
    return present


MODEL_CLASSES = {"voice": (VoiceModel, VoiceConfig), "face": (FaceModel, FaceConfig), "fusion": (FusionModel, FusionConfig)}


def build_model(kind: str, config, pretrained: bool = False) -> nn.Module:
    """Instantiate a model of ``kind`` (voice, face, fusion) from its config."""
    if kind not in MODEL_CLASSES:
        raise ModelError(f"unknown model kind '{kind}' (expected voice, face or fusion)")
    model_class, config_class = MODEL_CLASSES[kind]
    if isinstance(config, dict):
        config = config_class(**config)
    return model_class(config, pretrained=pretrained)
