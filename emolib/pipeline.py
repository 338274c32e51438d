"""Training recipes for the voice, face and fusion models, shared by the CLI and the notebooks.

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

from .checkpoint import load_model, save_checkpoint
from .datasets import FaceDataset, FeatureDataset, PairedDataset, VoiceDataset, select_split
from .features import cached_features
from .models import FaceConfig, FaceModel, FusionConfig, FusionModel, VoiceConfig, VoiceModel
from .training import Trainer, TrainConfig
from .transforms import FACE_IMAGE_SIZE, AudioSettings, FaceSettings

DEFAULT_CACHE = Path(os.environ.get("EMOLIB_CACHE", Path.home() / ".cache" / "emolib"))
MODEL_DIRS = {"voice": "voice", "face": "face", "fusion": "fusion"}
SETTINGS_KEYS = {"voice": "audio", "face": "face"}


class HeadOnly(nn.Module):
    """Wraps a model whose encoder is frozen so that it trains on cached ``features``."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.model.classify(features)


def face_index(manifest, cache_dir, settings: FaceSettings, workers: int | None = None, progress: bool = True):
    """Face crops for every clip with video, prepared once into ``cache_dir/faces``."""
    from .faces import prepare_faces

    return prepare_faces(manifest, Path(cache_dir) / "faces", frames=settings.frames, size=FACE_IMAGE_SIZE,
                         margin=settings.margin, workers=workers, progress=progress)


def fit(model, kind: str, make_dataset, train: TrainConfig, out_dir, preprocessing: dict, cache_dir, extra: dict | None = None, progress: bool = True):
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
            from .errors import DataError

            raise DataError(f"the {name} split has no usable {kind} clips; check the manifest and the data folders")
    return Trainer(trainable, sets[0], sets[1], train, out_dir, save_best, progress=progress).fit()


def _feature_dataset(model, dataset, kind, cache_dir, preprocessing, device, progress):
    features, labels = cached_features(model, dataset, kind, cache_dir, preprocessing, device, progress)
    return FeatureDataset({"features": features}, labels)


def train_voice(manifest, out_dir, config: VoiceConfig, train: TrainConfig, audio: AudioSettings | None = None, cache_dir=DEFAULT_CACHE, progress: bool = True):
    """Train the wav2vec2 voice model on the manifest's train split, selecting on val."""
    audio = audio or AudioSettings()
    torch.manual_seed(train.seed)
    model = VoiceModel(config, pretrained=True)

    def make_dataset(split, augment):
        return VoiceDataset(select_split(manifest, split), audio, train=augment)

    return fit(model, "voice", make_dataset, train, out_dir, {"audio": asdict(audio)}, cache_dir, progress=progress)


def train_face(manifest, out_dir, config: FaceConfig, train: TrainConfig, face: FaceSettings | None = None, cache_dir=DEFAULT_CACHE, workers: int | None = None, progress: bool = True):
    """Train the ResNet face model on cached face crops of the train split, selecting on val."""
    face = face or FaceSettings()
    faces = face_index(manifest, cache_dir, face, workers, progress)
    torch.manual_seed(train.seed)
    model = FaceModel(config, pretrained=True)

    def make_dataset(split, augment):
        return FaceDataset(select_split(manifest, split), faces, face, train=augment)

    return fit(model, "face", make_dataset, train, out_dir, {"face": asdict(face)}, cache_dir, progress=progress)


def modality_settings(model, kind: str) -> dict:
    """The part of a voice or face checkpoint's preprocessing that its embeddings depend on."""
    key = SETTINGS_KEYS[kind]
    return {key: model.checkpoint["preprocessing"][key]}


def paired_features(manifest, split, voice, face, faces, cache_dir, device="auto", progress=True):
    """Cached voice and face embeddings of the paired clips of one split, with labels and stems."""
    audio = AudioSettings(**voice.checkpoint["preprocessing"]["audio"])
    face_settings = FaceSettings(**face.checkpoint["preprocessing"]["face"])
    dataset = PairedDataset(select_split(manifest, split), faces, audio, face_settings)
    voice_features, labels = cached_features(voice, dataset, "voice", cache_dir, modality_settings(voice, "voice"), device, progress)
    face_features, _ = cached_features(face, dataset, "face", cache_dir, modality_settings(face, "face"), device, progress)
    return {"voice": voice_features, "face": face_features, "present": torch.ones(len(labels), 2)}, labels, list(dataset.rows["stem"])


def train_fusion(manifest, out_dir, voice_dir, face_dir, train: TrainConfig, hidden_dim: int = 256, cache_dir=DEFAULT_CACHE, workers: int | None = None, progress: bool = True):
    """Train the fusion MLP on the trained voice and face models' embeddings of paired clips."""
    voice, face = load_model(voice_dir), load_model(face_dir)
    face_settings = FaceSettings(**face.checkpoint["preprocessing"]["face"])
    faces = face_index(manifest, cache_dir, face_settings, workers, progress)
    torch.manual_seed(train.seed)
    model = FusionModel(FusionConfig(voice.feature_dim, face.feature_dim, hidden_dim=hidden_dim))
    preprocessing = {**voice.checkpoint["preprocessing"], **face.checkpoint["preprocessing"]}
    extra = {"voice_checkpoint": os.path.relpath(voice_dir, out_dir), "face_checkpoint": os.path.relpath(face_dir, out_dir)}

    def make_dataset(split, augment):
        tensors, labels, _ = paired_features(manifest, split, voice, face, faces, cache_dir, train.device, progress)
        return FeatureDataset(tensors, labels)

    return fit(model, "fusion", make_dataset, train, out_dir, preprocessing, cache_dir, extra, progress)
