"""Intended or perceived labels: the file name's emotion, or CREMA-D's raters' majority vote.

CREMA-D's ``summaryTable.csv`` holds, per clip, the raters' majority vote when they heard the voice
only, saw the face only (silent video) and watched the audio-visual clip. ``--labels perceived``
trains and evaluates each model on the votes of its own modality (voice: voice-only votes, face:
face-only votes, fusion: audio-visual votes). A clip without a single majority (a tie, or no
votes) has no perceived label and is dropped, and counted.
"""
from __future__ import annotations

import pandas as pd

from ..cremad import EMOTIONS, load_votes
from ..errors import DataError

LABEL_SOURCES = ("intended", "perceived")
VOTE_COLUMN = {"voice": "voice", "face": "face", "fusion": "audiovisual", "late": "audiovisual"}
NO_MAJORITY = ""


def perceived_emotions(stems, kind: str) -> list[str]:
    """The raters' single majority emotion of each clip for ``kind``'s modality, or '' (tie or no votes)."""
    votes = load_votes()[VOTE_COLUMN[kind]]
    result = []
    for stem in stems:
        codes = votes.get(stem, frozenset())
        result.append(next(iter(codes)) if len(codes) == 1 else NO_MAJORITY)
    return result


def with_labels(manifest: pd.DataFrame, kind: str, source: str = "intended") -> tuple[pd.DataFrame, int]:
    """``manifest`` labelled for training ``kind`` from ``source``; with "perceived", the clips without a
    majority vote are dropped. Returns (manifest, number of clips dropped)."""
    if source not in LABEL_SOURCES:
        raise ValueError(f"labels must be one of {LABEL_SOURCES}, got {source!r}")
    if source == "intended":
        return manifest, 0
    if len(manifest) and not manifest["stem"].isin(load_votes().index).any():
        raise DataError("--labels perceived: rater votes exist for CREMA-D clips only (summaryTable.csv), and none of these clips is one")
    emotions = perceived_emotions(manifest["stem"], kind)
    out = manifest.assign(emotion=emotions)
    out = out[out["emotion"] != NO_MAJORITY].copy()
    out["label"] = [EMOTIONS.index(emotion) for emotion in out["emotion"]]
    return out.reset_index(drop=True), len(manifest) - len(out)
