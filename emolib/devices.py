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


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo; the platform's processor string elsewhere)."""
    import platform
    from pathlib import Path

    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    return next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")), "") or platform.processor()


def describe(device: torch.device) -> str:
    """The machine a measurement ran on, in words: the GPU (name, memory) or the CPU (model, logical CPUs)."""
    import os

    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        return f"{properties.name} ({properties.total_memory / 2**30:.0f} GiB), torch {torch.__version__}, CUDA {torch.version.cuda}"
    return f"{cpu_model()} ({os.cpu_count()} logical CPUs), no GPU, torch {torch.__version__}"


def move(batch: dict, device: torch.device) -> dict:
    """A batch dict with every tensor moved to ``device``."""
    return {name: value.to(device, non_blocking=True) for name, value in batch.items()}
