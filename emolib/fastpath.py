"""Fast CPU inference: the voice and face encoders in ONNX Runtime, exported once and cached.

``Predictor.from_dir`` uses this by default on CPU (``fast=False`` / ``--no-fast`` turns it off).
What runs where, and why (measured on a shared 2-core AVX2 EPYC without VNNI; BENCHMARKS.md):

- voice: ``VoiceModel.features`` (wav2vec2 encoder + masked mean pooling) exported for the
  checkpoint's fixed window (the Predictor always feeds exactly that 4 s window). For large
  encoders the 72 linear layers of the transformer (attention projections and feed-forward)
  get int8 weights and dynamic int8 activations (``quantize_dynamic``, ~1.6x their fp32 time).
  Kept fp32, on purpose:
  * the conv feature encoder (~20 of the 65 GFLOPs; ONNX Runtime's Conv already runs it near
    fp32 peak). Int8 there (dynamic ConvInteger: slower than fp32; static QLinearConv: 2.5x
    faster) moved pooled embeddings of synthetic speech to cosine 0.98, and of zero-padded
    clips to 0.89: frames that are quiet or padding have conv features ~1000x smaller than
    speech, the feature projection's LayerNorm scales each frame back to unit size, and so
    per-tensor int8 rounding becomes a full-size error for them;
  * the feature projection (512 -> 768 on those LayerNorm'd frames), for the same reason:
    keeping it fp32 cut the int8 model's error ~10x (1 - cosine 0.0037 -> 0.0003) for ~1% time.
- face: the ResNet (per frame; the clip mean is taken outside) statically quantized to int8
  (QDQ, per-channel 7-bit weights, activation ranges calibrated on drawn face crops from
  emolib.synth_face), which ONNX Runtime runs as QLinearConv: ~2.5x faster than eager ResNet-50.
  7-bit weights (``reduce_range``) because without VNNI the x86 u8s8 kernels sum pairs of
  products in saturating int16: with 8-bit weights the trained tiny face model's probabilities
  moved 4x more. (The voice's dynamic MatMuls showed no such effect: 8-bit there.)
- small encoders (``tiny``; fewer than QUANTIZE_MIN_PARAMS parameters) are exported fp32:
  int8 does not speed up their small matrix products (the tiny trained face model lost 2 UAR
  points with it), and fp32 keeps ``emolib predict`` equal to ``emolib evaluate``.
- classification heads and the fusion MLP stay in torch (microseconds).
- ``quantize="int8"`` / ``"fp32"`` force a variant; ``"auto"`` is the policy above.

Every export is checked against eager fp32 when it is built (embedding cosine and the largest
difference of the head's probabilities on synthetic speech / drawn faces); an int8 export
that fails the check is replaced by the fp32 one, and if that fails too the model stays eager.
The outcome is recorded next to the ONNX file in ``<name>.json``.

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
import io
import json
import logging
import os
import re
import sys
import tempfile
import time
import warnings
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
CALIBRATION_FACES = 16
PROBE_FACES = 8
# the transformer's linear layers: attention q/k/v/out projections and the feed-forward pair (any wav2vec2-family naming)
VOICE_INT8_NODES = re.compile(r"/encoder/.*layers\.\d+/.*(proj|dense|fc\d?|linear)[^/]*/(MatMul|Gemm)")
PROBE_SEED = 1234


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


@contextlib.contextmanager
def _quiet():
    """Silence the exporters' and quantizer's warnings and log lines."""
    loggers = [logging.getLogger(), logging.getLogger("onnxruntime"), logging.getLogger("torch.onnx")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with contextlib.redirect_stdout(io.StringIO()):
                yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def parameter_count(module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())


def pick_variant(model, quantize: str) -> str:
    if quantize not in QUANTIZE_CHOICES:
        raise ValueError(f"quantize must be one of {QUANTIZE_CHOICES}, got {quantize!r}")
    if quantize != "auto":
        return quantize
    return "int8" if parameter_count(model.encoder) >= QUANTIZE_MIN_PARAMS else "fp32"


# ---------------------------------------------------------------- probe inputs


def probe_speech(seed: int = PROBE_SEED) -> list[np.ndarray]:
    """Probe recordings: synthetic CREMA-D speech (emolib.synth): two single clips (zero-padded windows) and three in a row (full window)."""
    from .synth import synthesize_clip

    stems = ("1001_DFA_ANG_HI", "1002_IEO_SAD_LO", "1003_TIE_HAP_MD")
    waves = [synthesize_clip(stem, seed=seed, video=False).audio for stem in stems]
    return [waves[0], waves[1], np.concatenate(waves)]


def voice_arrays(wave: np.ndarray, settings) -> tuple[np.ndarray, np.ndarray]:
    """(input_values (1, N) float32, attention_mask (1, N) int64) through transforms.voice_inputs."""
    from .transforms import voice_inputs

    inputs = voice_inputs(wave, settings)
    return inputs["input_values"].numpy()[None], inputs["attention_mask"].numpy()[None]


def calibration_crops(count: int = CALIBRATION_FACES, size: int = 224, margin: float = 0.25, seed: int = PROBE_SEED) -> np.ndarray:
    """Face crops (count, size, size, 3) of drawn faces (emolib.synth_face), cropped like the Predictor crops."""
    import cv2

    from .faces import crop_face
    from .synth_face import Expression, random_face_look, render_frames

    rng = np.random.default_rng(seed)
    crops = []
    races = ("Caucasian", "African American", "Asian", "Unknown")
    for index in range(count):
        look = random_face_look(rng, ("Male", "Female")[index % 2], races[index % len(races)])
        expression = Expression(
            brow_raise=rng.uniform(-0.3, 0.3), brow_tilt=rng.uniform(-0.3, 0.3), eye_open=rng.uniform(0.7, 1.3),
            mouth_open=rng.uniform(0.0, 0.5), mouth_curve=rng.uniform(-0.4, 0.4), mouth_width=rng.uniform(0.85, 1.15),
        )
        frame = cv2.cvtColor(render_frames(look, expression, np.array([rng.random()]), rng)[0], cv2.COLOR_BGR2RGB)
        crop = crop_face(frame, size, margin).image
        if index % 3 == 2:  # some mirrored, some darker or brighter, as webcams and datasets differ
            crop = crop[:, ::-1]
        gain = rng.uniform(0.6, 1.3)
        crops.append(np.clip(crop.astype(np.float32) * gain, 0, 255).astype(np.uint8))
    return np.stack(crops)


# ---------------------------------------------------------------- export


def _voice_module(model):
    """The exported voice graph: (input_values, attention_mask) -> pooled features, as VoiceModel.features."""
    import torch

    class VoiceFeatures(torch.nn.Module):
        def __init__(self, voice):
            super().__init__()
            self.voice = voice

        def forward(self, input_values, attention_mask):
            return self.voice.features(input_values, attention_mask)

    return VoiceFeatures(model).eval()


def _face_module(model):
    """The exported face graph: pixels (F, 3, S, S) -> per-frame embeddings (F, D); the clip mean is taken outside."""
    return model.encoder


def _export(module, args: tuple, path: Path, input_names, output_names, dynamic_axes=None) -> None:
    """torch.onnx.export (TorchScript exporter, opset 17) with the model in eval mode throughout.

    The exporter puts the top module back in its previous mode afterwards, and ``train(True)``
    on a wrapper would also switch the wrapped model to training (dropout on); the wrapper is
    created in eval mode so nothing changes.
    """
    import torch

    modes = [(submodule, submodule.training) for submodule in module.modules()]
    with _quiet(), torch.no_grad():
        torch.onnx.export(module, args, str(path), input_names=input_names, output_names=output_names,
                          dynamic_axes=dynamic_axes, opset_version=OPSET, dynamo=False, do_constant_folding=True)
    for submodule, mode in modes:
        submodule.training = mode


def export_voice(model, settings, path: Path, variant: str, workdir: Path) -> None:
    """Write the voice graph for ``settings``' window to ``path``.

    int8: the transformer layers' linear layers (attention projections and feed-forward) get
    int8 weights and dynamic int8 activations; the conv feature encoder and the feature
    projection stay fp32 (see the module docstring for why).
    """
    import torch

    samples = int(round(settings.window_seconds * settings.sample_rate))
    values = torch.zeros(1, samples)
    mask = torch.ones(1, samples, dtype=torch.long)
    fp32 = workdir / "voice-fp32.onnx"
    _export(_voice_module(model), (values, mask), fp32, ["input_values", "attention_mask"], ["features"])
    if variant == "fp32":
        os.replace(fp32, path)
        return
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(fp32), load_external_data=False)
    keep_fp32 = [node.name for node in graph.graph.node if node.op_type in ("MatMul", "Gemm") and not VOICE_INT8_NODES.search(node.name)]
    del graph
    with _quiet():
        quantize_dynamic(str(fp32), str(path), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"],
                         nodes_to_exclude=keep_fp32)


def _reader(feeds: list[dict]):
    """An onnxruntime CalibrationDataReader over a list of input feeds."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.feeds = iter(feeds)

        def get_next(self):
            return next(self.feeds, None)

    return Reader()


def export_face(model, settings, path: Path, variant: str, workdir: Path) -> None:
    """Write the per-frame face graph to ``path`` (fp32, or int8 static QDQ calibrated on drawn faces)."""
    import torch

    from .transforms import face_pixels

    fp32 = workdir / "face-fp32.onnx"
    pixels = torch.zeros(1, 3, settings.image_size, settings.image_size)
    _export(_face_module(model), (pixels,), fp32, ["pixels"], ["embeddings"], {"pixels": {0: "frames"}, "embeddings": {0: "frames"}})
    if variant == "fp32":
        os.replace(fp32, path)
        return
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    crops = calibration_crops(CALIBRATION_FACES, settings.image_size, settings.margin, seed=PROBE_SEED + 1)
    feeds = [{"pixels": face_pixels(crop, settings).numpy()} for crop in crops]
    prepared = workdir / "face-prepared.onnx"
    with _quiet():
        # folds the exporter's Identity weight aliases, which would otherwise leave a third of the convs unquantized
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        # reduce_range (7-bit weights): without VNNI, x86 u8s8 kernels add pairs of products in saturating int16; full-range
        # weights overflowed there (trained tiny face model: mean probability error 0.024 -> 0.006 with it), at no cost in speed
        quantize_static(str(prepared), str(path), _reader(feeds), quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, per_channel=True, reduce_range=True)


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


def _check(kind: str, model, fast: FastModel, settings) -> dict:
    """Compare a fast session with the eager fp32 model on probe inputs: cosine and head probabilities."""
    import torch

    from .transforms import face_pixels

    if kind == "voice":
        pairs = []
        for wave in probe_speech():
            values, mask = voice_arrays(wave, settings)
            with torch.inference_mode():
                eager = model.features(torch.from_numpy(values), torch.from_numpy(mask)).float().numpy()
            pairs.append((eager, fast.voice_features(values, mask)))
    else:
        crops = calibration_crops(PROBE_FACES, settings.image_size, settings.margin, seed=PROBE_SEED + 2)
        pairs = []
        for frames in [crops[index : index + 1] for index in range(PROBE_FACES)] + [crops[:3]]:
            pixels = face_pixels(frames, settings)
            with torch.inference_mode():
                eager = model.features(pixels[None]).float().numpy()
            pairs.append((eager, fast.face_embeddings(pixels.numpy()).mean(axis=0, keepdims=True)))
    cosines, prob_diffs, label_match = [], [], []
    for eager, quick in pairs:
        cosines.append(float((eager * quick).sum() / max(np.linalg.norm(eager) * np.linalg.norm(quick), 1e-12)))
        with torch.inference_mode():
            p_eager = torch.softmax(model.classify(torch.from_numpy(eager)), dim=1).numpy()
            p_fast = torch.softmax(model.classify(torch.from_numpy(np.asarray(quick, dtype=np.float32))), dim=1).numpy()
        prob_diffs.append(float(np.abs(p_eager - p_fast).max()))
        label_match.append(bool(p_eager.argmax() == p_fast.argmax()))
    return {"min_cosine": min(cosines), "max_prob_diff": max(prob_diffs), "same_label": all(label_match)}


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


def _build(kind, model, settings, variant, folder: Path, name: str, weights: str, threads, log):
    """Export, check and cache one variant; returns (FastModel or None, record)."""
    _say(log, f"building the fast CPU path for the {kind} model ({variant}, once; cached in {folder})")
    started = time.time()
    target = folder / name
    with tempfile.TemporaryDirectory(dir=folder, prefix=".build-") as workdir:
        workdir = Path(workdir)
        staged = workdir / name
        try:
            (export_voice if kind == "voice" else export_face)(model, settings, staged, variant, workdir)
        except Exception as error:  # noqa: BLE001 - an exporter failure only disables the fast path (recorded: not retried)
            reason = f"{type(error).__name__}: {(str(error).splitlines() or [''])[0][:200]}"
            record = {"ok": False, "kind": kind, "variant": variant, "weights_sha256": weights, "error": reason, "versions": _versions()}
            _write_json(target.with_suffix(".json"), record)
            _say(log, f"{kind}: ONNX export ({variant}) failed ({reason})")
            return None, record
        fast = FastModel(kind, staged, {"variant": variant}, threads)
        check = _check(kind, model, fast, settings)
        record = {
            "ok": _passes(check, variant), "kind": kind, "variant": variant, "weights_sha256": weights,
            "settings": shape_settings(kind, settings), "recipe": RECIPE_VERSION, "check": check,
            "build_seconds": round(time.time() - started, 1), "versions": _versions(),
        }
        _atomic_replace(staged, target)
        _write_json(target.with_suffix(".json"), record)
    _remove_stale(folder, f"{kind}-{variant}", name)
    if not record["ok"]:
        _say(log, f"{kind}: {variant} export differs from eager fp32 (min cosine {check['min_cosine']:.4f}, "
                  f"max probability difference {check['max_prob_diff']:.4f}); not used")
        return None, record
    fast.path, fast.record = target, record
    return fast, record


def _versions() -> dict:
    import onnx
    import onnxruntime
    import torch

    return {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}


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
