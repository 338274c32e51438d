"""RAVDESS vocabulary: file names of seven fields, its eight emotions and its actors.

A name is ``MODALITY-CHANNEL-EMOTION-INTENSITY-STATEMENT-REPETITION-ACTOR``, e.g.
``03-01-06-01-02-01-12.wav``: modality 01 full audio-video, 02 video-only, 03 audio-only;
vocal channel 01 speech, 02 song; actors 01-24, odd male, even female. The audio-only WAV
and the full-AV MP4 of one recording share every field but the modality, which pairs them.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .errors import DataError

EMOTIONS = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")
MODALITIES = {"01": "audio-video", "02": "video-only", "03": "audio-only"}
CHANNELS = {"01": "speech", "02": "song"}
INTENSITIES = {"01": "normal", "02": "strong"}
STATEMENTS = {"01": "Kids are talking by the door", "02": "Dogs are sitting by the door"}
ACTORS = range(1, 25)
NAME_PATTERN = re.compile(r"^(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})$")
EXPECTED = "MODALITY-CHANNEL-EMOTION-INTENSITY-STATEMENT-REPETITION-ACTOR names, e.g. Actor_12/03-01-06-01-02-01-12.wav"


@dataclass(frozen=True)
class RavdessName:
    """The seven fields of a RAVDESS file name; ``stem`` leaves out the modality, so both files of a recording share it."""

    modality: str
    channel: str
    emotion: str
    intensity: str
    statement: str
    repetition: str
    actor: int

    @property
    def stem(self) -> str:
        return "-".join([self.channel_code, f"{EMOTIONS.index(self.emotion) + 1:02d}", self.intensity_code,
                         self.statement, self.repetition, f"{self.actor:02d}"])

    @property
    def channel_code(self) -> str:
        return next(code for code, name in CHANNELS.items() if name == self.channel)

    @property
    def intensity_code(self) -> str:
        return next(code for code, name in INTENSITIES.items() if name == self.intensity)

    @property
    def sex(self) -> str:
        return "Male" if self.actor % 2 else "Female"


def parse_ravdess_name(name: str) -> RavdessName:
    """Parse a RAVDESS file name or stem; DataError naming it when it is not one."""
    stem = Path(name).stem if "." in name else name
    match = NAME_PATTERN.match(stem)
    if not match:
        raise DataError(f"{name}: not a RAVDESS name (expected {EXPECTED})")
    modality, channel, emotion, intensity, statement, repetition, actor = match.groups()
    checks = ((modality, MODALITIES, "modality"), (channel, CHANNELS, "vocal channel"), (intensity, INTENSITIES, "intensity"),
              (statement, STATEMENTS, "statement"))
    for value, known, what in checks:
        if value not in known:
            raise DataError(f"{name}: unknown {what} {value!r} (expected one of {', '.join(known)})")
    if not 1 <= int(emotion) <= len(EMOTIONS):
        raise DataError(f"{name}: unknown emotion {emotion!r} (expected 01-{len(EMOTIONS):02d})")
    if int(actor) not in ACTORS:
        raise DataError(f"{name}: actor {actor} out of range (RAVDESS has actors 01-24)")
    return RavdessName(MODALITIES[modality], CHANNELS[channel], EMOTIONS[int(emotion) - 1], INTENSITIES[intensity], statement,
                       repetition, int(actor))


def try_parse_ravdess_name(name: str) -> RavdessName | None:
    """Like parse_ravdess_name, but None for a foreign name."""
    try:
        return parse_ravdess_name(name)
    except DataError:
        return None


def ravdess_file_name(fields: RavdessName, modality: str, suffix: str) -> str:
    """The file name of ``fields``' recording in ``modality`` ("audio-video", "video-only", "audio-only")."""
    code = next(code for code, name in MODALITIES.items() if name == modality)
    return f"{code}-{fields.stem}{suffix}"
