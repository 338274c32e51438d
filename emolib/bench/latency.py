"""Live-prediction latency of eager vs fast, and where the time goes: GEMM roofs, FLOP budget, operator profiles."""
from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np

from ..audio import SAMPLE_RATE
from ..infer.inputs import prepare_audio
from ..transforms import crop_clip
from .inputs import LIVE_STEMS, WARMUP, live_inputs

# the voice profile's rows for what runs in PyTorch before an int8-bf16 graph (``frontend.VoiceFrontEnd``)
FRONT_END_ROWS = ("bf16 conv front end (PyTorch, before the graph)", "bf16 positional conv + feature projection (PyTorch, before the graph)")

def _percentiles(times: list[float]) -> dict:
    return {"p50": float(np.percentile(times, 50)), "p90": float(np.percentile(times, 90)), "n": len(times)}


def _cosine(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))


def live_latency(eager, fast, runs: int) -> dict:
    """Interleaved predict() latencies of both predictors, per-part timings, and output differences."""
    inputs = [live_inputs(index) for index in range(len(LIVE_STEMS))]
    for audio, frame in inputs[:WARMUP]:
        eager.predict(audio, 16000, frame)
        fast.predict(audio, 16000, frame)
    times = {"eager": [], "fast": []}
    parts = {name: [] for name in ("voice encoder eager", "voice encoder fast", "face encoder eager", "face encoder fast", "face detection + crop")}
    prob_diff, voice_cos, face_cos, same_label = 0.0, 1.0, 1.0, True
    for run in range(runs):
        audio, frame = inputs[run % len(inputs)]
        order = (("eager", eager), ("fast", fast)) if run % 2 == 0 else (("fast", fast), ("eager", eager))
        results = {}
        for name, predictor in order:
            started = time.perf_counter()
            results[name] = predictor.predict(audio, 16000, frame)
            times[name].append(time.perf_counter() - started)
        a, b = results["eager"], results["fast"]
        prob_diff = max(prob_diff, max(abs(a.probabilities[label] - b.probabilities[label]) for label in a.probabilities))
        same_label &= a.emotion == b.emotion
        wave, *_ = prepare_audio(audio, SAMPLE_RATE, fast.audio_settings)
        started = time.perf_counter()
        crops, _, _ = crop_clip([frame], fast.face_settings)
        parts["face detection + crop"].append(time.perf_counter() - started)
        for label, predictor in (("eager", eager), ("fast", fast)):
            started = time.perf_counter()
            voice_features = predictor.voice_features(wave)
            parts[f"voice encoder {label}"].append(time.perf_counter() - started)
            started = time.perf_counter()
            face_features = predictor.face_features(crops)
            parts[f"face encoder {label}"].append(time.perf_counter() - started)
            if label == "eager":
                reference = (voice_features, face_features)
        voice_cos = min(voice_cos, _cosine(reference[0], voice_features))
        face_cos = min(face_cos, _cosine(reference[1], face_features))
    eager_p, fast_p = _percentiles(times["eager"]), _percentiles(times["fast"])
    return {
        "eager": eager_p, "fast": fast_p, "speedup_p50": eager_p["p50"] / fast_p["p50"],
        "parts": {name: _percentiles(values) for name, values in parts.items()},
        "max_prob_diff": prob_diff, "same_label": bool(same_label), "voice_min_cosine": voice_cos, "face_min_cosine": face_cos,
        "inputs": f"{len(inputs)} different 4 s synthetic speech recordings (16 kHz) + one 480x360 frame each", "warmup": WARMUP,
    }


def gemm_rates(threads: int, size: int = 2048, repeats: int = 8) -> dict:
    """Measured GEMM throughput of ONNX Runtime here (the roof the encoders run under): fp32 MatMul and u8s8 MatMulInteger.

    Best of ``repeats`` runs, so that load from other processes does not lower the roof.
    """
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from ..fast.session import session_options

    rng = np.random.default_rng(0)
    rates = {}
    for label, op, a_type, weights in (
        ("fp32", "MatMul", TensorProto.FLOAT, rng.standard_normal((size, size)).astype(np.float32)),
        ("int8", "MatMulInteger", TensorProto.UINT8, rng.integers(-127, 128, (size, size)).astype(np.int8)),
    ):
        graph = helper.make_graph(
            [helper.make_node(op, ["a", "b"], ["c"])], label,
            [helper.make_tensor_value_info("a", a_type, [size, size])],
            [helper.make_tensor_value_info("c", TensorProto.FLOAT if label == "fp32" else TensorProto.INT32, [size, size])],
            [numpy_helper.from_array(weights, "b")],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        session = ort.InferenceSession(model.SerializeToString(), session_options(threads), providers=["CPUExecutionProvider"])
        feed = {"a": rng.standard_normal((size, size)).astype(np.float32) if label == "fp32" else rng.integers(0, 256, (size, size)).astype(np.uint8)}
        session.run(None, feed)
        best = min(timed(lambda: session.run(None, feed)) for _ in range(repeats))
        rates[label] = 2 * size**3 / best / 1e9
    from ..fast.frontend import bf16_cpu

    if bf16_cpu():  # the bf16 conv front end's roof: PyTorch (oneDNN) bf16 matrix products
        import torch

        a, b = (torch.from_numpy(rng.standard_normal((size, size)).astype(np.float32)).bfloat16() for _ in range(2))
        with torch.inference_mode():
            a @ b
            best = min(timed(lambda: a @ b) for _ in range(repeats))
        rates["bf16"] = 2 * size**3 / best / 1e9
    return rates


def timed(function) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def flop_budget(predictor) -> dict:
    """GFLOPs (2 x multiply-adds) of one live prediction: the voice front end (bf16 where the CPU has it), the rest of the voice model the fast path
    runs in fp32, its int8 linears, and the face model (int8)."""
    import torch

    from ..fast.voice_graph import VOICE_INT8_NODES, voice_arrays
    from ..fast.frontend import positional_supported
    from ..fast.runtime import load_encoder_weights

    counts = {"voice front end": 0.0, "voice fp32": 0.0, "voice int8": 0.0, "face": 0.0}
    hooks = []

    def counter(bucket_of):
        def hook(module, inputs, output):
            if isinstance(module, (torch.nn.Conv1d, torch.nn.Conv2d)):
                macs = output.numel() * module.in_channels // module.groups * int(np.prod(module.kernel_size))
            else:
                macs = output.numel() * module.in_features
            counts[bucket_of(module)] += 2 * macs / 1e9
        return hook

    voice, face = predictor.voice, predictor.face
    for model in (voice, face):
        load_encoder_weights(model)
    names = {module: name for name, module in voice.encoder.named_modules()}
    # what the bf16 front end (``frontend.VoiceFrontEnd``) runs: the conv feature encoder, and the positional conv where it can
    front = ("feature_extractor.", "encoder.pos_conv_embed.") if positional_supported(voice.encoder) else ("feature_extractor.",)
    for module in voice.encoder.modules():
        if isinstance(module, (torch.nn.Conv1d, torch.nn.Linear)):
            int8 = VOICE_INT8_NODES.search("/encoder/" + names[module].replace(".", "/").replace("layers/", "layers.") + "/MatMul")
            bucket = "voice int8" if int8 else "voice front end" if names[module].startswith(front) else "voice fp32"
            hooks.append(module.register_forward_hook(counter(lambda m, bucket=bucket: bucket)))
    for module in face.encoder.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
            hooks.append(module.register_forward_hook(counter(lambda m: "face")))
    audio, frame = live_inputs(0)
    values = voice_arrays(audio, predictor.audio_settings)["input_values"]
    crops, _, _ = crop_clip([frame], predictor.face_settings)
    from ..transforms import face_pixels

    with torch.inference_mode():
        hidden = voice.encoder(torch.from_numpy(values)).last_hidden_state
        face.features(face_pixels(crops, predictor.face_settings)[None])
    for hook in hooks:
        hook.remove()
    config = voice.encoder.config
    counts["voice fp32"] += 2 * 2 * config.num_hidden_layers * hidden.shape[1] ** 2 * config.hidden_size / 1e9  # attention QK^T and AV
    return counts


def operator_profile(fast_model, feed: dict, runs: int = 3, top: int = 7) -> list[tuple[str, float]]:
    """ONNX Runtime's per-operator time (ms per run, largest first) of a fast model's file on ``feed``."""
    import collections

    from ..fast.session import new_session, session_options

    options = session_options(fast_model.session.get_session_options().intra_op_num_threads)
    with tempfile.TemporaryDirectory(prefix="emolib-bench-profile-") as folder:
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(folder) / "profile")
        session = new_session(fast_model.path, options)
        session.run(None, feed)
        session.end_profiling()
        options = session_options(fast_model.session.get_session_options().intra_op_num_threads)
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(folder) / "measured")
        session = new_session(fast_model.path, options)
        for _ in range(runs):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
    totals = collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time"):
            totals[event["args"]["op_name"]] += event["dur"] / 1000 / runs
    ranked = totals.most_common()
    rest = sum(value for _, value in ranked[top:])
    return [(name, value) for name, value in ranked[:top]] + ([("other operators", rest)] if rest else [])


def profiles(fast) -> dict:
    """Per-operator profiles of the fast voice and face sessions on a live input."""
    from ..fast.voice_graph import voice_arrays
    from ..transforms import face_pixels

    audio, frame = live_inputs(0)
    result = {}
    if fast.fast is not None and fast.fast.voice is not None:
        voice = fast.fast.voice
        arrays = voice_arrays(audio, fast.audio_settings)
        result["voice"] = operator_profile(voice, voice.graph_feed(arrays))
        if voice.front is not None:  # the bf16 front end runs in PyTorch before the graph: its own rows
            import torch

            waves = torch.from_numpy(arrays["input_values"])
            conv = min(timed(lambda: voice.front.conv(waves)) for _ in range(5)) * 1000
            rows = [(FRONT_END_ROWS[0], conv)]
            if voice.front.positional is not None:
                whole = min(timed(lambda: voice.front(arrays["input_values"], arrays["attention_mask"])) for _ in range(5)) * 1000
                rows.append((FRONT_END_ROWS[1], max(0.0, whole - conv)))
            result["voice"] = sorted(result["voice"][:-1] + rows, key=lambda row: -row[1]) + result["voice"][-1:]
    if fast.fast is not None and fast.fast.face is not None:
        crops, _, _ = crop_clip([frame], fast.face_settings)
        result["face"] = operator_profile(fast.fast.face, {"pixels": face_pixels(crops, fast.face_settings).numpy()})
    return result


