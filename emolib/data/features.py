"""Embeddings from a (frozen) encoder, extracted once and cached on disk as safetensors.

The cache key covers the model weights, the source files (``dataset.sources()``: the audio files'
identities, or the face-crop files, named by their videos' identities) and the preprocessing, so a
cache entry is never reused for anything else: not for another tree with the same clip names, not
after a file was replaced. This is the CPU path: train heads and the fusion model on
cached embeddings in seconds. What is cached is ``model.frozen_features`` (a face clip's per-frame
embeddings, a voice clip's per-layer pooled states when its layer weights learn on them, else the pooled
features); ``model.from_frozen`` turns them into the features. Models are duck-typed here
(``frozen_features``, ``from_frozen``, ``checkpoint``): the data layer does not import the model code.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from ..devices import move, pick_device
from ..files import atomic_save_tensors, cache_root
from ..transforms import AudioSettings, FaceSettings
from .datasets import MODEL_INPUTS, FaceDataset, VoiceDataset, paired_rows, select_split

FEATURE_BATCH_SIZE = 16
FEATURES_DIR = "features"
SETTINGS_KEYS = {"voice": "audio", "face": "face"}
STAGE = "frozen-2"  # 2: frozen_features (per-frame face embeddings, per-layer voice states) instead of pooled features


def model_fingerprint(model) -> str:
    """A hash of the weights a model's frozen features depend on: all but its classification head's (``head.*``), which only
    ``classify`` uses, so a trained head (and its calibration) reuses the embeddings extracted before it trained."""
    digest = hashlib.sha1()
    for name, tensor in sorted(model.state_dict().items()):
        if name.startswith("head."):
            continue
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def cache_key(kind: str, model, sources, settings: dict) -> str:
    """The cache entry name for ``model``'s features of ``sources`` (one identity per clip) under ``settings``."""
    identity = getattr(model, "feature_identity", None) or model_fingerprint(model)  # features that do not depend on the weights say so
    payload = json.dumps({"kind": kind, "model": identity, "sources": list(sources), "settings": settings}, sort_keys=True, default=str)
    return hashlib.sha1(payload.encode()).hexdigest()[:20]


def modality_settings(model, kind: str) -> dict:
    """The part of a voice or face checkpoint's preprocessing that its embeddings depend on."""
    settings = AudioSettings.of(model) if kind == "voice" else FaceSettings.of(model)
    return {SETTINGS_KEYS[kind]: asdict(settings)}


def extract_features(model, dataset, kind: str, device: str = "auto", batch_size: int = FEATURE_BATCH_SIZE, progress: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """``model.frozen_features`` of every item of ``dataset`` and their labels (``model.from_frozen`` of them are its features)."""
    from tqdm.auto import tqdm

    device = pick_device(device)
    model.to(device).eval()
    inputs = MODEL_INPUTS[kind]
    features, labels = [], []
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    with torch.inference_mode():
        for batch in tqdm(loader, desc=f"{kind} features", leave=False, disable=not progress):
            batch = move(batch, device)
            features.append(model.frozen_features(**{name: batch[name] for name in inputs if name in batch}).float().cpu())
            labels.append(batch["label"].cpu())
    if not features:
        return torch.zeros(0, getattr(model, "feature_dim", 0)), torch.zeros(0, dtype=torch.long)
    return torch.cat(features), torch.cat(labels)


def cached_features(model, dataset, kind: str, cache_dir=None, settings: dict | None = None, device: str = "auto", progress: bool = True,
                    extractor=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Like extract_features (the frozen features), but read from / written to ``cache_dir`` (default: the cache root) keyed by weights, clips,
    settings and the extractor: ``extractor`` (``emolib.fast.features.FastExtractor``) or eager PyTorch when None."""
    from safetensors.torch import load_file

    settings = settings if settings is not None else modality_settings(model, kind)
    name = extractor.identity(model, dataset, kind) if extractor is not None and len(dataset) else "eager"
    key = cache_key(kind, model, dataset.sources(), {**settings, "extractor": name, "stage": STAGE,
                                                             "config": vars(getattr(model, "config", None) or object())})
    path = Path(cache_dir or cache_root()) / FEATURES_DIR / f"{kind}-{key}.safetensors"
    if path.exists():
        stored = load_file(str(path))
        return stored["features"], stored["labels"]
    if name == "eager":
        features, labels = extract_features(model, dataset, kind, device, progress=progress)
    else:
        features, labels = extractor.extract(model, dataset, kind, progress)
    atomic_save_tensors({"features": features, "labels": labels}, path)
    return features, labels


def pooled_features(model, dataset, kind: str, cache_dir=None, device="auto", progress=True, extractor=None,
                    speaker_norm: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """The features (``model.from_frozen`` of the cached frozen features) of every item of ``dataset``, and their labels. A model
    trained on per-speaker standardised features (the eGeMAPS voice model) gets each clip standardised by its speaker's
    statistics over the dataset's clips (``egemaps.by_speaker``; the dataset's rows name the speaker) unless ``speaker_norm`` is
    False: then by the corpus statistics the model stores."""
    frozen, labels = cached_features(model, dataset, kind, cache_dir, None, device, progress, extractor)
    return features_of(model, frozen, dataset.rows["actor"] if speaker_norm and hasattr(dataset, "rows") else None), labels


def features_of(model, frozen: torch.Tensor, speakers=None) -> torch.Tensor:
    """``model``'s features of its frozen features: per-speaker standardised first when it trained so and ``speakers`` are known."""
    model = model.cpu().eval()
    with torch.inference_mode():
        if speakers is not None and getattr(model, "speaker_norm", False) and len(frozen):
            from ..egemaps import by_speaker

            standardised, _ = by_speaker(frozen.numpy(), list(speakers), model.mean.numpy(), model.std.numpy())
            return model.from_standardised(torch.from_numpy(standardised)).float()
        return model.from_frozen(frozen).float()


def paired_features(manifest, split, voice, face, faces, cache_dir=None, device="auto", progress=True, extractor=None, speaker_norm: bool = True):
    """The fusion model's inputs for the clips of one split that have audio and a video.

    Returns ({"voice", "face", "present"} tensors, labels, stems). A clip whose video has no
    detected face (``faces.clip_has_face``) gets zero face features and ``present`` [1, 0], as
    the Predictor gives it; its voice features are those of the voice model alone.
    """
    voice_set = VoiceDataset(paired_rows(select_split(manifest, split), faces), AudioSettings.of(voice))
    rows = voice_set.rows  # unreadable audio already left out
    face_set = FaceDataset(rows, faces, FaceSettings.of(face))
    voice_features, labels = pooled_features(voice, voice_set, "voice", cache_dir, device, progress, extractor, speaker_norm)
    face_part, _ = pooled_features(face, face_set, "face", cache_dir, device, progress, extractor)
    with_face = torch.tensor(rows["stem"].isin(set(face_set.rows["stem"])).to_numpy(), dtype=torch.bool)
    face_features = torch.zeros(len(rows), face.feature_dim)
    face_features[with_face] = face_part
    present = torch.stack([torch.ones(len(rows)), with_face.float()], dim=1)
    return {"voice": voice_features, "face": face_features, "present": present}, labels, list(rows["stem"])
