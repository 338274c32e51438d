"""Torch devices: pick one, move a batch to it."""
from __future__ import annotations

import torch


def pick_device(device: str = "auto") -> torch.device:
    """``auto`` means CUDA when available, else CPU."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device)


def move(batch: dict, device: torch.device) -> dict:
    """A batch dict with every tensor moved to ``device``."""
    return {name: value.to(device, non_blocking=True) for name, value in batch.items()}
