"""Building the fast CPU path: the policy (what runs in which precision), the build-time check against eager fp32, the record.

``emolib.fast.runtime`` calls ``build`` the first time a checkpoint has no cached fast file; this module has the graph
written (``voice_graph``, ``face_graph``: ONNX export and int8 quantization), checks it and records the outcome, and
the runtime side loads it from then on.

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

import os
import tempfile
import time
from pathlib import Path

import numpy as np

from ..files import file_digest, umask_mode
from .cache import INT8_BF16, RECIPE_VERSION, front_end_weights, passes, remove_stale, say, shape_settings, write_record
from .face_graph import export_face
from .session import POSITIONS, FastModel
from .voice_graph import export_voice, front_end, voice_arrays


# ---------------------------------------------------------------- check and build

# what each layer group of a fast file runs in (the build record's "layers"; emolib bench's table)
GPTQ_INT8 = "int8 (per-channel weights rounded by GPTQ on the probes, dynamic activations)"
LAYER_VARIANTS = {
    ("voice", "fp32"): {"conv feature encoder": "fp32", "feature projection": "fp32", "positional convolution": "fp32",
                        "transformer linear layers": "fp32", "attention products, norms, pooling": "fp32"},
    ("voice", "int8"): {"conv feature encoder": "fp32", "feature projection": "fp32", "positional convolution": "fp32",
                        "transformer linear layers": GPTQ_INT8, "attention products, norms, pooling": "fp32"},
    ("voice", INT8_BF16): {"conv feature encoder": "bf16 (PyTorch oneDNN; weights rounded by GPTQ on the probes, the first "
                                                   "layer's, its GroupNorm folded in, on each input), its last three layers fp32",
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
        fast = FastModel(kind, staged, {"variant": variant}, threads, front_end(model, staged) if variant == INT8_BF16 else None)
        check = _check(kind, model, fast, settings, probes)
        record = {
            "ok": passes(check, variant), "kind": kind, "variant": variant, "layers": layer_variants(kind, variant, fast.front),
            "weights_sha256": weights,
            "settings": shape_settings(kind, settings), "recipe": RECIPE_VERSION, "check": check,
            "build_seconds": round(time.time() - started, 1), "versions": _versions(),
        }
        record["onnx_sha256"] = file_digest(staged)
        weights_file = front_end_weights(staged)
        if weights_file.is_file():
            record["front_end_sha256"] = file_digest(weights_file)
            os.chmod(weights_file, umask_mode())
            os.replace(weights_file, front_end_weights(target))
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
