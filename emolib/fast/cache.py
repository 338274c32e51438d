"""The fast path's cache of checked ONNX files: where they live, how they are keyed, which one to use.

Cache: ``<checkpoint>/fast/<kind>-<variant>-<key>.onnx`` where ``key`` hashes the weights file
(sha256), the preprocessing that fixes the input shape, the recipe version, the opset and the
onnxruntime version: retraining (new weights) or upgrading builds a new file and deletes the
old one. Each ONNX file has a build record ``<name>.json`` saying whether it passed its check
against eager fp32. If the checkpoint folder is read-only the files go to
``<cache root>/fast/<folder>-<hash of its path>/`` (``emolib.files.cache_root``). An int8-bf16 voice file
has its front end's GPTQ-rounded bf16 weights next to it (``<name>.frontend.safetensors``). Only ONNX,
safetensors and JSON files are written and read: nothing is unpickled. A cached ONNX file is used only when
its sha256, and its front-end weights' if it has them, are the ones its build record holds.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import sys
import tempfile
from pathlib import Path

from ..files import atomic_write, cache_root, file_digest

RECIPE_VERSION = 7  # 3: checked on real speech too (the packaged RAVDESS probes); int8-bf16. 4: GPTQ voice weights, fp32 front-end tail.
# 5: int8-bf16 graphs take the positional convolution's output (bf16, before the graph). 6: GPTQ calibrated on 24 real recordings, not 6.
# 7: GPTQ in act order; the bf16 front end's weights rounded by GPTQ too (stored next to the int8-bf16 file)
FAST_DIR = "fast"
FRONT_END_SUFFIX = ".frontend.safetensors"  # next to an int8-bf16 voice file: its bf16 front end's GPTQ-rounded weights
OPSET = 17
QUANTIZE_MIN_PARAMS = 5_000_000
QUANTIZE_CHOICES = ("auto", "int8", "fp32")
# the int8 voice model with its conv front end in bf16 (``frontend``): tried first by "auto" on CPUs with native bf16
INT8_BF16 = "int8-bf16"
# build-time check on probe inputs; int8 gets half the 0.02 tolerance the predictions must keep, as headroom for real inputs
MIN_COSINE = {"int8": 0.995, INT8_BF16: 0.995, "fp32": 0.9999}
MAX_PROB_DIFF = {"int8": 0.01, INT8_BF16: 0.01, "fp32": 1e-3}


def user_cache_dir() -> Path:
    """The fast files' folder in the user cache, for read-only checkpoint folders."""
    return cache_root() / FAST_DIR


def weights_digest(model) -> str:
    """sha256 of the checkpoint's weights file, or of the in-memory weights when there is none (memoized on the model)."""
    import torch

    known = getattr(model, "weights_sha256", None)
    if known:
        return known
    directory = getattr(model, "checkpoint_dir", None)
    if directory is not None:
        from ..models.checkpoint import WEIGHTS_FILE

        weights = Path(directory) / WEIGHTS_FILE
        if weights.is_file():
            model.weights_sha256 = file_digest(weights)
            return model.weights_sha256
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(dtype=torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def cache_key(kind: str, weights: str, shape_settings: dict, variant: str) -> str:
    import onnxruntime

    payload = {
        "kind": kind, "weights": weights, "settings": shape_settings, "variant": variant, "recipe": RECIPE_VERSION,
        "opset": OPSET, "onnxruntime": ".".join(onnxruntime.__version__.split(".")[:2]),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def cache_folders(model) -> list[Path]:
    """Where fast files may live: next to the checkpoint first, then a folder of the user cache for it."""
    directory = getattr(model, "checkpoint_dir", None)
    if directory is None:
        return [user_cache_dir() / "in-memory"]
    place = hashlib.sha256(str(Path(directory).resolve()).encode()).hexdigest()[:12]
    return [Path(directory) / FAST_DIR, user_cache_dir() / f"{Path(directory).name}-{place}"]


def writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(dir=folder, prefix=".probe-")
        os.close(handle)
        os.unlink(probe)
        return True
    except OSError:
        return False


def find_cached(folders: list[Path], name: str) -> Path | None:
    """The first folder's ``name`` whose build record exists (the record says whether the file is usable)."""
    for folder in folders:
        path = folder / name
        if path.with_suffix(".json").is_file():
            return path
    return None


def front_end_weights(path: Path) -> Path:
    """Where the int8-bf16 voice file at ``path`` keeps its front end's GPTQ-rounded bf16 weights (safetensors)."""
    return path.with_name(f"{path.stem}{FRONT_END_SUFFIX}")


def trusted(found: Path, record: dict) -> bool:
    """True when ``record`` says the ONNX file ``found`` passed its check and the file is the one that was checked
    (its sha256 matches the record's); a replaced, damaged or unrecorded file is rebuilt, never used."""
    if not record.get("ok") or not found.is_file():
        return False
    if "front_end_sha256" in record:  # an int8-bf16 voice file's front-end weights: the ones checked with it, or none
        weights = front_end_weights(found)
        if not weights.is_file() or file_digest(weights) != record["front_end_sha256"]:
            return False
    return record.get("onnx_sha256") == file_digest(found)


def write_record(path: Path, record: dict) -> None:
    """Write a build record (JSON) next to its ONNX file, atomically."""
    atomic_write(path, json.dumps(record, indent=2))


def remove_stale(folder: Path, prefix: str, keep: str) -> None:
    """Delete this checkpoint's older fast files of the same kind and variant (other keys: old weights or versions)."""
    if folder.name == "in-memory":
        return
    for path in folder.glob(f"{prefix}-*.json"):
        if not re.fullmatch(re.escape(prefix) + r"-[0-9a-f]{16}\.json", path.name):
            continue  # another variant whose name starts the same ("voice-int8" and "voice-int8-bf16")
        path = path.with_suffix(".onnx")
        if path.name != keep:
            for stale in (path, path.with_suffix(".json"), front_end_weights(path)):
                with contextlib.suppress(OSError):
                    stale.unlink()


def parameter_count(module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())


def pick_variant(model, quantize: str) -> str:
    if quantize not in QUANTIZE_CHOICES:
        raise ValueError(f"quantize must be one of {QUANTIZE_CHOICES}, got {quantize!r}")
    if quantize != "auto":
        return quantize
    return "int8" if parameter_count(model.encoder) >= QUANTIZE_MIN_PARAMS else "fp32"


def attempts(kind: str, model, quantize: str) -> list[str]:
    """The variants to try, best first, each falling back to the next when it fails its check: the picked variant, then
    fp32. ``auto`` puts the int8 voice model with a bf16 conv front end first where this CPU runs bf16 natively and the
    encoder's front end has the plain wav2vec2 form."""
    variant = pick_variant(model, quantize)
    tried = [variant, "fp32"] if variant != "fp32" else ["fp32"]
    if kind == "voice" and variant == "int8" and quantize == "auto" and bf16_front_end(model):
        tried.insert(0, INT8_BF16)
    return tried


def bf16_front_end(model) -> bool:
    """True when ``model``'s voice encoder can run its conv front end in bf16 here (``frontend``)."""
    from .frontend import bf16_cpu, supported

    extractor = getattr(getattr(model, "encoder", None), "feature_extractor", None)
    return extractor is not None and supported(extractor) and bf16_cpu()


def passes(check: dict, variant: str) -> bool:
    return check["min_cosine"] >= MIN_COSINE[variant] and check["max_prob_diff"] <= MAX_PROB_DIFF[variant]


def shape_settings(kind: str, settings) -> dict:
    """The preprocessing that fixes the exported input shape (part of the cache key)."""
    if kind == "voice":
        shape = {"samples": int(round(settings.window_seconds * settings.sample_rate))}
        if getattr(settings, "speech_only", False):
            shape["speech_mask"] = True  # a third graph input; left out otherwise so earlier cache keys still hold
        return shape
    return {"image_size": settings.image_size}


def find_fast_file(kind: str, model, settings, quantize: str = "auto") -> tuple[Path, dict] | None:
    """(path, build record) of a cached fast file of ``model`` that passed its check, or None."""
    weights = weights_digest(model)
    for attempt in attempts(kind, model, quantize):
        name = f"{kind}-{attempt}-{cache_key(kind, weights, shape_settings(kind, settings), attempt)}.onnx"
        found = find_cached(cache_folders(model), name)
        if found is None:
            return None
        record = json.loads(found.with_suffix(".json").read_text())
        if trusted(found, record):
            return found, record
    return None


def say(log, message: str) -> None:
    if log is False:
        return
    (log or (lambda text: print(f"emolib: {text}", file=sys.stderr, flush=True)))(message)
