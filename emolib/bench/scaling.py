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
WINDOW, HOP = 4.0, 1.0
FRAMES = 16  # frames per window of the per-file comparison: the best recipe's and the starter's
PROBABILITY_COLUMNS = ("prob_", "voice_", "face_", "fusion_")


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


def file_speed(video: Path, models: dict, runs: int = 2) -> dict:
    """One process, one file, every front end of ``models`` ({label: models folder}) per window (each window detects and embeds
    its own frames, as annotate did before windows shared frames) and with shared frames (now): seconds (best of ``runs``,
    alternated), frames detected, and the largest difference of the rows' probabilities, shared vs per window."""
    from ..infer.predictor import Predictor
    from ..infer.timeline import speech_threshold_of, timeline_inputs, timeline_rows

    predictors = {label: Predictor.from_dir(folder, threads=1) for label, folder in models.items()}
    results, tables = {}, {}
    for attempt in range(runs):
        for label, predictor in predictors.items():
            for share in (False, True):
                started = time.perf_counter()
                inputs = timeline_inputs(video, None, WINDOW, HOP, predictor.face_settings.frames, speech_threshold_of(predictor))
                decoded = time.perf_counter() - started
                table = timeline_rows(predictor, inputs, progress=False, share_frames=share)
                seconds = time.perf_counter() - started
                key = (label, share)
                if key not in results or seconds < results[key]["seconds"]:
                    frames = sum(len(ids) for ids in inputs.frame_ids)
                    results[key] = {"seconds": seconds, "decode": decoded, "audio_seconds": inputs.seconds, "windows": len(inputs.starts),
                                    "detected": len({n for ids in inputs.frame_ids for n in ids}) if share else frames}
                tables[key] = table
    for label in predictors:
        columns = [column for column in tables[(label, True)].columns if column.startswith(PROBABILITY_COLUMNS) and not column.endswith("_pred")]
        difference = np.nanmax(np.abs(tables[(label, True)][columns].to_numpy(float) - tables[(label, False)][columns].to_numpy(float)))
        results[(label, True)]["max_diff"] = float(difference)
        results[(label, True)]["same_labels"] = tables[(label, True)]["label"].tolist() == tables[(label, False)]["label"].tolist()
    return {"frames": next(iter(predictors.values())).face_settings.frames, "paths": results}


def with_detector(models: Path, folder: Path, kind: str, frames: int | None = None) -> Path:
    """A copy of the models folder whose face settings use the ``kind`` detector (BlazeFace with aligned crops, or Haar with
    box crops) and ``frames`` frames per window (None: as stored); the weights are the same, so only the front end differs."""
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
            if frames is not None:
                face["frames"] = frames
        if config.get("voice_checkpoint"):
            config.update(voice_checkpoint="../voice", face_checkpoint="../face")
        (folder / name / CONFIG_FILE).write_text(json.dumps(config, indent=2))
    return folder


def markdown(results: dict, speed: list[dict], command: str, cpus: int) -> str:
    """The BENCHMARKS.md section: per detector, the Ray throughput table and efficiency; then one process on one file, per window
    and with shared frames, for each frames-per-window setting of ``speed`` (``file_speed``'s results); and the cluster estimate."""
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
    first = next(iter(speed[0]["paths"].values()))
    lines += [f"One process, one thread, one file ({first['audio_seconds']:.0f} s of audio, {first['windows']} windows; best of 2 alternated runs): "
              "each window on its own (as annotate ran before windows shared frames: every window detects and embeds its frames) "
              "and with shared frames (now: a frame that several windows hold is detected once, and each face crop embedded once). "
              "The rows of both are compared.", "",
              "| frames per window | face detector | windows | frames detected | decode s | total s | audio s per wall s | vs Haar per window | "
              "max prob. diff vs per window |", "| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    ratios = {}
    for setting in speed:
        paths = setting["paths"]
        base = paths[("Haar", False)]
        for (label, share), path in paths.items():
            ratio = base["seconds"] / path["seconds"]
            ratios[(setting["frames"], label, share)] = ratio
            diff = f"{path['max_diff']:.1e}" + ("" if path["same_labels"] else " (labels differ)") if share else ""
            lines.append(f"| {setting['frames']} | {label}, {'shared frames' if share else 'per window'} | {path['windows']} | {path['detected']} | "
                         f"{path['decode']:.2f} | {path['seconds']:.2f} | {path['audio_seconds'] / path['seconds']:.1f} | {ratio:.2f}x | {diff} |")
    lines.append("")
    for setting in speed:
        ratio = ratios[(setting["frames"], "BlazeFace", True)]
        lines.append(f"- {setting['frames']} frames per window: BlazeFace with shared frames / Haar per window: **{ratio:.2f}x** "
                     f"(goal 2x: {'met' if ratio >= 2 else 'not met'}).")
    best = max((path["audio_seconds"] / path["seconds"] for path in speed[0]["paths"].values()))
    per_worker = max(result["runs"][-1]["throughput"] for result in results.values()) / 2
    lines += ["", f"The timed Ray runs include each actor's start-up (importing torch and loading the models once) and Ray's scheduling, "
              f"which a longer archive amortises: per actor, the measured {per_worker:.2f} audio s per wall s is a lower bound and "
              f"{best:.1f} (one process above) an upper one. On paper (not measured): N nodes with W actors each run at about N x W x that "
              f"(1,000 hours of audio on 10 nodes of 16 actors: {1000 * 3600 / (160 * best) / 3600:.1f} to "
              f"{1000 * 3600 / (160 * per_worker) / 3600:.1f} h), as long as decoding and reading the files keep up.", END]
    return "\n".join(lines)


def update_section(path, section: str) -> str:
    """``path``'s text with this section replaced (or appended)."""
    return replace_section(path, section, START, END)
