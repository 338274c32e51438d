"""``emolib bench``: measure the fast CPU path against eager fp32 in one run and write a markdown report.

Everything is measured in the same process run on the same machine, with the variants
interleaved (eager, fast, eager, fast, ...) so that load from other processes hits both alike:

- live prediction latency (p50, p90) of full-size random-init wav2vec2-base + ResNet-50 + fusion
  (built offline from ``Wav2Vec2Config()`` defaults, which are wav2vec2-base's architecture, and
  ``FaceConfig(backbone="resnet50", weights=None)``), eager fp32 vs the fast path, their ratio,
  where the time goes, and how far the fast path's outputs are from eager's;
- UAR on the test split of trained checkpoints (``--models``): eager vs the fast path as
  ``emolib predict`` uses it, and with int8 forced (the full-size recipe applied to them);
- face preparation throughput (clips/s): serial vs parallel workers, and the cached re-run;
- frozen-feature extraction throughput (clips/s) of the full-size encoders;
- peak RSS of a process doing live predictions (each in its own subprocess).

The full-size random-init checkpoints (470 MB) and, without ``--data``, a small synthetic
CREMA-D tree are written once under ``--work`` (default ``$EMOLIB_CACHE/bench``).
The markdown report itself is written by ``emolib.bench_report``.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from .bench_report import markdown
from .cremad import EMOTIONS

LIVE_STEMS = (("1001_DFA_ANG_HI", "1001_IEO_HAP_HI"), ("1002_TIE_SAD_MD", "1002_ITS_NEU_XX"),
              ("1003_WSI_FEA_HI", "1003_MTI_DIS_LO"), ("1004_IWL_HAP_MD", "1004_TSI_ANG_XX"))
WARMUP = 2


def default_work() -> Path:
    return Path(os.environ.get("EMOLIB_CACHE", Path.home() / ".cache" / "emolib")) / "bench"


# ---------------------------------------------------------------- inputs and models


def full_size_models(root) -> Path:
    """Random-init wav2vec2-base + ResNet-50 + fusion checkpoints in ``root`` (written once, then reused)."""
    import torch
    from transformers import Wav2Vec2Config

    from .backbones import DEFAULT_VOICE_BACKBONE
    from .checkpoint import CONFIG_FILE, save_checkpoint
    from .models import FaceConfig, FaceModel, FusionConfig, FusionModel, VoiceConfig, VoiceModel
    from .transforms import AudioSettings, FaceSettings

    root = Path(root)
    if all((root / kind / CONFIG_FILE).is_file() for kind in ("voice", "face", "fusion")):
        return root
    torch.manual_seed(0)
    voice = VoiceModel(VoiceConfig(backbone=DEFAULT_VOICE_BACKBONE, encoder_config=Wav2Vec2Config().to_dict(), freeze="none"))
    face = FaceModel(FaceConfig(backbone="resnet50", weights=None))
    fusion = FusionModel(FusionConfig(voice.feature_dim, face.feature_dim))
    audio, faces = {"audio": asdict(AudioSettings())}, {"face": asdict(FaceSettings())}
    save_checkpoint(voice, "voice", root / "voice", audio)
    save_checkpoint(face, "face", root / "face", faces)
    save_checkpoint(fusion, "fusion", root / "fusion", {**audio, **faces}, {"voice_checkpoint": "../voice", "face_checkpoint": "../face"})
    return root


def live_inputs(index: int, seconds: float = 4.0):
    """(audio: ``seconds`` of 16 kHz synthetic speech, frame: a 480x360 RGB camera-like frame with a face)."""
    import cv2

    from .audio import SAMPLE_RATE
    from .synth import synthesize_clip

    first, second = (synthesize_clip(stem) for stem in LIVE_STEMS[index % len(LIVE_STEMS)])
    samples = int(seconds * SAMPLE_RATE)
    audio = np.concatenate([first.audio, second.audio, first.audio])[:samples].astype(np.float32)
    frame = cv2.cvtColor(first.frames[len(first.frames) // 2], cv2.COLOR_BGR2RGB)
    return audio, frame


def synthetic_data(work: Path, actors: int = 4) -> Path:
    from .synth import make_synthetic_cremad

    root = work / "cremad-synth"
    if not (root / "README.txt").is_file():
        make_synthetic_cremad(root, actors=actors, progress=False)
    return root


# ---------------------------------------------------------------- measurements


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
        prob_diff = max(prob_diff, max(abs(a.probabilities[e] - b.probabilities[e]) for e in EMOTIONS))
        same_label &= a.emotion == b.emotion
        wave, *_ = fast.prepare_audio(audio, 16000)
        started = time.perf_counter()
        crops, _, _ = fast.face_crops([frame])
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
        "inputs": f"{len(inputs)} different 4 s synthetic speech recordings (16 kHz) + one 480x360 frame each",
    }


def gemm_rates(threads: int, size: int = 2048, repeats: int = 8) -> dict:
    """Measured GEMM throughput of ONNX Runtime here (the roof the encoders run under): fp32 MatMul and u8s8 MatMulInteger.

    Best of ``repeats`` runs, so that load from other processes does not lower the roof.
    """
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from .fastpath import session_options

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
        best = min(_timed(lambda: session.run(None, feed)) for _ in range(repeats))
        rates[label] = 2 * size**3 / best / 1e9
    return rates


def _timed(function) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def flop_budget(predictor) -> dict:
    """GFLOPs (2 x multiply-adds) of one live prediction, split by what the fast path runs in fp32 and in int8."""
    import torch

    from .fastpath import load_encoder_weights
    from .fastpath_export import VOICE_INT8_NODES, voice_arrays

    counts = {"voice fp32": 0.0, "voice int8": 0.0, "face": 0.0}
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
    for module in voice.encoder.modules():
        if isinstance(module, (torch.nn.Conv1d, torch.nn.Linear)):
            int8 = VOICE_INT8_NODES.search("/encoder/" + names[module].replace(".", "/").replace("layers/", "layers.") + "/MatMul")
            hooks.append(module.register_forward_hook(counter(lambda m, int8=int8: "voice int8" if int8 else "voice fp32")))
    for module in face.encoder.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
            hooks.append(module.register_forward_hook(counter(lambda m: "face")))
    audio, frame = live_inputs(0)
    values, mask = voice_arrays(audio, predictor.audio_settings)
    crops, _, _ = predictor.face_crops([frame])
    from .transforms import face_pixels

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

    import onnxruntime as ort

    from .fastpath import session_options

    options = session_options(fast_model.session.get_session_options().intra_op_num_threads)
    with tempfile.TemporaryDirectory(prefix="emolib-bench-profile-") as folder:
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(folder) / "profile")
        session = ort.InferenceSession(str(fast_model.path), options, providers=["CPUExecutionProvider"])
        session.run(None, feed)
        session.end_profiling()
        options = session_options(fast_model.session.get_session_options().intra_op_num_threads)
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(folder) / "measured")
        session = ort.InferenceSession(str(fast_model.path), options, providers=["CPUExecutionProvider"])
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
    from .fastpath_export import voice_arrays
    from .transforms import face_pixels

    audio, frame = live_inputs(0)
    result = {}
    if fast.fast is not None and fast.fast.voice is not None:
        values, mask = voice_arrays(audio, fast.audio_settings)
        result["voice"] = operator_profile(fast.fast.voice, {"input_values": values, "attention_mask": mask})
    if fast.fast is not None and fast.fast.face is not None:
        crops, _, _ = fast.face_crops([frame])
        result["face"] = operator_profile(fast.fast.face, {"pixels": face_pixels(crops, fast.face_settings).numpy()})
    return result


RSS_SCRIPT = """
import json, resource, sys
from emolib.bench import live_inputs
from emolib.predict import Predictor
predictor = Predictor.from_dir(sys.argv[1], fast=sys.argv[2] == "fast")
for index in range(3):
    audio, frame = live_inputs(index)
    predictor.predict(audio, 16000, frame)
try:  # VmHWM: this process's own peak (ru_maxrss would include the parent's RSS at fork, kept across exec)
    peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
except (OSError, StopIteration):
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"peak_kb": peak}))
"""


def peak_rss(models_dir, mode: str) -> float:
    """Peak resident memory (GiB) of a fresh process that loads the predictor and makes 3 live predictions."""
    result = subprocess.run([sys.executable, "-c", RSS_SCRIPT, str(models_dir), mode], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"peak RSS subprocess failed: {result.stderr.strip().splitlines()[-1:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])["peak_kb"] / 1024 / 1024


def face_preparation(manifest, clips: int, workers: int | None, rounds: int = 2) -> dict:
    """Throughput of prepare_faces on ``clips`` clips: serial vs parallel (alternated, best of ``rounds``), then a cached re-run."""
    from .faces import prepare_faces

    rows = manifest[manifest["video_path"].astype(str) != ""].head(clips)
    resolved = workers if workers is not None else min(4, os.cpu_count() or 1)
    result = {"clips": len(rows)}
    for _ in range(rounds):
        for label, count in (("serial", 0), ("parallel", resolved)):
            with tempfile.TemporaryDirectory(prefix="emolib-bench-faces-") as cache:
                started = time.perf_counter()
                table = prepare_faces(rows, cache, workers=count, progress=False)
                seconds = time.perf_counter() - started
                if label not in result or seconds < result[label]["seconds"]:
                    result[label] = {"workers": count, "seconds": seconds, "clips_per_second": len(rows) / seconds,
                                     "frames_with_face": int(table["faces_found"].sum()), "frames": int(table["frames"].sum())}
                if label == "parallel":
                    started = time.perf_counter()
                    prepare_faces(rows, cache, workers=count, progress=False)
                    seconds = time.perf_counter() - started
                    result["cached"] = {"seconds": seconds, "clips_per_second": len(rows) / max(seconds, 1e-9)}
    return result


def feature_extraction(eager, fast, manifest, clips: int, work: Path, rounds: int = 2) -> dict:
    """Frozen-feature extraction throughput (clips/s) of the full-size encoders: eager batches and the fast path."""
    from .datasets import FaceDataset, VoiceDataset
    from .faces import prepare_faces
    from .features import extract_features

    rows = manifest[(manifest["audio_path"].astype(str) != "") & (manifest["video_path"].astype(str) != "")].head(clips).reset_index(drop=True)
    faces = prepare_faces(rows, work / "faces", frames=eager.face_settings.frames, margin=eager.face_settings.margin, progress=False)
    voice_set = VoiceDataset(rows, eager.audio_settings)
    face_set = FaceDataset(rows, faces, eager.face_settings)
    for index in range(len(voice_set)):
        voice_set.wave(index)  # decode the audio once, outside the timing
    jobs = {
        "voice eager (batch 16)": lambda: extract_features(eager.voice, voice_set, "voice", "cpu", progress=False),
        "voice fast (per clip)": lambda: [fast.voice_features(voice_set.wave(index)) for index in range(len(voice_set))],
        "face eager (batch 16, 3 frames/clip)": lambda: extract_features(eager.face, face_set, "face", "cpu", progress=False),
        "face fast (per clip, 3 frames)": lambda: [fast.face_features(face_set.crops(index)) for index in range(len(face_set))],
    }
    best = {name: float("inf") for name in jobs}
    for _ in range(rounds):  # alternate, best of ``rounds``: load from other processes hits all alike
        for name, job in jobs.items():
            best[name] = min(best[name], _timed(job))
    return {"clips": len(rows), **{name: len(rows) / seconds for name, seconds in best.items()}}


def uar_on_test_split(models_dir, data, work: Path, progress: bool = True) -> dict:
    """UAR and largest probability difference on the test split: eager vs fast (auto) vs fast (int8 forced)."""
    from .checkpoint import CONFIG_FILE, WEIGHTS_FILE
    from .metrics import summary_metrics
    from .predict import Predictor
    from .recipes import load_manifest_for

    copy = work / "trained-models"  # a private copy, so that the caches do not touch --models
    shutil.rmtree(copy, ignore_errors=True)
    for kind in ("voice", "face", "fusion"):
        source = Path(models_dir) / kind
        if (source / CONFIG_FILE).is_file():
            (copy / kind).mkdir(parents=True)
            for name in (CONFIG_FILE, WEIGHTS_FILE):
                shutil.copy2(source / name, copy / kind / name)
    manifest = load_manifest_for(data, quiet=True)
    rows = manifest[manifest["split"] == "test"]
    predictors = {"eager": Predictor.from_dir(copy, fast=False), "fast": Predictor.from_dir(copy),
                  "fast int8 forced": Predictor.from_dir(copy, quantize="int8")}
    variants = {name: (predictor.fast.describe() if predictor.fast else {"voice": "eager", "face": "eager"}) for name, predictor in predictors.items()}
    outputs = {name: {"voice": [], "face": [], "fusion": []} for name in predictors}
    labels = []
    for row in rows.itertuples():
        labels.append(EMOTIONS.index(row.emotion))
        for name, predictor in predictors.items():
            prediction = predictor.predict_files(audio=row.audio_path or None, video=row.video_path or None)
            for kind in ("voice", "face", "fusion"):
                probabilities = getattr(prediction, kind)
                outputs[name][kind].append([probabilities[e] for e in EMOTIONS] if probabilities else [np.nan] * len(EMOTIONS))
    result = {"clips": len(labels), "variants": variants, "models": {}}
    for kind in ("voice", "face", "fusion"):
        reference = np.array(outputs["eager"][kind])
        if np.isnan(reference).all():
            continue
        entry = {}
        for name in predictors:
            probabilities = np.array(outputs[name][kind])
            keep = ~np.isnan(probabilities).any(axis=1)
            metrics = summary_metrics(np.array(labels)[keep], probabilities[keep].argmax(axis=1))
            entry[name] = {"uar": metrics["uar"], "accuracy": metrics["accuracy"], "n": metrics["n"],
                           "max_prob_diff": float(np.nanmax(np.abs(probabilities - reference))),
                           "label_changes": int((probabilities[keep].argmax(axis=1) != reference[keep].argmax(axis=1)).sum())}
        result["models"][kind] = entry
    return result


def fast_build_records(models_dir) -> dict:
    """The build records (variant, check, build seconds) of the fast files next to the checkpoints."""
    records = {}
    for kind in ("voice", "face"):
        for path in sorted((Path(models_dir) / kind / "fast").glob(f"{kind}-*.json")):
            record = json.loads(path.read_text())
            records[f"{kind} {record.get('variant')}"] = {"check": record.get("check"), "build_seconds": record.get("build_seconds"),
                                                          "file_mb": round(path.with_suffix(".onnx").stat().st_size / 1e6, 1)}
    return records


# ---------------------------------------------------------------- machine


def machine() -> dict:
    """This machine and run: CPU model and flags, cores, Python, torch and onnxruntime versions (the report's header)."""
    import onnxruntime
    import torch

    from .fastpath import physical_cores

    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")), "")
    present = set(cpuinfo.split())
    flags = ", ".join(flag for flag in ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni") if flag in present) or "none of avx2/avx512"
    return {"cpu": model or platform.processor(), "logical_cpus": os.cpu_count(), "physical_cores": physical_cores(), "flags": flags,
            "python": platform.python_version(), "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
            "torch_threads": torch.get_num_threads()}


def _load() -> str:
    try:
        return " ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "n/a"


def run_bench(out="BENCHMARKS.md", models=None, data=None, runs: int = 20, work=None, clips: int = 120, feature_clips: int = 16,
              workers: int | None = None, threads: int | None = None, command: str | None = None, notes=(), json_out=None,
              progress: bool = True) -> dict:
    """Run every measurement and write the markdown report to ``out`` (and the raw figures to ``json_out`` if given)."""
    from .checkpoint import atomic_write_text
    from .predict import Predictor
    from .recipes import load_manifest_for

    def say(message):
        if progress:
            print(f"bench: {message}", file=sys.stderr, flush=True)

    work = Path(work) if work else default_work()
    work.mkdir(parents=True, exist_ok=True)
    if models and not any((Path(models) / kind / "config.json").is_file() for kind in ("voice", "face", "fusion")):
        from .errors import ModelError

        raise ModelError(f"{models}: no voice/, face/ or fusion/ checkpoints to compare on the test split")
    data = Path(data) if data else synthetic_data(work)
    manifest = load_manifest_for(data, quiet=True)  # fails now, not after minutes of measuring, on a bad --data
    results = {"command": command or "emolib bench", "load_before": _load(), "machine": machine(), "notes": list(notes)}
    say(f"full-size random-init models in {work / 'full-size'}")
    full = full_size_models(work / "full-size")
    eager = Predictor.from_dir(full, fast=False)
    fast = Predictor.from_dir(full, threads=threads)
    results["builds"] = fast_build_records(full)
    say(f"live latency: {runs} interleaved runs each ({fast!r})")
    results["live"] = live_latency(eager, fast, runs)
    results["profiles"] = profiles(fast)
    say("GEMM roofs and FLOP budget")
    results["roof"] = gemm_rates(fast.fast.threads if fast.fast else (threads or 1))
    results["flops"] = flop_budget(eager)
    say("peak RSS (subprocesses)")
    results["rss"] = {"eager": peak_rss(full, "eager"), "fast": peak_rss(full, "fast")}
    say(f"face preparation on {min(clips, len(manifest))} clips of {data}")
    results["faces"] = face_preparation(manifest, clips, workers)
    say(f"frozen-feature extraction on {feature_clips} clips")
    with tempfile.TemporaryDirectory(prefix="emolib-bench-features-") as scratch:
        results["features"] = feature_extraction(eager, fast, manifest, feature_clips, Path(scratch))
    del eager, fast
    if models:
        say(f"test-split UAR of {models}")
        results["models_dir"] = str(models)
        results["uar"] = uar_on_test_split(models, data, work, progress)
    results["load_after"] = _load()
    out = Path(out)
    atomic_write_text(out, markdown(results))
    if json_out:
        atomic_write_text(Path(json_out), json.dumps(results, indent=2, default=str))
    say(f"wrote {out}")
    return results
