"""Fast CPU inference: the voice and face encoders in ONNX Runtime, exported once and cached.

``Predictor.from_dir`` uses this by default on CPU (``fast=False`` / ``--no-fast`` turns it off).
What runs where (int8 or fp32 for each encoder, and why) and how every export is checked against
eager fp32 when it is built: ``emolib.fast.export``; the cache of checked files:
``emolib.fast.cache``; sessions and threads: ``emolib.fast.session``. This module
loads (or builds) the fast file of a model and loads checkpoints lean.

Memory: once a checked fast file exists, ``load_checkpoint`` does not read the encoder weights
at all (zero-size placeholders of the right shapes; the heads are read from the safetensors
file), so a live process holds the int8 sessions instead of 470 MB of fp32 weights.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import ModelError
from .cache import INT8_BF16, attempts, cache_folders, cache_key, find_cached, find_fast_file, say, shape_settings, trusted, weights_digest, writable
from .session import FastModel, available, physical_cores


NOT_EXPORTED = ("egemaps", "fer-mini-xception")  # models with no ONNX form (``exportable`` False): loaded whole, run eagerly
# encoder weights a lean model keeps: what runs in PyTorch before an int8-bf16 graph (``frontend.VoiceFrontEnd``): the voice
# conv front end (17 MB), the feature projection (1.6 MB) and the positional convolution (19 MB)
KEEP_LOADED = ("encoder.feature_extractor.", "encoder.feature_projection.", "encoder.encoder.pos_conv_embed.")


def load_fast_model(kind: str, model, settings, quantize: str = "auto", threads: int | None = None, log=None, probes=None) -> FastModel | None:
    """The cached fast session of ``model`` (building, checking and caching it on first use), or None.

    A build is calibrated and checked on ``probes`` (``emolib.fast.probes.Probes``; default the
    packaged set). None means the export did not reproduce the eager model (reason logged);
    callers then use eager. A model with no ONNX form (``exportable`` False: the eGeMAPS voice model) has none.
    """
    if not getattr(model, "exportable", True):
        return None
    weights = weights_digest(model)
    folders = cache_folders(model)
    for attempt in attempts(kind, model, quantize):
        name = f"{kind}-{attempt}-{cache_key(kind, weights, shape_settings(kind, settings), attempt)}.onnx"
        found = find_cached(folders, name)
        if found is not None:
            record = json.loads(found.with_suffix(".json").read_text())
            if not record.get("ok"):
                continue  # this variant failed its check when it was built: try the next one
            if not trusted(found, record):
                say(log, f"{kind}: cached fast file {found} is not the one its build record checked; rebuilding it")
                found = None
        if found is not None:
            try:
                return FastModel(kind, found, record, threads, _front_end(model, found) if attempt == INT8_BF16 else None)
            except Exception as error:  # noqa: BLE001 - a damaged file is rebuilt
                say(log, f"{kind}: cached fast file {found} is unusable ({type(error).__name__}); rebuilding it")
        folder = next((folder for folder in folders if writable(folder)), None)
        if folder is None:
            say(log, f"{kind}: no writable folder for the fast path ({', '.join(map(str, folders))}); using eager")
            return None
        load_encoder_weights(model)
        from .export import build
        from .probes import default_probes

        fast, record = build(kind, model, settings, attempt, folder, name, weights, threads, log, probes or default_probes())
        if fast is not None:
            return fast
    say(log, f"{kind}: the ONNX export does not reproduce the eager model; using eager PyTorch")
    return None


def _front_end(model, path: Path):
    from .voice_graph import front_end

    return front_end(model, path)


def load_checkpoint(path, quantize: str = "auto"):
    """Load a checkpoint for the fast path: like ``checkpoint.load_model``, but when a checked fast file of a
    voice or face model is cached, its encoder weights (the 95M / 24M parameters the ONNX file replaces)
    are not read: they are zero-size placeholders of the right shapes (``model.lean`` is True).

    That halves a live process's memory; ``load_encoder_weights`` reads them when they are needed.
    """
    import torch

    from ..models.checkpoint import WEIGHTS_FILE, load_model, read_checkpoint_config
    from ..models.nets import build_model
    from ..transforms import AudioSettings, FaceSettings

    directory, config = read_checkpoint_config(path)
    kind = config["kind"]
    if kind not in ("voice", "face") or not available()[0] or config["model"].get("backbone") in NOT_EXPORTED:
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
        settings = AudioSettings.of(skeleton) if kind == "voice" else FaceSettings.of(skeleton)
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


def _replaced(name: str) -> bool:
    """True for the weights a lean model holds as placeholders: the encoder's, but for what its voice front end runs."""
    return name.startswith("encoder.") and not name.startswith(KEEP_LOADED)


def _materialize_lean(model, weights: Path):
    """Fill a meta-device model: encoder tensors as placeholders, the rest from the weights file; None if it does not fit."""
    from safetensors import safe_open

    state = {}
    try:
        with safe_open(str(weights), framework="pt") as file:
            stored = set(file.keys())
            for name, tensor in model.state_dict().items():
                if _replaced(name):
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

    from ..models.checkpoint import WEIGHTS_FILE

    state = load_file(str(Path(model.checkpoint_dir) / WEIGHTS_FILE))
    model.load_state_dict(state, strict=True, assign=True)
    model.lean = False


def release_encoder_weights(model) -> None:
    """Replace a loaded encoder's weights by placeholders (the fast session has them); frees their memory."""
    if getattr(model, "lean", False) or getattr(model, "checkpoint_dir", None) is None:
        return
    state = {name: (_placeholder(tensor) if _replaced(name) else tensor) for name, tensor in model.state_dict().items()}
    model.load_state_dict(state, strict=True, assign=True)
    model.lean = True


class FastPath:
    """The fast sessions of a Predictor's voice and/or face model (either may be None: eager then)."""

    def __init__(self, voice=None, face=None, audio_settings=None, face_settings=None, quantize: str = "auto",
                 threads: int | None = None, log=None, release: bool = False, probes=None):
        ok, why = available()
        if not ok:
            raise ModelError(why)
        self.threads = threads or physical_cores()
        self.voice = load_fast_model("voice", voice, audio_settings, quantize, self.threads, log, probes) if voice is not None else None
        self.face = load_fast_model("face", face, face_settings, quantize, self.threads, log, probes) if face is not None else None
        for model, session in ((voice, self.voice), (face, self.face)):
            if model is None or not getattr(model, "exportable", True):
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
