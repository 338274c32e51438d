"""Frozen-encoder embeddings through the fast path: what CPU training (``--freeze all``, the fusion model's
inputs) and evaluation extract, the same sessions live prediction runs.

``feature_extractor(device)`` gives a ``FastExtractor`` on the CPU and None elsewhere (eager PyTorch on a
GPU). Training, evaluation and ``emolib predict`` on one machine so all see the same embeddings: each
export is checked against eager fp32 when it is built (``emolib.fast.export``), and a model whose export
does not pass is extracted eagerly; the extractor's name (``fast-int8``, ``fast-fp32`` or ``eager``)
keys the feature cache.
"""
from __future__ import annotations

import numpy as np
import torch

from ..devices import pick_device
from .runtime import load_fast_model
from .session import VOICE_INPUTS, available

EAGER = "eager"


class FastExtractor:
    """Pooled embeddings of a dataset's items through a model's cached ONNX Runtime session."""

    def __init__(self, quantize: str = "auto", threads: int | None = None):
        self.quantize, self.threads, self.sessions = quantize, threads, {}

    def identity(self, model, dataset, kind: str) -> str:
        """``fast-<variant>`` when the model has a checked fast session for the dataset's settings that gives its frozen
        features (a face model's per-frame embeddings; a voice model's features, unless its layer weights learn on
        per-layer states), else ``eager``."""
        if kind == "voice" and getattr(model, "pools_per_layer", False) or not getattr(model, "exportable", True):
            return EAGER
        session = self._session(model, dataset, kind)
        return f"fast-{session.variant}" if session is not None else EAGER

    def extract(self, model, dataset, kind: str, progress: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """(frozen features: voice (N, D), face (N, F, D); labels (N,)) of every item, one at a time (the sessions have a fixed
        window / any frames)."""
        from tqdm.auto import tqdm

        session = self._session(model, dataset, kind)
        features, labels = [], []
        for index in tqdm(range(len(dataset)), desc=f"{kind} features (fast)", leave=False, disable=not progress):
            item = dataset[index]
            if kind == "voice":
                features.append(session.voice_features({name: value.numpy()[None] for name, value in item.items() if name in VOICE_INPUTS})[0])
            else:
                features.append(session.face_embeddings(item["pixels"].numpy()))
            labels.append(int(item["label"]))
        dim = getattr(model, "feature_dim", 0)
        stacked = np.stack(features).astype(np.float32) if features else np.zeros((0, dim), dtype=np.float32)
        return torch.from_numpy(stacked), torch.tensor(labels, dtype=torch.long)

    def _session(self, model, dataset, kind: str):
        key = (id(model), kind)
        if key not in self.sessions:
            self.sessions[key] = load_fast_model(kind, model, dataset.settings, self.quantize, self.threads, log=False)
        return self.sessions[key]


def feature_extractor(device: str = "auto", quantize: str = "auto") -> FastExtractor | None:
    """The fast extractor on the CPU (when ONNX Runtime is installed), None (eager) on a GPU."""
    return FastExtractor(quantize) if pick_device(device).type == "cpu" and available()[0] else None
