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
The markdown report itself is written by ``emolib.bench.report``.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path


from ..fast.cache import front_end_weights
from .report import markdown
from .inputs import default_work, full_size_models, live_inputs, synthetic_data
from .latency import flop_budget, gemm_rates, live_latency, profiles
from .throughput import face_preparation, feature_extraction, peak_rss, uar_on_test_split

def fast_build_records(models_dir) -> dict:
    """The build records (variant, check, build seconds) of the fast files next to the checkpoints."""
    records = {}
    for kind in ("voice", "face"):
        for path in sorted((Path(models_dir) / kind / "fast").glob(f"{kind}-*.json")):
            record, graph = json.loads(path.read_text()), path.with_suffix(".onnx")
            records[f"{kind} {record.get('variant')}"] = {"check": record.get("check"), "build_seconds": record.get("build_seconds"), "ok": record.get("ok"),
                                                          "variant": record.get("variant"), "layers": record.get("layers"),
                                                          "file_mb": round(sum(file.stat().st_size for file in (graph, front_end_weights(graph)) if file.is_file()) / 1e6, 1)}
    return records


# ---------------------------------------------------------------- machine


def machine() -> dict:
    """This machine and run: CPU model and flags, cores, Python, torch and onnxruntime versions (the report's header)."""
    import onnxruntime
    import torch

    from ..fast.session import physical_cores

    from ..devices import cpu_model

    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = cpu_model()
    present = set(cpuinfo.split())
    flags = ", ".join(flag for flag in ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16") if flag in present) or "none of avx2/avx512"
    return {"cpu": model, "logical_cpus": os.cpu_count(), "physical_cores": physical_cores(), "flags": flags,
            "python": platform.python_version(), "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
            "torch_threads": torch.get_num_threads()}


def _load() -> str:
    try:
        return " ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "n/a"


def run_bench(out="BENCHMARKS.md", models=None, data=None, runs: int = 20, work=None, clips: int = 120, feature_clips: int = 16,
              workers: int | None = None, threads: int | None = None, command: str | None = None, notes=(), json_out=None,
              progress: bool = True, size: str = "full") -> dict:
    """Run every measurement and write the markdown report to ``out`` (and the raw figures to ``json_out`` if given).

    ``size="tiny"`` runs the same path on tiny random-init encoders (a test of the path, not a benchmark)."""
    from ..files import atomic_write
    from ..infer.predictor import Predictor
    from ..train.options import DataOptions, load_manifest_for

    def say(message):
        if progress:
            print(f"bench: {message}", file=sys.stderr, flush=True)

    work = Path(work) if work else default_work()
    work.mkdir(parents=True, exist_ok=True)
    if models and not any((Path(models) / kind / "config.json").is_file() for kind in ("voice", "face", "fusion")):
        from ..errors import ModelError

        raise ModelError(f"{models}: no voice/, face/ or fusion/ checkpoints to compare on the test split")
    data = Path(data) if data else synthetic_data(work)
    manifest = load_manifest_for(DataOptions(str(data)), quiet=True)  # fails now, not after minutes of measuring, on a bad --data
    results = {"command": command or "emolib bench", "load_before": _load(), "machine": machine(), "notes": list(notes)}
    say(f"full-size random-init models in {work / 'full-size'}")
    full = full_size_models(work / "full-size", size)
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
    atomic_write(out, keep_sections(out, markdown(results)))
    if json_out:
        atomic_write(Path(json_out), json.dumps(results, indent=2, default=str))
    say(f"wrote {out}")
    return results


REHEARSAL = ("<!-- rehearsal:start -->", "<!-- rehearsal:end -->")  # the Kaggle rehearsal's figures, written by hand from a GPU run


def keep_sections(out, text: str) -> str:
    """``text`` followed by the sections ``out`` already has from ``emolib bench --faces`` and ``--annotate``."""
    from . import faces, fastreal, real, recipe, scaling, streaming

    old = Path(out).read_text() if Path(out).is_file() else ""
    for start, end in ((faces.START, faces.END), (scaling.START, scaling.END), (streaming.START, streaming.END), (recipe.START, recipe.END),
                       (real.START, real.END), (real.VOICES_START, real.VOICES_END),
                       (fastreal.START, fastreal.END), REHEARSAL):
        if start in old and end in old:
            text = text.rstrip() + "\n\n" + old[old.index(start): old.index(end) + len(end)] + "\n"
    return text


def run_face_bench(out="BENCHMARKS.md", data=None, work=None, command: str = "emolib bench --faces", frames: int = 120) -> list[dict]:
    """Measure face detection (``bench.faces``) and write its section of ``out``, keeping the rest of the file."""
    from ..files import atomic_write
    from ..video import read_frames
    from .faces import detection_rates, markdown as faces_markdown, update_section

    work = Path(work) if work else default_work()
    data = Path(data) if data else synthetic_data(work)
    videos = sorted((data / "VideoFlash").glob("*.flv"))[: max(1, frames // 3)]
    synthetic = [frame for video in videos for frame in read_frames(video, 3)]
    rows = detection_rates(synthetic)
    atomic_write(out, update_section(out, faces_markdown(rows, command)))
    return rows


def run_real_bench(real_dir, out="BENCHMARKS.md", work=None, command: str = "emolib bench --real DIR") -> dict:
    """Speech detection on real speech and room noise, and VP6 decoding (``bench.real``), written to its section of ``out``."""
    from ..errors import EmolibError
    from ..files import atomic_write
    from . import real

    if not any(real.real_clips(real_dir).values()):
        raise EmolibError(f"--real {real_dir}: no ravdess/Actor_NN/*.flac or cremad/VideoFlash, cremad/AudioMP3 recordings there")
    work = Path(work) if work else default_work() / "real"
    results = {"speech": real.speech_rows(real_dir, work), "decoding": real.decoding_rows(real_dir, work)}
    atomic_write(out, real.update_section(out, real.markdown(results["speech"], results["decoding"], command, machine())))
    return results


def run_fast_real_bench(real_dir, out="BENCHMARKS.md", work=None, command: str = "emolib bench --fast-real DIR", size: str = "full",
                        per_actor: int = 12) -> dict:
    """The fast voice files against eager on real RAVDESS speech (``bench.fastreal``), written to its section of ``out``."""
    from ..errors import EmolibError
    from ..files import atomic_write
    from . import fastreal

    if not fastreal.ravdess_clips(real_dir, per_actor):
        raise EmolibError(f"--fast-real {real_dir}: no ravdess/Actor_NN/*.flac recordings there")
    work = Path(work) if work else default_work()
    results = fastreal.measure(full_size_models(work / "full-size", size), real_dir, per_actor)
    atomic_write(out, fastreal.update_section(out, fastreal.markdown(results, command, machine())))
    return results


def run_annotate_bench(out="BENCHMARKS.md", models=None, data=None, work=None, command: str = "emolib bench --annotate", videos: int = 6) -> list[dict]:
    """Measure ``emolib annotate`` with 1 and 2 model actors, Haar and BlazeFace front ends on the same weights (``bench.scaling``), and
    write its section of ``out``."""
    import ray

    from ..errors import EmolibError
    from ..files import atomic_write
    from ..infer.annotate import quiet_ray, require_scale
    from . import scaling

    if models is None:
        raise EmolibError("--annotate needs --models (trained checkpoints, e.g. work/models of `make demo`)")
    require_scale()
    work = Path(work) if work else default_work() / "annotate"
    shutil.rmtree(work, ignore_errors=True)
    data = Path(data) if data else synthetic_data(default_work())
    files = scaling.make_videos(data, work / "videos", videos)
    quiet_ray()
    ray.init(ignore_reinit_error=True, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    detectors = (("Haar", "haar"), ("BlazeFace", "blazeface"))
    results = {label: {"runs": [scaling.throughput(files, scaling.with_detector(Path(models), work / f"models-{kind}", kind), work / kind, workers)
                                for workers in (1, 2)]} for label, kind in detectors}
    speed = [scaling.file_speed(files[0], {label: scaling.with_detector(Path(models), work / f"models-{frames}-{kind}", kind, frames)
                                           for label, kind in detectors}) for frames in (scaling.FRAMES, None)]
    atomic_write(out, scaling.update_section(out, scaling.markdown(results, speed, command, os.cpu_count() or 1)))
    return {"throughput": results, "one_file": speed}


def run_stream_bench(out="BENCHMARKS.md", data=None, work=None, command: str = "emolib bench --stream", size: str = "full",
                     seconds: float | None = None) -> list[dict]:
    """Measure the live stream (``bench.streaming``) at hop 1 s and 0.5 s with the full-size models, and write its section of ``out``."""
    from ..files import atomic_write
    from ..infer.predictor import Predictor
    from . import streaming

    work = Path(work) if work else default_work()
    data = Path(data) if data else synthetic_data(work)
    video = streaming.stream_video(data, work / "stream", seconds or streaming.SECONDS)
    predictor = Predictor.from_dir(full_size_models(work / "full-size", size))
    audio, frame = live_inputs(0)
    predictor.predict(audio, 16000, frame)  # the fast path is built or loaded before anything is timed
    rows = [streaming.measure(predictor, video, hop) for hop in streaming.HOPS]
    atomic_write(out, streaming.update_section(out, streaming.markdown(rows, command, machine(), fast_variants(predictor))))
    return rows


def run_recipe_bench(out="BENCHMARKS.md", recipe: str = "best", work=None, runs: int = 20, threads: int | None = None,
                     command: str | None = None, size: str = "full") -> dict:
    """Live latency (``latency.live_latency``) of full-size random-init models made as ``recipe`` makes them, eager vs fast,
    written to its section of ``out`` (``bench.recipe``)."""
    from ..files import atomic_write
    from ..infer.predictor import Predictor
    from . import recipe as recipe_section

    work = Path(work) if work else default_work()
    models = full_size_models(work / f"full-size-{recipe}", size, recipe)
    eager, fast = Predictor.from_dir(models, fast=False), Predictor.from_dir(models, threads=threads)
    live = live_latency(eager, fast, runs)
    section = recipe_section.markdown(recipe, live, fast_variants(fast), command or f"emolib bench --recipe {recipe}", machine(),
                                      fast_build_records(models))
    atomic_write(Path(out), recipe_section.update_section(out, section))
    return {"live": live, "fast": fast.fast.describe() if fast.fast else {}}


def fast_variants(predictor) -> str:
    """What ``predictor`` runs each encoder with, e.g. "voice int8, face fp32", or "eager"."""
    return ", ".join(f"{kind} {variant}" for kind, variant in predictor.fast.describe().items()) if predictor.fast else "eager"

