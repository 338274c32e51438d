"""Embeddings from a (frozen) encoder, extracted once and cached on disk as safetensors.

The cache key covers the model weights, the clips and the preprocessing, so a cache entry is
never reused for anything else. This is the CPU path: train heads and the fusion model on
cached embeddings in seconds.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from .checkpoint import atomic_save_tensors
from .datasets import MODEL_INPUTS
from .training import move, pick_device

FEATURE_BATCH_SIZE = 16


def model_fingerprint(model) -> str:
    """A hash of a model's weights."""
    digest = hashlib.sha1()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def cache_key(kind: str, model, stems, settings: dict) -> str:
    payload = json.dumps({"kind": kind, "model": model_fingerprint(model), "stems": list(stems), "settings": settings}, sort_keys=True, default=str)
    return hashlib.sha1(payload.encode()).hexdigest()[:20]


def extract_features(model, dataset, kind: str, device: str = "auto", batch_size: int = FEATURE_BATCH_SIZE, progress: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled ``model.features`` of every item of ``dataset`` and their labels."""
    from tqdm.auto import tqdm

    device = pick_device(device)
    model.to(device).eval()
    inputs = MODEL_INPUTS[kind]
    features, labels = [], []
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    with torch.inference_mode():
        for batch in tqdm(loader, desc=f"{kind} features", leave=False, disable=not progress):
            batch = move(batch, device)
            features.append(model.features(**{name: batch[name] for name in inputs}).float().cpu())
            labels.append(batch["label"].cpu())
    return torch.cat(features), torch.cat(labels)


def cached_features(model, dataset, kind: str, cache_dir, settings: dict, device: str = "auto", progress: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Like extract_features, but read from / written to ``cache_dir`` keyed by weights, clips and settings."""
    from safetensors.torch import load_file

    key = cache_key(kind, model, dataset.rows["stem"], settings)
    path = Path(cache_dir) / "features" / f"{kind}-{key}.safetensors"
    if path.exists():
        stored = load_file(str(path))
        return stored["features"], stored["labels"]
    features, labels = extract_features(model, dataset, kind, device, progress=progress)
    atomic_save_tensors({"features": features, "labels": labels}, path)
    return features, labels
