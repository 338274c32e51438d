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


def make_videos(data: Path, folder: Path, count: int) -> list[Path]:
    """``count`` mp4 files (mpeg4 + AAC) of about VIDEO_SECONDS each, from consecutive synthetic clips' frames and speech."""
    import av

    from ..audio import SAMPLE_RATE, load_audio
    from ..video import read_frames_at, video_info

    folder.mkdir(parents=True, exist_ok=True)
    clips = sorted((data / "VideoFlash").glob("*.flv"))
    videos, index = [], 0
    for number in range(count):
        frames, waves = [], []
        while sum(len(wave) for wave in waves) < VIDEO_SECONDS * SAMPLE_RATE:
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
    from ..faces import detect_faces
    from ..infer.inputs import prepare_audio
    from ..infer.predictor import Predictor
    from ..infer.timeline import timeline_inputs, timeline_rows
    from ..transforms import crop_clip

    predictor = Predictor.from_dir(models, threads=1)
    started = time.perf_counter()
    inputs = timeline_inputs(video, None, WINDOW_SECONDS, 1.0, predictor.face_settings.frames)
    parts = {"decode (audio + frames)": time.perf_counter() - started}
    started = time.perf_counter()
    crops = [crop_clip(images, predictor.face_settings, [detect_faces(image, predictor.face_settings.detector) for image in images])[0]
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


def markdown(runs: list[dict], parts: dict, command: str, cpus: int) -> str:
    """The BENCHMARKS.md section: throughput table, efficiency, breakdown, and the cluster estimate."""
    one, two = runs[0], runs[-1]
    efficiency = two["throughput"] / (2 * one["throughput"])
    total = sum(parts["parts"].values())
    lines = [START, "## Archive annotation (`emolib annotate`, Ray Data)", "",
             f"`{command}`, one run on this machine ({cpus} logical CPUs), tiny demo models through the fast path, "
             f"{one['files']} synthetic videos of about {VIDEO_SECONDS:.0f} s (mpeg4 + AAC), 4 s windows every 1 s. "
             "Ray was started before the timed runs; each run decodes in Ray tasks and predicts in model actors of 0.5 CPU each.", "",
             "| model actors | files | audio s | wall s | audio s per wall s |", "| ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {run['workers']} | {run['files']} | {run['audio_seconds']:.0f} | {run['wall_seconds']:.1f} | {run['throughput']:.2f} |" for run in runs]
    lines += ["", f"Scaling efficiency 1 -> 2 actors: {efficiency:.0%} (throughput with 2 / twice the throughput with 1).", "",
              f"Where one file's time goes (one process, one thread; {parts['seconds']:.0f} s of audio, {parts['windows']} windows):", "",
              "| part | seconds | share |", "| --- | ---: | ---: |"]
    lines += [f"| {name} | {value:.2f} | {value / total:.0%} |" for name, value in parts["parts"].items()]
    per_worker = two["throughput"] / 2
    compute = parts["seconds"] / total
    lines += ["", f"In one process the same work runs at {compute:.1f} audio s per wall s; the timed runs include each actor's start-up "
              "(importing torch and loading the models once) and Ray's scheduling, which a longer archive amortises: the measured "
              f"{per_worker:.2f} audio s per wall s per actor is a lower bound, {compute:.1f} an upper one.", "",
              f"On paper (not measured): N nodes with W actors each run at about N x W x ({per_worker:.2f} to {compute:.1f}) audio s per "
              f"wall s (1,000 hours of audio on 10 nodes of 16 actors: {1000 * 3600 / (160 * compute) / 3600:.1f} to "
              f"{1000 * 3600 / (160 * per_worker) / 3600:.1f} h), as long as decoding keeps up. Here decoding is "
              f"{parts['parts']['decode (audio + frames)'] / total:.0%} of one file's work and face detection "
              f"{parts['parts']['face detection + crops'] / total:.0%}, so the model actors are the bottleneck; with full-size encoders "
              "the encoders' share grows, GPU actors (`--gpus-per-worker`) then leave face detection (on the actors' CPU share) and "
              "decoding as the bottleneck, and past them to reading the files (storage bandwidth: each hour of 480x360 video is read once).", END]
    return "\n".join(lines)


def update_section(path, section: str) -> str:
    """``path``'s text with this section replaced (or appended)."""
    return replace_section(path, section, START, END)
