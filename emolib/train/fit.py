"""Training the voice, face and fusion models with the one Trainer.

Two paths: fine-tuning (``freeze`` none or cnn; the GPU path) and frozen encoders whose
embeddings are extracted once and cached (``freeze="all"``; the CPU path). The fusion model
always trains on cached embeddings of the trained voice and face models.
"""
from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn as nn

from ..data.datasets import FaceDataset, FeatureDataset, VoiceDataset, select_split
from ..data.face_cache import face_index
from ..data.features import cached_features, paired_features
from ..errors import DataError
from ..models.checkpoint import load_model, save_checkpoint
from ..models.nets import FaceConfig, FaceModel, FusionConfig, FusionModel, VoiceConfig, VoiceModel
from ..transforms import AudioSettings, FaceSettings
from .trainer import Trainer, TrainConfig


class HeadOnly(nn.Module):
    """Wraps a model whose encoder is frozen so that it trains on cached ``features``."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.model.classify(features)


def fit(model, kind: str, make_dataset, train: TrainConfig, out_dir, preprocessing: dict, cache_dir=None, extra: dict | None = None, progress: bool = True):
    """Train ``model`` with the shared loop; ``make_dataset(split, augment)`` builds its datasets.

    Returns the per-epoch history; the best model (by validation UAR) is saved in ``out_dir``.
    """
    out_dir = Path(out_dir)

    def save_best(trained, metrics):
        save_checkpoint(model, kind, out_dir, preprocessing, {"val": metrics, "training": asdict(train), **(extra or {})})

    if getattr(model.config, "freeze", None) == "all":
        trainable = HeadOnly(model)
        sets = [_feature_dataset(model, make_dataset(split, False), kind, cache_dir, preprocessing, train.device, progress) for split in ("train", "val")]
    else:
        trainable = model
        sets = [make_dataset("train", True), make_dataset("val", False)]
    for name, dataset in zip(("train", "val"), sets):
        if len(dataset) == 0:
            raise DataError(f"the {name} split has no usable {kind} clips; check the manifest and the data folders")
    return Trainer(trainable, sets[0], sets[1], train, out_dir, save_best, progress=progress).fit()


def _feature_dataset(model, dataset, kind, cache_dir, preprocessing, device, progress):
    features, labels = cached_features(model, dataset, kind, cache_dir, preprocessing, device, progress)
    return FeatureDataset({"features": features}, labels)


def train_voice(manifest, out_dir, config: VoiceConfig, train: TrainConfig, audio: AudioSettings | None = None, cache_dir=None, progress: bool = True):
    """Train the wav2vec2 voice model on the manifest's train split, selecting on val."""
    audio = audio or AudioSettings()
    torch.manual_seed(train.seed)
    model = VoiceModel(config, pretrained=True)

    def make_dataset(split, augment):
        return VoiceDataset(select_split(manifest, split), audio, train=augment)

    return fit(model, "voice", make_dataset, train, out_dir, {"audio": asdict(audio)}, cache_dir, progress=progress)


def train_face(manifest, out_dir, config: FaceConfig, train: TrainConfig, face: FaceSettings | None = None, cache_dir=None, workers: int | None = None, progress: bool = True):
    """Train the ResNet face model on cached face crops of the train split, selecting on val.

    ``face`` (crop size, frames, margin, detector) is stored in the checkpoint; every inference path reads it back.
    """
    face = face or FaceSettings()
    faces = face_index(manifest, cache_dir, face, workers, progress)
    torch.manual_seed(train.seed)
    model = FaceModel(config, pretrained=True)

    def make_dataset(split, augment):
        return FaceDataset(select_split(manifest, split), faces, face, train=augment)

    return fit(model, "face", make_dataset, train, out_dir, {"face": asdict(face)}, cache_dir, progress=progress)


def train_fusion(manifest, out_dir, voice_dir, face_dir, train: TrainConfig, hidden_dim: int = 256, cache_dir=None, workers: int | None = None, progress: bool = True):
    """Train the fusion MLP on the trained voice and face models' embeddings of paired clips."""
    voice, face = load_model(voice_dir), load_model(face_dir)
    faces = face_index(manifest, cache_dir, FaceSettings.of(face), workers, progress)
    torch.manual_seed(train.seed)
    model = FusionModel(FusionConfig(voice.feature_dim, face.feature_dim, hidden_dim=hidden_dim))
    preprocessing = {**voice.checkpoint["preprocessing"], **face.checkpoint["preprocessing"]}
    extra = {"voice_checkpoint": os.path.relpath(voice_dir, out_dir), "face_checkpoint": os.path.relpath(face_dir, out_dir)}

    def make_dataset(split, augment):
        tensors, labels, _ = paired_features(manifest, split, voice, face, faces, cache_dir, train.device, progress)
        return FeatureDataset(tensors, labels)

    return fit(model, "fusion", make_dataset, train, out_dir, preprocessing, cache_dir, extra, progress)
