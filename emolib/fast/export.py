"""Building the fast CPU path: ONNX export, int8 quantization and the build-time check against eager fp32.

``emolib.fast.runtime`` calls ``build`` the first time a checkpoint has no cached fast file; this module
writes the ONNX file, checks it and records the outcome, and the runtime side loads it from then on.

What runs where, and why (measured on a shared 2-core AVX2 EPYC without VNNI; BENCHMARKS.md):

- voice: ``VoiceModel.features`` (wav2vec2 encoder + the model's layers and pooling) exported for the
  checkpoint's fixed window (the Predictor always feeds exactly that 4 s window); a speech-only model's
  graph takes the window's speech mask as a third input (Silero runs outside the graph). For large
  encoders the 72 linear layers of the transformer (attention projections and feed-forward)
  get int8 weights and dynamic int8 activations (``quantize_dynamic``, ~1.6x their fp32 time),
  the weights rounded by GPTQ on the probes' speech (``gptq``: the rounding, not the activations,
  was most of the int8 error on real speech).
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
  (QDQ, per-channel 7-bit weights, activation ranges calibrated on the caller's probe crops,
  by default the packaged drawn faces of ``emolib.fast.probes``), which ONNX Runtime runs as QLinearConv: ~2.5x faster than eager ResNet-50.
  7-bit weights (``reduce_range``) because without VNNI the x86 u8s8 kernels sum pairs of
  products in saturating int16: with 8-bit weights the trained tiny face model's probabilities
  moved 4x more. (The voice's dynamic MatMuls showed no such effect: 8-bit there.)
- small encoders (``tiny``; fewer than QUANTIZE_MIN_PARAMS parameters) are exported fp32:
  int8 does not speed up their small matrix products (the tiny trained face model lost 2 UAR
  points with it), and fp32 keeps ``emolib predict`` equal to ``emolib evaluate``.
- classification heads and the fusion MLP stay in torch (microseconds).
- ``quantize="int8"`` / ``"fp32"`` force a variant; ``"auto"`` is the policy above.

Every export is checked against eager fp32 when it is built (embedding cosine and the largest
difference of the head's probabilities on the caller's probes, by default the packaged synthetic
speech and drawn faces); an int8 export
that fails the check is replaced by the fp32 one, and if that fails too the model stays eager.
The outcome is recorded next to the ONNX file in ``<name>.json``.
The pass thresholds (``cache.MIN_COSINE`` / ``cache.MAX_PROB_DIFF``) belong to the cache
side, which decides which cached files it uses.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..files import file_digest, umask_mode
from . import gptq
from .cache import INT8_BF16, OPSET, RECIPE_VERSION, passes, remove_stale, say, shape_settings, write_record
from .probes import default_probes
from .session import CONV_FEATURES, POSITIONS, VOICE_INPUTS, FastModel

# the transformer's linear layers: attention q/k/v/out projections and the feed-forward pair (any wav2vec2-family naming)
VOICE_INT8_NODES = re.compile(r"/encoder/.*layers\.\d+/.*(proj|dense|fc\d?|linear)[^/]*/(MatMul|Gemm)")


# ---------------------------------------------------------------- quiet exporters


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


# ---------------------------------------------------------------- inputs


def voice_arrays(wave: np.ndarray, settings) -> dict[str, np.ndarray]:
    """transforms.voice_inputs of ``wave`` as arrays with a batch axis: input_values (1, N) float32, attention_mask (1, N)
    int64 and, for a speech-only model, speech_mask (1, N) int64."""
    from ..transforms import voice_inputs

    return {name: value.numpy()[None] for name, value in voice_inputs(wave, settings).items()}


def voice_input_names(settings) -> list[str]:
    """The voice graph's inputs: the speech mask only when the model pools over speech frames."""
    return [name for name in VOICE_INPUTS if name != "speech_mask" or getattr(settings, "speech_only", False)]


def _voice_module(model, names: list[str]):
    """The exported voice graph: ``names``' tensors -> pooled features, as VoiceModel.features. Inside ``_after_front_end``,
    ``conv_features`` stand for the waveform and ``positions`` for the positional convolution's output."""
    import torch

    class VoiceFeatures(torch.nn.Module):
        def __init__(self, voice):
            super().__init__()
            self.voice = voice

        def forward(self, *tensors):
            inputs = dict(zip(names, tensors))
            if CONV_FEATURES in inputs:
                inputs["input_values"] = inputs.pop(CONV_FEATURES)
            if POSITIONS in inputs:
                self.voice.encoder.encoder.pos_conv_embed.given = inputs.pop(POSITIONS)
            return self.voice.features(**inputs)

    return VoiceFeatures(model).eval()


@contextlib.contextmanager
def _after_front_end(model, outputs):
    """``model`` whose encoder starts where ``frontend.VoiceFrontEnd`` stops, while the graph is exported: the feature
    extractor is swapped for a transpose of the given conv features (B, T', C), and, when the front end's ``outputs`` name
    ``positions``, the positional convolution module for one that returns them."""
    import torch

    class FrontEndOutput(torch.nn.Module):
        def forward(self, conv_features):
            return conv_features.transpose(1, 2)

    class GivenPositions(torch.nn.Module):
        given = None

        def forward(self, hidden):
            return self.given

    encoder = model.encoder
    extractor, positional = encoder.feature_extractor, encoder.encoder.pos_conv_embed
    encoder.feature_extractor = FrontEndOutput()
    if POSITIONS in outputs:
        encoder.encoder.pos_conv_embed = GivenPositions()
    try:
        yield model
    finally:
        encoder.feature_extractor, encoder.encoder.pos_conv_embed = extractor, positional


def front_end(model):
    """The bf16 front end of a voice model (``frontend.VoiceFrontEnd``; its weights must be loaded)."""
    from .frontend import VoiceFrontEnd

    return VoiceFrontEnd(model)


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


def export_voice(model, settings, path: Path, variant: str, workdir: Path, probes=None, rounding: str = "gptq") -> None:
    """Write the voice graph for ``settings``' window to ``path``.

    int8: the transformer layers' linear layers (attention projections and feed-forward) get
    int8 weights and dynamic int8 activations; the conv feature encoder and the feature
    projection stay fp32 (see the module docstring for why); the int8 weights are rounded by GPTQ
    (``gptq``) on ``probes``' speech windows (default: the packaged probes), or to the nearest step with
    ``rounding="nearest"``. int8-bf16: the same graph without the conv feature encoder and, where its form allows, the
    positional convolution, which run in bf16 before it (``frontend.VoiceFrontEnd``; its inputs are ``conv_features``,
    (1, T', C), and ``positions``, (1, T', D)).
    """
    import torch

    samples = int(round(settings.window_seconds * settings.sample_rate))
    names = voice_input_names(settings)
    dummy = {"input_values": torch.zeros(1, samples), "attention_mask": torch.ones(1, samples, dtype=torch.long),
             "speech_mask": torch.ones(1, samples, dtype=torch.long)}
    fp32 = workdir / "voice-fp32.onnx"
    if variant == INT8_BF16:
        front = front_end(model)
        dummy.update({name: torch.from_numpy(value) for name, value in front(dummy["input_values"].numpy(), dummy["attention_mask"].numpy()).items()})
        graph_names = list(front.outputs) + [name for name in names if name != "input_values"]
        with _after_front_end(model, front.outputs):
            _export(_voice_module(model, graph_names), tuple(dummy[name] for name in graph_names), fp32, graph_names, ["features"])
    else:
        _export(_voice_module(model, names), tuple(dummy[name] for name in names), fp32, names, ["features"])
    if variant == "fp32":
        os.replace(fp32, path)
        return
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(fp32), load_external_data=False)
    nodes = [node for node in graph.graph.node if node.op_type in ("MatMul", "Gemm")]
    keep_fp32 = [node.name for node in nodes if not VOICE_INT8_NODES.search(node.name)]
    linears = _linears(model, [node for node in nodes if VOICE_INT8_NODES.search(node.name)])
    del graph
    with _quiet():
        # per-channel weights: half the pooled-embedding error of per-tensor ones on real speech (1 - cosine 2.9e-4 -> 1.3e-4,
        # full-size random-init encoder, 30 RAVDESS clips), at the same speed
        quantize_dynamic(str(fp32), str(path), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"],
                         nodes_to_exclude=keep_fp32, per_channel=True)
    if rounding == "gptq" and linears:
        windows = (probes or default_probes()).speech_windows()
        moments = gptq.second_moments(model, {name: module for name, (module, _) in linears.items()},
                                      [voice_arrays(wave, settings) for wave in windows])
        gptq.rewrite(path, {weight: gptq.round_weights(module.weight.detach(), moments[name])
                            for name, (module, weight) in tqdm(linears.items(), desc="voice int8 weights (GPTQ)", leave=False)})


def _linears(model, nodes) -> dict:
    """{module name: (torch Linear, the graph's weight initializer)} for the exported MatMul ``nodes`` whose scope names a
    Linear of ``model`` (the TorchScript exporter names nodes after the module path; ``gptq.rewrite`` checks the shapes)."""
    import torch

    found = {}
    for node in nodes:
        name = ".".join(node.name.strip("/").split("/")[:-1])
        try:
            module = model.get_submodule(name)
        except AttributeError:
            continue
        if isinstance(module, torch.nn.Linear) and node.op_type == "MatMul":
            found[name] = (module, node.input[1])
    return found


def _reader(feeds: list[dict]):
    """An onnxruntime CalibrationDataReader over a list of input feeds."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.feeds = iter(feeds)

        def get_next(self):
            return next(self.feeds, None)

    return Reader()


def export_face(model, settings, path: Path, variant: str, workdir: Path, probes=None) -> None:
    """Write the per-frame face graph to ``path`` (fp32, or int8 static QDQ calibrated on ``probes.calibration_faces``)."""
    import torch

    from ..transforms import face_pixels

    fp32 = workdir / "face-fp32.onnx"
    pixels = torch.zeros(1, 3, settings.image_size, settings.image_size)
    _export(_face_module(model), (pixels,), fp32, ["pixels"], ["embeddings"], {"pixels": {0: "frames"}, "embeddings": {0: "frames"}})
    if variant == "fp32":
        os.replace(fp32, path)
        return
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    feeds = [{"pixels": face_pixels(crop, settings).numpy()} for crop in probes.calibration_faces]
    prepared = workdir / "face-prepared.onnx"
    with _quiet():
        # folds the exporter's Identity weight aliases, which would otherwise leave a third of the convs unquantized
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        # reduce_range (7-bit weights): without VNNI, x86 u8s8 kernels add pairs of products in saturating int16; full-range
        # weights overflowed there (trained tiny face model: mean probability error 0.024 -> 0.006 with it), at no cost in speed
        quantize_static(str(prepared), str(path), _reader(feeds), quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, per_channel=True, reduce_range=True)



# ---------------------------------------------------------------- check and build

# what each layer group of a fast file runs in (the build record's "layers"; emolib bench's table)
GPTQ_INT8 = "int8 (per-channel weights rounded by GPTQ on the probes, dynamic activations)"
LAYER_VARIANTS = {
    ("voice", "fp32"): {"conv feature encoder": "fp32", "feature projection": "fp32", "positional convolution": "fp32",
                        "transformer linear layers": "fp32", "attention products, norms, pooling": "fp32"},
    ("voice", "int8"): {"conv feature encoder": "fp32", "feature projection": "fp32", "positional convolution": "fp32",
                        "transformer linear layers": GPTQ_INT8, "attention products, norms, pooling": "fp32"},
    ("voice", INT8_BF16): {"conv feature encoder": "bf16 (PyTorch oneDNN; GroupNorm folded into the first product), its last "
                                                   "three layers fp32",
                           "feature projection": "fp32", "positional convolution": "fp32",
                           "transformer linear layers": GPTQ_INT8, "attention products, norms, pooling": "fp32"},
    ("face", "fp32"): {"convolutions": "fp32", "final pooling": "fp32"},
    ("face", "int8"): {"convolutions": "int8 static (per-channel 7-bit weights, calibrated activations)", "final pooling": "int8"},
}



def layer_variants(kind: str, variant: str, front=None) -> dict:
    """What each layer group of a fast file runs in; ``front``: its ``frontend.VoiceFrontEnd``, if it has one."""
    layers = dict(LAYER_VARIANTS[(kind, variant)])
    if front is not None and POSITIONS in front.outputs:
        layers["positional convolution"] = "bf16 (PyTorch oneDNN)"
    return layers


def _check(kind: str, model, fast: FastModel, settings, probes) -> dict:
    """Compare a fast session with the eager fp32 model on ``probes``: cosine and head probabilities."""
    import torch

    from ..transforms import face_pixels

    if kind == "voice":
        pairs = []
        for wave in probes.speech_windows():
            arrays = voice_arrays(wave, settings)
            with torch.inference_mode():
                eager = model.features(**{name: torch.from_numpy(value) for name, value in arrays.items()}).float().numpy()
            pairs.append((eager, fast.voice_features(arrays)))
    else:
        crops = probes.check_faces
        pairs = []
        for frames in [crops[index : index + 1] for index in range(len(crops))] + [crops[:3]]:
            pixels = face_pixels(frames, settings)
            with torch.inference_mode():
                eager = model.features(pixels[None]).float().numpy()
                quick = model.from_frozen(torch.from_numpy(fast.face_embeddings(pixels.numpy()))[None]).float().numpy()
            pairs.append((eager, quick))
    cosines, prob_diffs, label_match = [], [], []
    for eager, quick in pairs:
        cosines.append(float((eager * quick).sum() / max(np.linalg.norm(eager) * np.linalg.norm(quick), 1e-12)))
        with torch.inference_mode():
            p_eager = torch.softmax(model.classify(torch.from_numpy(eager)), dim=1).numpy()
            p_fast = torch.softmax(model.classify(torch.from_numpy(np.asarray(quick, dtype=np.float32))), dim=1).numpy()
        prob_diffs.append(float(np.abs(p_eager - p_fast).max()))
        label_match.append(bool(p_eager.argmax() == p_fast.argmax()))
    return {"min_cosine": min(cosines), "max_prob_diff": max(prob_diffs), "same_label": all(label_match)}


def build(kind, model, settings, variant, folder: Path, name: str, weights: str, threads, log, probes):
    """Export, check and cache one variant, calibrated and checked on ``probes``; returns (FastModel or None, record)."""
    say(log, f"building the fast CPU path for the {kind} model ({variant}, once; cached in {folder})")
    started = time.time()
    target = folder / name
    with tempfile.TemporaryDirectory(dir=folder, prefix=".build-") as workdir:
        workdir = Path(workdir)
        staged = workdir / name
        try:
            (export_voice if kind == "voice" else export_face)(model, settings, staged, variant, workdir, probes)
        except Exception as error:  # noqa: BLE001 - an exporter failure only disables the fast path (recorded: not retried)
            reason = f"{type(error).__name__}: {(str(error).splitlines() or [''])[0][:200]}"
            record = {"ok": False, "kind": kind, "variant": variant, "weights_sha256": weights, "error": reason, "versions": _versions()}
            write_record(target.with_suffix(".json"), record)
            say(log, f"{kind}: ONNX export ({variant}) failed ({reason})")
            return None, record
        fast = FastModel(kind, staged, {"variant": variant}, threads, front_end(model) if variant == INT8_BF16 else None)
        check = _check(kind, model, fast, settings, probes)
        record = {
            "ok": passes(check, variant), "kind": kind, "variant": variant, "layers": layer_variants(kind, variant, fast.front),
            "weights_sha256": weights,
            "settings": shape_settings(kind, settings), "recipe": RECIPE_VERSION, "check": check,
            "build_seconds": round(time.time() - started, 1), "versions": _versions(),
        }
        record["onnx_sha256"] = file_digest(staged)
        os.chmod(staged, umask_mode())
        os.replace(staged, target)
        write_record(target.with_suffix(".json"), record)
    remove_stale(folder, f"{kind}-{variant}", name)
    if not record["ok"]:
        say(log, f"{kind}: {variant} export differs from eager fp32 (min cosine {check['min_cosine']:.4f}, "
                  f"max probability difference {check['max_prob_diff']:.4f}); not used")
        return None, record
    fast.path, fast.record = target, record
    return fast, record


def _versions() -> dict:
    import onnx
    import onnxruntime
    import torch

    return {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}
