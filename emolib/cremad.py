"""CREMA-D vocabulary: emotion labels, clip names, actor demographics and human votes.

A clip name is ``ACTOR_SENTENCE_EMOTION_LEVEL``, e.g. ``1001_DFA_ANG_XX``.
The real metadata (VideoDemographics.csv, summaryTable.csv, SentenceFilenames.csv, and release_files.csv.gz:
every media file of the official release with its SHA-256 and size, read from the release's Git LFS pointers)
ships in ``emolib/assets`` under the ODbL/DbCL licence of CREMA-D.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

from .errors import DataError

EMOTIONS = ("ANG", "DIS", "FEA", "HAP", "NEU", "SAD")
EMOTION_NAMES = {
    "ANG": "anger",
    "DIS": "disgust",
    "FEA": "fear",
    "HAP": "happy",
    "NEU": "neutral",
    "SAD": "sad",
}
VOTE_LETTERS = {"A": "ANG", "D": "DIS", "F": "FEA", "H": "HAP", "N": "NEU", "S": "SAD"}
LEVELS = ("LO", "MD", "HI", "XX")
SENTENCES = {
    "IEO": "It's eleven o'clock",
    "TIE": "That is exactly what happened",
    "IOM": "I'm on my way to the meeting",
    "IWW": "I wonder what this is about",
    "TAI": "The airplane is almost full",
    "MTI": "Maybe tomorrow it will be cold",
    "IWL": "I would like a new alarm clock",
    "ITH": "I think I have a doctor's appointment",
    "DFA": "Don't forget a jacket",
    "ITS": "I think I've seen this before",
    "TSI": "The surface is slick",
    "WSI": "We'll stop in a couple of minutes",
}
NAME_PATTERN = re.compile(
    r"^(?P<actor>\d{4})_(?P<sentence>[A-Z]{3})_(?P<emotion>[A-Z]{3})_(?P<level>[A-Z]{2})$"
)


@dataclass(frozen=True)
class ClipName:
    """The four fields of a CREMA-D clip name."""

    stem: str
    actor: int
    sentence: str
    emotion: str
    level: str

    @property
    def label(self) -> int:
        return EMOTIONS.index(self.emotion)


def parse_name(name: str) -> ClipName:
    """Parse a CREMA-D stem or file name; raise DataError naming it when it is not one."""
    stem = Path(name).stem if "." in name else name
    match = NAME_PATTERN.match(stem)
    if not match:
        raise DataError(f"{name}: not a CREMA-D clip name (expected ACTOR_SENTENCE_EMOTION_LEVEL, e.g. 1001_DFA_ANG_XX)")
    fields = match.groupdict()
    if fields["emotion"] not in EMOTIONS:
        raise DataError(f"{name}: unknown emotion {fields['emotion']!r} (expected one of {', '.join(EMOTIONS)})")
    if fields["sentence"] not in SENTENCES:
        raise DataError(f"{name}: unknown sentence code {fields['sentence']!r} (CREMA-D has {', '.join(SENTENCES)})")
    if fields["level"] not in LEVELS:
        raise DataError(f"{name}: unknown level {fields['level']!r} (expected one of {', '.join(LEVELS)})")
    return ClipName(stem, int(fields["actor"]), fields["sentence"], fields["emotion"], fields["level"])


def try_parse_name(name: str) -> ClipName | None:
    """Like parse_name, but return None for a foreign name."""
    try:
        return parse_name(name)
    except DataError:
        return None


def asset_path(name: str) -> Path:
    """Path of a file shipped in emolib/assets."""
    return Path(str(resources.files("emolib") / "assets" / name))


@lru_cache(maxsize=4)
def load_demographics(path: str | None = None):
    """Actor table (index ``actor``; columns age, sex, race, ethnicity) from VideoDemographics.csv."""
    import pandas as pd

    source = Path(path) if path else asset_path("VideoDemographics.csv")
    try:
        table = pd.read_csv(source)
        table = table.rename(columns={"ActorID": "actor", "Age": "age", "Sex": "sex", "Race": "race", "Ethnicity": "ethnicity"})
        return table.set_index("actor")[["age", "sex", "race", "ethnicity"]]
    except (OSError, KeyError, ValueError) as error:
        raise DataError(f"{source}: not a CREMA-D VideoDemographics.csv ({error})") from None


@lru_cache(maxsize=2)
def load_votes(path: str | None = None):
    """Human majority votes per clip (index ``stem``; columns voice, face, audiovisual).

    Each value is the set of emotion codes that tied for the majority (empty when unknown).
    """
    import pandas as pd

    source = Path(path) if path else asset_path("summaryTable.csv")
    table = pd.read_csv(source, dtype=str, keep_default_na=False)
    columns = {"VoiceVote": "voice", "FaceVote": "face", "MultiModalVote": "audiovisual"}
    votes = table.set_index("FileName")[list(columns)].rename(columns=columns)
    votes.index.name = "stem"
    return votes.apply(lambda column: column.map(_vote_to_codes))


def _vote_to_codes(vote: str) -> frozenset:
    return frozenset(VOTE_LETTERS[letter] for letter in vote.split(":") if letter in VOTE_LETTERS)
