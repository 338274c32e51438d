"""Torch devices: pick one, move a batch to it."""
from __future__ import annotations

import torch

from .errors import EmolibError


class DeviceError(EmolibError, RuntimeError):
    """The requested device does not exist or is not usable here."""


def pick_device(device: str = "auto") -> torch.device:
    """``auto`` means CUDA when available, else CPU; a CUDA device that is not there is a DeviceError."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError):
        raise DeviceError(f"--device {device}: not a device name (use auto, cpu, cuda or cuda:N)") from None
    if chosen.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"--device {device}: no CUDA GPU is visible here (torch {torch.__version__}); use --device cpu or auto")
        if chosen.index is not None and chosen.index >= torch.cuda.device_count():
            raise DeviceError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) here")
    elif chosen.type not in ("cpu", "mps"):
        raise DeviceError(f"--device {device}: unsupported device type (use auto, cpu or cuda)")
    return chosen


def move(batch: dict, device: torch.device) -> dict:
    """A batch dict with every tensor moved to ``device``."""
    return {name: value.to(device, non_blocking=True) for name, value in batch.items()}
