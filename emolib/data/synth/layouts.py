"""Synthetic corpora in two more layouts, from the synthetic CREMA-D clips (``corpus``): RAVDESS, and a folder per label.

Each label borrows the voice and face cues of a CREMA-D emotion (``CUES``), so models learn the
custom labels as they learn CREMA-D's. ``make_synthetic_ravdess`` writes ``Actor_NN/`` folders with
audio-only WAVs (``03-01-...``) and full-AV MP4s (``01-01-...``, MPEG-4 video + AAC audio, muxed by
ffmpeg) of speech, and with ``song`` a full-AV song MP4 per actor and label and no WAV (its sound
comes from the MP4). ``make_synthetic_folders`` writes ``DATA/<label>/<speaker>_<n>.wav`` and a
silent ``.mp4`` beside each, speakers in the names (``--speaker-pattern '^(\\d+)_'``).
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from ...cremad import SENTENCES
from ...errors import DataError
from ...ravdess import EMOTIONS as RAVDESS_EMOTIONS
from ...ravdess import RavdessName, ravdess_file_name
from .corpus import FIRST_ACTOR, _available_cpus, _clip_streams, _progress, _run
from .face import MP4V_TAG, write_flv
from .voice import SAMPLE_RATE

RAVDESS_CUES = {"neutral": "NEU", "calm": "NEU", "happy": "HAP", "sad": "SAD", "angry": "ANG", "fearful": "FEA", "disgust": "DIS",
                "surprised": "HAP"}
CUE_ORDER = ("ANG", "NEU", "SAD", "HAP", "FEA", "DIS")  # the first three differ in voice and in face alike
DEFAULT_RAVDESS_LABELS = ("neutral", "happy", "angry")
DEFAULT_FOLDER_LABELS = ("calm", "cheerful", "irritated")
DEFAULT_SPEAKERS = 6
CLIPS_PER_LABEL = 4
MARKER = "README.txt"
PARALLEL_MIN_CLIPS = 24


def make_synthetic_ravdess(out, actors: int = DEFAULT_SPEAKERS, labels=DEFAULT_RAVDESS_LABELS, seed: int = 0, song: bool = True,
                           workers: int | None = None, progress: bool = True) -> Path:
    """Write a synthetic RAVDESS tree (see the module docstring) with ``actors`` actors (1-24) and the RAVDESS ``labels``."""
    unknown = [label for label in labels if label not in RAVDESS_EMOTIONS]
    if unknown:
        raise DataError(f"{unknown[0]!r} is not a RAVDESS emotion (expected some of {', '.join(RAVDESS_EMOTIONS)})")
    if not 1 <= actors <= 24:
        raise DataError(f"RAVDESS has actors 1-24; got actors={actors}")
    jobs = []
    for actor in range(1, actors + 1):
        for label in labels:
            for index in range(CLIPS_PER_LABEL):
                statement, repetition = f"{index // 2 + 1:02d}", f"{index % 2 + 1:02d}"
                intensity = "strong" if repetition == "02" and label != "neutral" else "normal"
                fields = RavdessName("audio-only", "speech", label, intensity, statement, repetition, actor)
                jobs.append(("ravdess", fields, _cremad_stem(actor, RAVDESS_CUES[label], index, intensity), seed))
            if song:
                fields = RavdessName("audio-video", "song", label, "normal", "01", "01", actor)
                jobs.append(("ravdess-song", fields, _cremad_stem(actor, RAVDESS_CUES[label], CLIPS_PER_LABEL, "normal"), seed))
    return _write(out, jobs, workers, progress, f"Synthetic RAVDESS: NOT real recordings. {actors} actors, labels {', '.join(labels)}, seed {seed}.")


def make_synthetic_folders(out, speakers: int = DEFAULT_SPEAKERS, labels=DEFAULT_FOLDER_LABELS, seed: int = 0, workers: int | None = None,
                           progress: bool = True) -> Path:
    """Write a synthetic folder-per-label tree (see the module docstring) with ``speakers`` speakers and ``labels`` (any names)."""
    if len(labels) > len(CUE_ORDER):
        raise DataError(f"at most {len(CUE_ORDER)} synthetic labels (one per CREMA-D emotion's cues), got {len(labels)}")
    jobs = [("folders", (label, f"{speaker:02d}_{index}"), _cremad_stem(speaker, CUE_ORDER[position], index, "normal"), seed)
            for speaker in range(1, speakers + 1) for position, label in enumerate(labels) for index in range(CLIPS_PER_LABEL)]
    return _write(out, jobs, workers, progress, f"Synthetic folder-per-label corpus: NOT real recordings. {speakers} speakers, labels "
                                                f"{', '.join(labels)}, seed {seed}. Speaker pattern: '^(\\d+)_'.")


def _cremad_stem(speaker: int, emotion: str, index: int, intensity: str) -> str:
    sentence = list(SENTENCES)[index % len(SENTENCES)]
    return f"{FIRST_ACTOR + speaker - 1}_{sentence}_{emotion}_{'HI' if intensity == 'strong' else 'XX'}"


def _write(out, jobs, workers, progress, readme: str) -> Path:
    if shutil.which("ffmpeg") is None and any(job[0] == "ravdess" or job[0] == "ravdess-song" for job in jobs):
        raise DataError("ffmpeg not found: the synthetic RAVDESS MP4s are muxed with it (apt-get install ffmpeg)")
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    (root / MARKER).unlink(missing_ok=True)
    jobs = [(root, *job) for job in jobs]
    if workers is None:
        workers = _available_cpus() if len(jobs) >= PARALLEL_MIN_CLIPS else 1
    for _ in _progress(_run(_write_clip, jobs, workers), len(jobs), progress, f"synthetic {jobs[0][1].split('-')[0]}"):
        pass
    (root / MARKER).write_text(readme + "\nVoices and faces are drawn by emolib.data.synth (see emolib.data.synth.layouts).\n")
    return root


def _write_clip(job) -> str:
    import soundfile

    root, layout, fields, stem, seed = job
    audio, frames = _clip_streams(stem, seed, True)
    if layout == "folders":
        label, name = fields
        folder = root / label
        folder.mkdir(parents=True, exist_ok=True)
        soundfile.write(folder / f"{name}.wav", audio, SAMPLE_RATE, subtype="PCM_16")
        write_flv(folder / f"{name}.mp4", frames, MP4V_TAG)
        return name
    folder = root / f"Actor_{fields.actor:02d}"
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as temp:
        wav, silent = Path(temp) / "audio.wav", Path(temp) / "video.mp4"
        soundfile.write(wav, audio, SAMPLE_RATE, subtype="PCM_16")
        write_flv(silent, frames, MP4V_TAG)
        if layout == "ravdess":
            shutil.copyfile(wav, folder / ravdess_file_name(fields, "audio-only", ".wav"))
        subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(silent), "-i", str(wav), "-c:v", "copy", "-c:a", "aac",
                        "-shortest", str(folder / ravdess_file_name(fields, "audio-video", ".mp4"))], check=True)
    return fields.stem
