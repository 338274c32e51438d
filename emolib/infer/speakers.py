"""Speakers of an ``emolib annotate`` list, and each speaker's eGeMAPS statistics over all of their files.

An eGeMAPS voice model standardises a window's functionals by its speaker's statistics (``egemaps.SpeakerStats``): by
default a file's own running estimate over its speech windows, as ``emolib timeline`` and the stream do. A CSV or Parquet
list with a ``speaker`` column says which files share a speaker: then each speaker's statistics are measured first, over
the speech windows of all of their files (Ray tasks), and every window of those files is standardised by them.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from ..audio import MIN_SECONDS, SAMPLE_RATE
from ..egemaps import FEATURES, SpeakerStats
from .archive import LIST_SUFFIXES, listed_table

SPEAKER_COLUMN = "speaker"


def listed_speakers(source) -> dict[Path, str]:
    """{absolute path: speaker} of a CSV or Parquet list with a ``speaker`` column ({} for a folder, a glob or a list without one)."""
    path = Path(source)
    if path.suffix.lower() not in LIST_SUFFIXES or not path.is_file():
        return {}
    table, column = listed_table(path)
    if SPEAKER_COLUMN not in table.columns:
        return {}
    speakers = {}
    for item, speaker in zip(table[column], table[SPEAKER_COLUMN]):
        text, who = str(item).strip(), str(speaker).strip()
        if text and who and who.lower() not in ("nan", "none"):
            listed = Path(text)
            speakers[(listed if listed.is_absolute() else path.parent / listed).absolute()] = who
    return speakers


def window_functionals(row: dict, window: float, hop: float, speech_threshold: float | None, min_speech: float) -> dict:
    """Ray task: the raw functionals (n, 88) of a file's speech windows (those the no-speech rule keeps; every window with enough
    audio when the rule is off), as bytes; nothing for a file that cannot be read (its error comes in the main pass)."""
    from ..egemaps import functionals
    from ..errors import EmolibError
    from .timeline import timeline_inputs

    rows = []
    try:
        inputs = timeline_inputs(row["path"], None, window, hop, 0, speech_threshold)
    except (EmolibError, OSError):
        return {**row, "functionals": b""}
    for index, clip in enumerate(inputs.clips):
        if clip is None or len(clip) < MIN_SECONDS * SAMPLE_RATE:
            continue
        if min_speech > 0 and inputs.speech is not None and inputs.speech[index] < min_speech:
            continue
        rows.append(functionals(clip[: int(window * SAMPLE_RATE)]))
    return {**row, "functionals": np.asarray(rows, dtype=np.float32).reshape(-1, FEATURES).tobytes()}


def speaker_statistics(ray, speakers: dict[Path, str], window: float, hop: float, speech_threshold, min_speech: float, cpus: float) -> dict:
    """{speaker: SpeakerStats} over the speech windows of each speaker's files, measured in Ray tasks (one a file)."""
    task = ray.remote(num_cpus=cpus)(window_functionals)
    pending = [task.remote({"path": str(path), "speaker": speaker}, window, hop, speech_threshold, min_speech) for path, speaker in speakers.items()]
    stats: dict[str, SpeakerStats] = {}
    for result in ray.get(pending):
        stats.setdefault(result["speaker"], SpeakerStats()).add(np.frombuffer(result["functionals"], dtype=np.float32).reshape(-1, FEATURES))
    return stats


def group_digest(speaker: str, contents: list[str]) -> str:
    """What a speaker's statistics depend on: the speaker and the content keys of all of their files (a file added, removed or
    changed changes every result of that speaker)."""
    return hashlib.sha256(f"{speaker}:{','.join(sorted(contents))}".encode()).hexdigest()[:12]


class FixedStats(SpeakerStats):
    """A speaker's statistics measured beforehand (``speaker_statistics``): windows are standardised by them, not added to them."""

    @classmethod
    def of(cls, values: dict) -> "FixedStats":
        stats = cls()
        stats.count, stats.mean, stats.squares = int(values["count"]), np.asarray(values["mean"]), np.asarray(values["squares"])
        return stats

    def add(self, values) -> None:
        return None


def as_dict(stats: SpeakerStats) -> dict:
    return {"count": stats.count, "mean": stats.mean.tolist(), "squares": stats.squares.tolist()}
