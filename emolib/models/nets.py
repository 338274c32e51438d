"""The three emotion models. They see tensors only: preprocessing lives in emolib.transforms.

- VoiceModel: wav2vec2-family encoder -> the last layer or a learned weighted sum of all layers ->
  mean, mean + std or attentive statistics pooling over the (speech) frames -> dropout -> linear head.
- FaceModel: ResNet encoder on face crops -> mean, attention or a small transformer over a clip's
  frames -> dropout -> linear head.
- FusionModel: [voice features, face features, presence flags] -> MLP; missing modalities are
  zeroed and flagged, and modality dropout during training teaches it to cope with them.

Every model has ``features(...)`` (pooled embedding) and ``classify(features)`` (logits). The voice and
face models also split ``features`` in two for the frozen-encoder cache: ``frozen_features(...)`` (what a
frozen encoder gives: per-layer pooled states, per-frame embeddings) and ``from_frozen(...)`` (the learned
rest), so that layer weights and temporal pooling train on cached features. The defaults are the seed
recipe's: last layer, mean pooling, mean over frames.
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
from .choices import FREEZE_CHOICES, LAYER_CHOICES, POOLING_CHOICES, TEMPORAL_CHOICES
from .egemaps import EGEMAPS, EgemapsConfig, EgemapsModel
from .fer import FER, FerConfig, FerModel
from .pooling import (
    MAX_FACE_FRAMES,
    AttentiveStats,
    LayerWeights,
    TemporalPooling,
    masked_mean,
    masked_stats,
    pooled_size,
)
from ..cremad import EMOTIONS
from ..errors import ModelError

FACE_CNN_STAGES = 6


@dataclass
class VoiceConfig:
    """Voice model: backbone is a hub name, a local HF directory or ``tiny``."""

    backbone: str = DEFAULT_VOICE_BACKBONE
    encoder_config: dict = field(default_factory=dict)
    num_labels: int = len(EMOTIONS)
    dropout: float = 0.1
    freeze: str = "cnn"
    layers: str = "last"
    pooling: str = "mean"


@dataclass
class FaceConfig:
    """Face model: a torchvision ResNet name or ``tiny``; weights an enum name, a file or None."""

    backbone: str = DEFAULT_FACE_BACKBONE
    weights: str | None = DEFAULT_FACE_WEIGHTS
    num_labels: int = len(EMOTIONS)
    dropout: float = 0.2
    freeze: str = "none"
    temporal: str = "mean"


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
    return check_choice("freeze mode", freeze, FREEZE_CHOICES)


def check_choice(what: str, value: str, choices) -> str:
    if value not in choices:
        raise ModelError(f"unknown {what} '{value}' (expected one of {', '.join(choices)})")
    return value


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
    """wav2vec2 / HuBERT / WavLM -> last layer or weighted layers -> pooling over the kept frames -> linear head."""

    def __init__(self, config: VoiceConfig, pretrained: bool = False):
        super().__init__()
        check_freeze(config.freeze)
        check_choice("layers mode", config.layers, LAYER_CHOICES)
        check_choice("pooling", config.pooling, POOLING_CHOICES)
        if not config.encoder_config:
            config.encoder_config = voice_encoder_config(config.backbone)
        self.config = config
        self.encoder = build_voice_encoder(config.encoder_config, config.backbone if pretrained else None)
        hidden = self.encoder.config.hidden_size
        self.layer_weights = LayerWeights(self.encoder.config.num_hidden_layers + 1) if config.layers == "weighted" else None
        if self.layer_weights is not None:
            self.encoder.config.layerdrop = 0.0  # a dropped layer would be missing from the hidden states the weights sum
        self.attentive = AttentiveStats(hidden) if config.pooling == "attentive-stats" else None
        self.feature_dim = pooled_size(config.pooling, hidden)
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

    @property
    def pools_per_layer(self) -> bool:
        """True when the frozen-encoder cache holds each layer's pooled states and the layer weights train on them."""
        return self.layer_weights is not None and self.attentive is None

    def frame_states(self, input_values, attention_mask=None, speech_mask=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, L, T, D) hidden states (L = 1: the last layer; else every layer) and the (B, T) mask of the frames to pool:
        those that cover real audio and, with ``speech_mask`` (samples, 1 = speech), speech."""
        output = self.encoder(input_values, attention_mask=self.encoder_mask(attention_mask), output_hidden_states=self.layer_weights is not None)
        hidden = torch.stack(output.hidden_states, dim=1) if self.layer_weights is not None else output.last_hidden_state.unsqueeze(1)
        frames = hidden.shape[2]
        if attention_mask is None:
            mask = torch.ones(hidden.shape[0], frames, dtype=torch.long, device=hidden.device)
        else:
            mask = self.encoder._get_feature_vector_attention_mask(frames, attention_mask)
        if speech_mask is not None:
            mask = mask * speech_frames(speech_mask, frames, self.frame_stride())
        return hidden, mask

    def encoder_mask(self, attention_mask):
        """The sample mask the encoder itself is given: only encoders with LayerNorm'd conv features (``feat_extract_norm``
        "layer") were trained with padding masked; the others (wav2vec2-base) see zero padding as audio, as in pre-training."""
        return attention_mask if self.encoder.config.feat_extract_norm == "layer" else None

    def frame_stride(self) -> int:
        """Samples per encoder frame (320 for wav2vec2-base)."""
        stride = 1
        for step in self.encoder.config.conv_stride:
            stride *= step
        return stride

    def frozen_features(self, input_values, attention_mask=None, speech_mask=None) -> torch.Tensor:
        """What the frozen-encoder cache stores: (B, L, P) per-layer pooled states with weighted layers over mean or
        stats pooling, else the pooled features (B, P) themselves."""
        hidden, mask = self.frame_states(input_values, attention_mask, speech_mask)
        if self.attentive is not None:
            frames = self.layer_weights(hidden) if self.layer_weights is not None else hidden[:, 0]
            return self.attentive(frames, mask)
        batch, layers = hidden.shape[:2]
        pool = masked_mean if self.config.pooling == "mean" else masked_stats
        pooled = pool(hidden.flatten(0, 1), mask.repeat_interleave(layers, dim=0)).view(batch, layers, -1)
        return pooled if self.layer_weights is not None else pooled[:, 0]

    def from_frozen(self, frozen: torch.Tensor) -> torch.Tensor:
        """Features from ``frozen_features``: the learned layer weights over per-layer pooled states, else as they are."""
        return self.layer_weights(frozen) if self.pools_per_layer else frozen

    def features(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None, speech_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The clip embedding: the configured layers, pooled over the frames that cover real audio (and speech)."""
        return self.from_frozen(self.frozen_features(input_values, attention_mask, speech_mask))

    def forward(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None, speech_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.classify(self.features(input_values, attention_mask, speech_mask))


def speech_frames(speech_mask: torch.Tensor, frames: int, stride: int) -> torch.Tensor:
    """A (B, samples) speech mask -> (B, frames): each encoder frame takes the mask at its centre sample."""
    index = (torch.arange(frames, device=speech_mask.device) * stride + stride // 2).clamp(max=speech_mask.shape[1] - 1)
    return speech_mask[:, index].long()


class FaceModel(FrozenAwareModule):
    """ResNet on face crops; a clip (B, F, 3, H, W) gets its frames' embeddings pooled by ``config.temporal``."""

    def __init__(self, config: FaceConfig, pretrained: bool = False):
        super().__init__()
        check_freeze(config.freeze)
        check_choice("temporal pooling", config.temporal, TEMPORAL_CHOICES)
        self.config = config
        self.encoder, frame_dim = build_face_encoder(config.backbone, config.weights if pretrained else None)
        self.temporal = TemporalPooling(config.temporal, frame_dim)
        self.feature_dim = self.temporal.out_dim
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

    def frozen_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """Per-frame embeddings (B, F, D) of (B, 3, H, W) or (B, F, 3, H, W) crops: what the frozen-encoder cache stores."""
        if pixels.dim() == 4:
            pixels = pixels.unsqueeze(1)
        batch, frames = pixels.shape[:2]
        if self.config.temporal == "transformer" and frames > MAX_FACE_FRAMES:
            raise ModelError(f"the transformer over frames takes at most {MAX_FACE_FRAMES} frames per clip, got {frames}")
        return self.encoder(pixels.flatten(0, 1)).view(batch, frames, -1)

    def from_frozen(self, frozen: torch.Tensor) -> torch.Tensor:
        """The clip embedding from per-frame embeddings (B, F, D): the temporal pooling."""
        return self.temporal(frozen)

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        """The clip embedding; accepts (B, 3, H, W) or (B, F, 3, H, W)."""
        return self.from_frozen(self.frozen_features(pixels))

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

    def modality_parameters(self) -> dict:
        """Each modality's own parameters, as (parameter, column slice or None): its LayerNorm and its columns of the
        first layer (what OGM-GE modulates, ``emolib.train.balance``)."""
        first, voice_dim, face_dim = self.mlp[0].weight, self.config.voice_dim, self.config.face_dim
        return {"voice": [(parameter, None) for parameter in self.voice_norm.parameters()] + [(first, slice(0, voice_dim))],
                "face": [(parameter, None) for parameter in self.face_norm.parameters()] + [(first, slice(voice_dim, voice_dim + face_dim))]}

    def scores_alone(self, voice: torch.Tensor, face: torch.Tensor, present: torch.Tensor | None, labels: torch.Tensor) -> dict:
        """{modality: the summed probability of the true ``labels`` with only that modality present} (OGM-GE's scores)."""
        present = torch.ones(labels.shape[0], 2, device=labels.device) if present is None else present
        scores = {}
        for index, modality in enumerate(("voice", "face")):
            alone = torch.zeros_like(present)
            alone[:, index] = present[:, index]
            scores[modality] = torch.softmax(self(voice, face, alone).float(), dim=1).gather(1, labels.view(-1, 1)).sum()
        return scores

    def modality_scores(self, batch: dict, labels: torch.Tensor) -> dict:
        """``scores_alone`` on a batch of cached embeddings (``voice``, ``face``, ``present``)."""
        return self.scores_alone(batch["voice"], batch["face"], batch.get("present"), labels)

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
    backbone = config.get("backbone") if isinstance(config, dict) else getattr(config, "backbone", None)
    if kind == "voice" and backbone == EGEMAPS:  # openSMILE's functionals and a small head, not a wav2vec2
        model_class, config_class = EgemapsModel, EgemapsConfig
    if kind == "face" and backbone == FER:  # the FER2013 mini-Xception of the starter models
        model_class, config_class = FerModel, FerConfig
    if isinstance(config, dict):
        config = config_class(**config)
    return model_class(config, pretrained=pretrained)
