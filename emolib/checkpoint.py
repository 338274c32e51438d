"""Checkpoints: ``model.safetensors`` + ``config.json`` (model config, label order, preprocessing).

``load_model(path)`` rebuilds a voice, face or fusion model from those two files alone: no
hub access, no pickles. Files are written atomically (temp file + rename).
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict
from pathlib import Path

from .cremad import EMOTIONS
from .errors import ModelError

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
FORMAT_VERSION = 1
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".bin", ".ckpt")


def atomic_write_text(path: Path, text: str) -> None:
    """Write text to ``path`` through a temp file in the same folder and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as file:
            file.write(text)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def atomic_save_tensors(tensors: dict, path: Path, metadata: dict | None = None) -> None:
    """Save a dict of tensors as safetensors, atomically."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        save_file({name: tensor.detach().contiguous().cpu() for name, tensor in tensors.items()}, temp, metadata=metadata)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def save_checkpoint(model, kind: str, directory, preprocessing: dict, extra: dict | None = None) -> Path:
    """Write ``model.safetensors`` and ``config.json`` for a model into ``directory``."""
    directory = Path(directory)
    atomic_save_tensors(model.state_dict(), directory / WEIGHTS_FILE)
    config = {
        "format": FORMAT_VERSION,
        "kind": kind,
        "labels": list(EMOTIONS),
        "model": asdict(model.config),
        "preprocessing": preprocessing,
        **(extra or {}),
    }
    atomic_write_text(directory / CONFIG_FILE, json.dumps(config, indent=2))
    return directory


def read_checkpoint_config(path) -> tuple[Path, dict]:
    """The checkpoint folder and its parsed config.json; refuses pickles with a clear message."""
    path = Path(path)
    if path.suffix in PICKLE_SUFFIXES:
        raise ModelError(f"{path}: refusing to load a pickle-based checkpoint; emolib loads only a folder with {WEIGHTS_FILE} and {CONFIG_FILE}")
    directory = path.parent if path.is_file() else path
    config_path = directory / CONFIG_FILE
    if not config_path.exists():
        raise ModelError(f"{directory}: no {CONFIG_FILE} here; expected an emolib checkpoint folder ({WEIGHTS_FILE} + {CONFIG_FILE})")
    try:
        config = json.loads(config_path.read_text())
        config["kind"], config["model"]
    except (ValueError, KeyError, TypeError) as error:
        raise ModelError(f"{config_path}: not an emolib checkpoint config ({error})") from None
    if config.get("labels", list(EMOTIONS)) != list(EMOTIONS):
        raise ModelError(f"{config_path}: label order {config['labels']} differs from emolib's {list(EMOTIONS)}")
    return directory, config


def load_model(path, device: str = "cpu"):
    """Rebuild a model from a checkpoint folder; ``model.checkpoint`` holds its config.json."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from .models import build_model

    directory, config = read_checkpoint_config(path)
    weights = directory / WEIGHTS_FILE
    if not weights.exists():
        raise ModelError(f"{directory}: {WEIGHTS_FILE} is missing")
    model = build_model(config["kind"], config["model"], pretrained=False)
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError) as error:
        raise ModelError(f"{weights}: unreadable safetensors file ({error})") from None
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ModelError(f"{weights}: weights do not match the config (missing {missing[:3]}, unexpected {unexpected[:3]})")
    model.checkpoint = config
    return model.to(device).eval()
