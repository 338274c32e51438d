"""Resume state: the model, the optimizer and the trainer's counters in one safetensors file, written atomically.

``<out>/resume.safetensors`` holds the weights (``model.*``), the optimizer's tensors
(``optimizer.<param>.<name>``) and, in its metadata, the trainer state, the optimizer's
parameter groups and scalars, and the run's fingerprint (data, model, preprocessing and
training config). One file, one atomic rename: a kill can never leave weights of one epoch
beside an optimizer of another. Nothing is pickled. A run resumes only when its fingerprint
matches the saved one; otherwise RunMismatchError names what differs.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from ..errors import EmolibError
from ..files import atomic_save_tensors

RESUME_FILE = "resume.safetensors"
MODEL_PREFIX = "model."
OPTIMIZER_PREFIX = "optimizer."


class RunMismatchError(EmolibError, ValueError):
    """The output folder holds a run of other data, model or settings than the one asked for."""


def save_resume_state(path: Path, model, optimizer, state: dict, fingerprint: dict) -> None:
    """Write model, optimizer and trainer ``state`` with the run ``fingerprint`` as one atomic file."""
    optimizer_state = optimizer.state_dict()
    tensors = {MODEL_PREFIX + name: tensor for name, tensor in model.state_dict().items()}
    scalars = {}
    for index, values in optimizer_state["state"].items():
        for name, value in values.items():
            if torch.is_tensor(value):
                tensors[f"{OPTIMIZER_PREFIX}{index}.{name}"] = value
            else:
                scalars[f"{index}.{name}"] = value
    metadata = {
        "trainer": json.dumps(state),
        "param_groups": json.dumps(optimizer_state["param_groups"]),
        "optimizer_scalars": json.dumps(scalars),
        "fingerprint": json.dumps(fingerprint, sort_keys=True, default=str),
    }
    atomic_save_tensors(tensors, path, metadata=metadata)


def load_resume_state(path: Path, model, optimizer, fingerprint: dict, device) -> dict | None:
    """Load a matching resume file into ``model`` and ``optimizer``; return the trainer state (None: no file)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        return None
    with safe_open(str(path), framework="pt", device="cpu") as file:
        metadata = file.metadata() or {}
        check_fingerprint(path, json.loads(metadata.get("fingerprint", "{}")), fingerprint)
        tensors = {name: file.get_tensor(name) for name in file.keys()}
    model.load_state_dict({name[len(MODEL_PREFIX):]: value for name, value in tensors.items() if name.startswith(MODEL_PREFIX)})
    state: dict = {}
    for name, value in tensors.items():
        if name.startswith(OPTIMIZER_PREFIX):
            index, key = name[len(OPTIMIZER_PREFIX):].split(".", 1)
            state.setdefault(int(index), {})[key] = value.to(device)
    for name, value in json.loads(metadata["optimizer_scalars"]).items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": json.loads(metadata["param_groups"])})
    return json.loads(metadata["trainer"])


def check_fingerprint(path: Path, saved: dict, wanted: dict) -> None:
    """RunMismatchError naming the differing parts when ``saved`` is not the run ``wanted``."""
    wanted = json.loads(json.dumps(wanted, sort_keys=True, default=str))
    differ = [key for key in sorted(set(saved) | set(wanted)) if saved.get(key) != wanted.get(key)]
    if differ:
        details = "; ".join(_difference(key, saved.get(key), wanted.get(key)) for key in differ)
        raise RunMismatchError(f"{path.parent}: holds an unfinished run with different {', '.join(differ)} ({details}); "
                               f"pass --restart to discard it, or choose another --out")


def _difference(key: str, saved, wanted) -> str:
    if isinstance(saved, dict) and isinstance(wanted, dict):
        fields = [name for name in sorted(set(saved) | set(wanted)) if saved.get(name) != wanted.get(name)]
        return ", ".join(f"{key}.{name} {saved.get(name)!r} -> {wanted.get(name)!r}" for name in fields[:3])
    return f"{key} {str(saved)[:24]!r} -> {str(wanted)[:24]!r}"
