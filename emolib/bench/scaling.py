"""How ``emolib annotate`` scales: throughput (audio seconds per wall second) with 1 and 2 model actors on
synthetic videos, the scaling efficiency, where one file's time goes, and what an N-node cluster would do.

Ray is started once before the timed runs (its start-up is not annotation throughput). The section it
writes goes between markers in BENCHMARKS.md, leaving the rest of the file alone.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .report import replace_section

START, END = "<!-- annotate-scaling:start -->", "<!-- annotate-scaling:end -->"
VIDEO_SECONDS = 20.0


def make_videos(data: Path, folder: Path, count: int, seconds: float = VIDEO_SECONDS) -> list[Path]:
    """``count`` mp4 files (mpeg4 + AAC) of about ``seconds`` each, from consecutive synthetic clips' frames and speech."""
    import av

    from ..audio import SAMPLE_RATE, load_audio
    from ..video import read_frames_at, video_info

    folder.mkdir(parents=True, exist_ok=True)
    clips = sorted((data / "VideoFlash").glob("*.flv"))
    videos, index = [], 0
    for number in range(count):
        frames, waves = [], []
        while sum(len(wave) for wave in waves) < seconds * SAMPLE_RATE:
            clip = clips[index % len(clips)]
            index += 1
            total, _ = video_info(clip)
            decoded = read_frames_at(clip, range(total))
            wave = load_audio(data / "AudioWAV" / f"{clip.stem}.wav")
            frames += [decoded[i] for i in sorted(decoded)][: int(len(wave) / SAMPLE_RATE * 30)]
            waves.append(wave)
        path = folder / f"archive{number:02d}.mp4"
        _write_mp4(path, frames, np.concatenate(waves), av)
        videos.append(path)
    return videos


def _write_mp4(path: Path, frames, audio, av) -> None:
    from fractions import Fraction

    with av.open(str(path), "w") as container:
        video = container.add_stream("mpeg4", rate=30)
        video.width, video.height, video.pix_fmt, video.bit_rate = frames[0].shape[1], frames[0].shape[0], "yuv420p", 1_500_000
        sound = container.add_stream("aac", rate=16000)
        sound.layout = "mono"
        for image in frames:
            container.mux(video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(video.encode())
        for start in range(0, len(audio), 1024):
            frame = av.AudioFrame.from_ndarray(audio[None, start : start + 1024].astype(np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = 16000, start, Fraction(1, 16000)
            container.mux(sound.encode(frame))
        container.mux(sound.encode())


def throughput(videos: list[Path], models, work: Path, workers: int) -> dict:
    """One timed ``annotate`` run over ``videos`` with ``workers`` model actors."""
    from ..infer.annotate import annotate

    started = time.perf_counter()
    counts = annotate(videos[0].parent, models, work / f"out-{workers}", workers=workers, progress=False)
    wall = time.perf_counter() - started
    audio_seconds = counts["audio_hours"] * 3600
    return {"workers": workers, "files": counts["annotated"], "audio_seconds": audio_seconds, "wall_seconds": wall,
            "throughput": audio_seconds / wall}


def breakdown(video: Path, models) -> dict:
    """Seconds one process spends on one file: decoding, face detection + crops, the voice and face encoders, the rest."""
    from ..audio import WINDOW_SECONDS
    from ..faces import detect
    from ..infer.inputs import prepare_audio
    from ..infer.predictor import Predictor
    from ..infer.timeline import timeline_inputs, timeline_rows
    from ..transforms import crop_clip

    predictor = Predictor.from_dir(models, threads=1)
    started = time.perf_counter()
    inputs = timeline_inputs(video, None, WINDOW_SECONDS, 1.0, predictor.face_settings.frames)
    parts = {"decode (audio + frames)": time.perf_counter() - started}
    started = time.perf_counter()
    crops = [crop_clip(images, predictor.face_settings, [detect(image, predictor.face_settings.detector) for image in images])[0]
             for images in inputs.images if images]
    parts["face detection + crops"] = time.perf_counter() - started
    started = time.perf_counter()
    for clip in inputs.clips:
        wave = prepare_audio(clip, 16000, predictor.audio_settings)[0]
        if wave is not None:
            predictor.voice_features(wave)
    parts["voice encoder"] = time.perf_counter() - started
    started = time.perf_counter()
    for images in crops:
        predictor.face_features(images)
    parts["face encoder"] = time.perf_counter() - started
    started = time.perf_counter()
    timeline_rows(predictor, inputs, progress=False)
    whole = time.perf_counter() - started
    parts["rest (fusion, bookkeeping)"] = max(0.0, whole - parts["face detection + crops"] - parts["voice encoder"] - parts["face encoder"])
    return {"seconds": inputs.seconds, "windows": len(inputs.starts), "parts": parts}


def with_detector(models: Path, folder: Path, kind: str) -> Path:
    """A copy of the models folder whose face settings use the ``kind`` detector (BlazeFace with aligned crops, or Haar with
    box crops); the weights are the same, so only the front end differs."""
    import json
    import shutil

    from ..models.checkpoint import CONFIG_FILE, find_models

    shutil.rmtree(folder, ignore_errors=True)
    for name, source in find_models(models).items():
        shutil.copytree(source, folder / name, ignore=shutil.ignore_patterns("fast"))
        config = json.loads((folder / name / CONFIG_FILE).read_text())
        face = config.get("preprocessing", {}).get("face")
        if face is not None:
            face["detector"] = {**face.get("detector", {}), "kind": kind}
            face["align"] = kind == "blazeface"
        if config.get("voice_checkpoint"):
            config.update(voice_checkpoint="../voice", face_checkpoint="../face")
        (folder / name / CONFIG_FILE).write_text(json.dumps(config, indent=2))
    return folder


def markdown(results: dict, command: str, cpus: int) -> str:
    """The BENCHMARKS.md section: per detector, the throughput table, efficiency and breakdown, then the comparison and the
    cluster estimate."""
    lines = [START, "## Archive annotation (`emolib annotate`, Ray Data)", "",
             f"`{command}`, one run on this machine ({cpus} logical CPUs), tiny demo models through the fast path, "
             f"{next(iter(results.values()))['runs'][0]['files']} synthetic videos of about {VIDEO_SECONDS:.0f} s (mpeg4 + AAC, 480x360), "
             "4 s windows every 1 s, with the same weights behind two face front ends: Haar with box crops (checkpoints made before "
             "BlazeFace) and BlazeFace with aligned crops (new models). Ray was started before the timed runs; each run decodes in Ray "
             "tasks and predicts in model actors of 0.5 CPU each.", "",
             "| face detector | model actors | files | audio s | wall s | audio s per wall s |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for detector, result in results.items():
        lines += [f"| {detector} | {run['workers']} | {run['files']} | {run['audio_seconds']:.0f} | {run['wall_seconds']:.1f} | "
                  f"{run['throughput']:.2f} |" for run in result["runs"]]
    lines += ["", "Scaling efficiency 1 -> 2 actors (throughput with 2 / twice the throughput with 1): " + "; ".join(
        f"{detector} {result['runs'][-1]['throughput'] / (2 * result['runs'][0]['throughput']):.0%}" for detector, result in results.items()) + ".", ""]
    first = next(iter(results.values()))["parts"]
    lines += [f"Where one file's time goes (one process, one thread; {first['seconds']:.0f} s of audio, {first['windows']} windows):", "",
              "| part | " + " | ".join(f"{detector} s | {detector} share" for detector in results) + " |",
              "| --- |" + " ---: | ---: |" * len(results)]
    names = list(first["parts"])
    totals = {detector: sum(result["parts"]["parts"].values()) for detector, result in results.items()}
    for name in names:
        lines.append(f"| {name} | " + " | ".join(f"{result['parts']['parts'][name]:.2f} | {result['parts']['parts'][name] / totals[detector]:.0%}"
                                                   for detector, result in results.items()) + " |")
    compute = {detector: result["parts"]["seconds"] / totals[detector] for detector, result in results.items()}
    lines.append("| **audio s per wall s, one process** | " + " | ".join(f"**{compute[detector]:.1f}** | " for detector in results) + "|")
    if {"Haar", "BlazeFace"} <= set(results):
        lines += ["", f"Single-process throughput, BlazeFace / Haar: **{compute['BlazeFace'] / compute['Haar']:.2f}x**; with 2 actors: "
                  f"{results['BlazeFace']['runs'][-1]['throughput'] / results['Haar']['runs'][-1]['throughput']:.2f}x."]
    best = max(compute, key=compute.get)
    per_worker = results[best]["runs"][-1]["throughput"] / 2
    lines += ["", f"The timed Ray runs include each actor's start-up (importing torch and loading the models once) and Ray's scheduling, "
              f"which a longer archive amortises: per actor, the measured {per_worker:.2f} audio s per wall s ({best}) is a lower bound and "
              f"{compute[best]:.1f} an upper one. On paper (not measured): N nodes with W actors each run at about N x W x that "
              f"(1,000 hours of audio on 10 nodes of 16 actors: {1000 * 3600 / (160 * compute[best]) / 3600:.1f} to "
              f"{1000 * 3600 / (160 * per_worker) / 3600:.1f} h), as long as decoding and reading the files keep up.", END]
    return "\n".join(lines)


def update_section(path, section: str) -> str:
    """``path``'s text with this section replaced (or appended)."""
    return replace_section(path, section, START, END)
