"""Fast CPU inference: the voice and face encoders in ONNX Runtime, exported once and cached.

``Predictor.from_dir`` uses this by default on CPU (``fast=False`` / ``--no-fast`` turns it off).
What runs where (int8 or fp32 for each encoder, and why) and how every export is checked against
eager fp32 when it is built: ``emolib.fastpath_export``. This module is the runtime side: the cache of
checked ONNX files, their sessions, and lean checkpoint loading.

Cache: ``<checkpoint>/fast/<kind>-<variant>-<key>.onnx`` where ``key`` hashes the weights file
(sha256), the preprocessing that fixes the input shape, the recipe version, the opset and the
onnxruntime version: retraining (new weights) or upgrading builds a new file and deletes the
old one. Files are staged in the same folder and renamed into place. If the checkpoint folder
is read-only they go to ``$EMOLIB_CACHE/fast/<folder>-<hash of its path>/`` (default
``~/.cache/emolib``). Only ONNX and JSON files are written and read: nothing is unpickled.

Memory: once a checked fast file exists, ``load_checkpoint`` does not read the encoder weights
at all (zero-size placeholders of the right shapes; the heads are read from the safetensors
file), so a live process holds the int8 sessions instead of 470 MB of fp32 weights.

Threads: each session uses ``threads`` intra-op threads (default: the physical cores this
process may use; ``$EMOLIB_THREADS`` overrides) and does not spin-wait: spinning gains 5-15% on
an idle machine but collapses when other processes share the cores (with a busy neighbour,
eager ResNet-50 took 2.6 s with PyTorch's 2 spinning OpenMP threads and 0.13 s with 1 thread).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from .errors import ModelError

RECIPE_VERSION = 2
FAST_DIR = "fast"
OPSET = 17
QUANTIZE_MIN_PARAMS = 5_000_000
QUANTIZE_CHOICES = ("auto", "int8", "fp32")
# build-time check on probe inputs; int8 gets half the 0.02 tolerance the predictions must keep, as headroom for real inputs
MIN_COSINE = {"int8": 0.995, "fp32": 0.9999}
MAX_PROB_DIFF = {"int8": 0.01, "fp32": 1e-3}


# ---------------------------------------------------------------- environment


def available() -> tuple[bool, str]:
    """(True, "") when onnxruntime and onnx import, else (False, why)."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as error:
        return False, f"fast path unavailable ({error.name or error} not installed; pip install onnxruntime onnx)"
    return True, ""


def physical_cores() -> int:
    """Physical cores this process may use ($EMOLIB_THREADS overrides), at least 1."""
    override = os.environ.get("EMOLIB_THREADS", "").strip()
    if override.isdigit() and int(override) > 0:
        return int(override)
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = list(range(os.cpu_count() or 1))
    cores = set()
    for cpu in cpus:
        topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            cores.add((topology / "physical_package_id").read_text().strip() + ":" + (topology / "core_id").read_text().strip())
        except OSError:
            cores.add(str(cpu))
    return max(1, len(cores))


def session_options(threads: int | None = None):
    """ONNX Runtime options: ``threads`` intra-op threads, no spin-waiting, all graph optimizations."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or physical_cores()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return options


def user_cache_dir() -> Path:
    return Path(os.environ.get("EMOLIB_CACHE", Path.home() / ".cache" / "emolib")) / FAST_DIR


# ---------------------------------------------------------------- keys and files


def file_digest(path) -> str:
    """sha256 (hex) of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def weights_digest(model) -> str:
    """sha256 of the checkpoint's weights file, or of the in-memory weights when there is none (memoized on the model)."""
    import torch

    known = getattr(model, "weights_sha256", None)
    if known:
        return known
    directory = getattr(model, "checkpoint_dir", None)
    if directory is not None:
        from .checkpoint import WEIGHTS_FILE

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


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(dir=folder, prefix=".probe-")
        os.close(handle)
        os.unlink(probe)
        return True
    except OSError:
        return False


def _find(folders: list[Path], name: str) -> Path | None:
    """The first folder's ``name`` whose build record exists (the record says whether the file is usable)."""
    for folder in folders:
        path = folder / name
        if path.with_suffix(".json").is_file():
            return path
    return None


def _atomic_replace(source: Path, target: Path) -> None:
    os.chmod(source, 0o644)
    os.replace(source, target)


def _write_json(path: Path, data: dict) -> None:
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as file:
            json.dump(data, file, indent=2)
        _atomic_replace(Path(temp), path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _remove_stale(folder: Path, prefix: str, keep: str) -> None:
    """Delete this checkpoint's older fast files of the same kind and variant (other keys: old weights or versions)."""
    if folder.name == "in-memory":
        return
    for path in folder.glob(f"{prefix}-*.json"):
        path = path.with_suffix(".onnx")
        if path.name != keep:
            for stale in (path, path.with_suffix(".json")):
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


# ---------------------------------------------------------------- sessions


class FastModel:
    """One cached ONNX Runtime session for a voice or face model, with its build record."""

    def __init__(self, kind: str, path: Path, record: dict, threads: int | None = None):
        import onnxruntime as ort

        self.kind, self.path, self.record = kind, Path(path), record
        self.variant = record.get("variant", "fp32")
        self.session = ort.InferenceSession(str(path), session_options(threads), providers=["CPUExecutionProvider"])

    def __repr__(self) -> str:
        return f"FastModel({self.kind}, {self.variant}, {self.path})"

    def voice_features(self, input_values: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"input_values": input_values, "attention_mask": attention_mask})[0]

    def face_embeddings(self, pixels: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"pixels": np.ascontiguousarray(pixels, dtype=np.float32)})[0]


def _passes(check: dict, variant: str) -> bool:
    return check["min_cosine"] >= MIN_COSINE[variant] and check["max_prob_diff"] <= MAX_PROB_DIFF[variant]


def shape_settings(kind: str, settings) -> dict:
    """The preprocessing that fixes the exported input shape (part of the cache key)."""
    if kind == "voice":
        return {"samples": int(round(settings.window_seconds * settings.sample_rate))}
    return {"image_size": settings.image_size}


def find_fast_file(kind: str, model, settings, quantize: str = "auto") -> tuple[Path, dict] | None:
    """(path, build record) of a cached fast file of ``model`` that passed its check, or None."""
    variant = pick_variant(model, quantize)
    weights = weights_digest(model)
    for attempt in ([variant, "fp32"] if variant != "fp32" else ["fp32"]):
        name = f"{kind}-{attempt}-{cache_key(kind, weights, shape_settings(kind, settings), attempt)}.onnx"
        found = _find(cache_folders(model), name)
        if found is None:
            return None
        record = json.loads(found.with_suffix(".json").read_text())
        if record.get("ok"):
            return found, record
    return None


def load_fast_model(kind: str, model, settings, quantize: str = "auto", threads: int | None = None, log=None) -> FastModel | None:
    """The cached fast session of ``model`` (building, checking and caching it on first use), or None.

    None means the export did not reproduce the eager model (reason logged); callers then use eager.
    """
    variant = pick_variant(model, quantize)
    weights = weights_digest(model)
    folders = cache_folders(model)
    candidates = [variant, "fp32"] if variant != "fp32" else ["fp32"]
    for attempt in candidates:
        name = f"{kind}-{attempt}-{cache_key(kind, weights, shape_settings(kind, settings), attempt)}.onnx"
        found = _find(folders, name)
        if found is not None:
            record = json.loads(found.with_suffix(".json").read_text())
            if not record.get("ok"):
                continue  # this variant failed its check when it was built: try the next one
            try:
                return FastModel(kind, found, record, threads)
            except Exception as error:  # noqa: BLE001 - a damaged file is rebuilt
                _say(log, f"{kind}: cached fast file {found} is unusable ({type(error).__name__}); rebuilding it")
        folder = next((folder for folder in folders if _writable(folder)), None)
        if folder is None:
            _say(log, f"{kind}: no writable folder for the fast path ({', '.join(map(str, folders))}); using eager")
            return None
        load_encoder_weights(model)
        from .fastpath_export import _build

        fast, record = _build(kind, model, settings, attempt, folder, name, weights, threads, log)
        if fast is not None:
            return fast
    _say(log, f"{kind}: the ONNX export does not reproduce the eager model; using eager PyTorch")
    return None


# ---------------------------------------------------------------- lean checkpoints


def load_checkpoint(path, quantize: str = "auto"):
    """Load a checkpoint for the fast path: like ``checkpoint.load_model``, but when a checked fast file of a
    voice or face model is cached, its encoder weights (the 95M / 24M parameters the ONNX file replaces)
    are not read: they are zero-size placeholders of the right shapes (``model.lean`` is True).

    That halves a live process's memory; ``load_encoder_weights`` reads them when they are needed.
    """
    import torch

    from .checkpoint import WEIGHTS_FILE, load_model, read_checkpoint_config
    from .models import build_model
    from .transforms import AudioSettings, FaceSettings

    directory, config = read_checkpoint_config(path)
    kind = config["kind"]
    if kind not in ("voice", "face") or not available()[0]:
        model = load_model(directory)
        model.checkpoint_dir = directory
        return model
    try:
        with torch.device("meta"):
            skeleton = build_model(kind, config["model"], pretrained=False)
    except Exception:  # noqa: BLE001 - anything unusual: the ordinary loader says what is wrong
        skeleton = None
    if skeleton is not None:
        skeleton.checkpoint, skeleton.checkpoint_dir = config, directory
        settings = AudioSettings(**config["preprocessing"]["audio"]) if kind == "voice" else FaceSettings(**config["preprocessing"]["face"])
        if (directory / WEIGHTS_FILE).is_file() and find_fast_file(kind, skeleton, settings, quantize) is not None:
            lean = _materialize_lean(skeleton, directory / WEIGHTS_FILE)
            if lean is not None:
                return lean.eval()
    model = load_model(directory)
    model.checkpoint_dir = directory
    if skeleton is not None and getattr(skeleton, "weights_sha256", None):
        model.weights_sha256 = skeleton.weights_sha256
    return model


def _placeholder(tensor):
    import torch

    return torch.zeros((), dtype=tensor.dtype).expand(tensor.shape)


def _materialize_lean(model, weights: Path):
    """Fill a meta-device model: encoder tensors as placeholders, the rest from the weights file; None if it does not fit."""
    from safetensors import safe_open

    state = {}
    try:
        with safe_open(str(weights), framework="pt") as file:
            stored = set(file.keys())
            for name, tensor in model.state_dict().items():
                if name.startswith("encoder."):
                    if name not in stored:
                        return None
                    state[name] = _placeholder(tensor)
                else:
                    state[name] = file.get_tensor(name)
        model.load_state_dict(state, strict=True, assign=True)
    except Exception:  # noqa: BLE001 - e.g. mismatched weights: the ordinary loader reports it
        return None
    if any(tensor.is_meta for tensor in list(model.parameters()) + list(model.buffers())):
        return None
    model.lean = True
    return model


def load_encoder_weights(model) -> None:
    """Read the real encoder weights into a lean model (no-op for a fully loaded one)."""
    if not getattr(model, "lean", False):
        return
    from safetensors.torch import load_file

    from .checkpoint import WEIGHTS_FILE

    state = load_file(str(Path(model.checkpoint_dir) / WEIGHTS_FILE))
    model.load_state_dict(state, strict=True, assign=True)
    model.lean = False


def release_encoder_weights(model) -> None:
    """Replace a loaded encoder's weights by placeholders (the fast session has them); frees their memory."""
    if getattr(model, "lean", False) or getattr(model, "checkpoint_dir", None) is None:
        return
    state = {name: (_placeholder(tensor) if name.startswith("encoder.") else tensor) for name, tensor in model.state_dict().items()}
    model.load_state_dict(state, strict=True, assign=True)
    model.lean = True


def _say(log, message: str) -> None:
    if log is False:
        return
    (log or (lambda text: print(f"emolib: {text}", file=sys.stderr, flush=True)))(message)


class FastPath:
    """The fast sessions of a Predictor's voice and/or face model (either may be None: eager then)."""

    def __init__(self, voice=None, face=None, audio_settings=None, face_settings=None, quantize: str = "auto",
                 threads: int | None = None, log=None, release: bool = False):
        ok, why = available()
        if not ok:
            raise ModelError(why)
        self.threads = threads or physical_cores()
        self.voice = load_fast_model("voice", voice, audio_settings, quantize, self.threads, log) if voice is not None else None
        self.face = load_fast_model("face", face, face_settings, quantize, self.threads, log) if face is not None else None
        for model, session in ((voice, self.voice), (face, self.face)):
            if model is None:
                continue
            if session is None:
                load_encoder_weights(model)  # eager it is
            elif release:
                release_encoder_weights(model)

    def __repr__(self) -> str:
        parts = [f"{kind} {model.variant}" for kind, model in (("voice", self.voice), ("face", self.face)) if model is not None]
        return f"FastPath({', '.join(parts) or 'nothing'}; {self.threads} threads)"

    def describe(self) -> dict:
        return {kind: (model.variant if model is not None else "eager") for kind, model in (("voice", self.voice), ("face", self.face))}
