"""The CREMA-D layout: ``AudioWAV/*.wav`` and ``VideoFlash/*.flv`` (or Kaggle's flat copies), paired by stem.

One row per clip stem: its parsed name, label, absolute audio and video paths ('' when a side is
missing) and the actor's demographics. ``manifest.index_dataset`` adds the split.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..cremad import asset_path, load_demographics, try_parse_name
from ..errors import DataError
from .defects import find_defects
from .scan import AUDIO_SUFFIXES, VIDEO_SUFFIXES, IndexResult, audio_from_videos, examples, existing_folder, is_lfs_pointer, lfs_message, list_files
from .splits import UNKNOWN_SEX

DEMOGRAPHIC_COLUMNS = ("age", "sex", "race", "ethnicity")
AUDIO_FOLDER = "AudioWAV"
MP3_FOLDER = "AudioMP3"  # the release's MP3 copies of the sound: the audio when a tree has no AudioWAV
VIDEO_FOLDER = "VideoFlash"
DEMOGRAPHICS_FILE = "VideoDemographics.csv"
SEARCH_DEPTH = 2
KAGGLE_INPUT = Path("/kaggle/input")
KAGGLE_DATA_GLOBS = (
    "cremad", "crema-d", "cremad/AudioWAV", "crema-d/AudioWAV", "*/AudioWAV", "*/*/AudioWAV", "*/*/*/AudioWAV",
)
KAGGLE_VIDEO_GLOBS = ("*/VideoFlash", "*/*/VideoFlash", "*/*/*/VideoFlash")
EXPECTED = "ACTOR_SENTENCE_EMOTION_LEVEL names, e.g. AudioWAV/1001_DFA_ANG_XX.wav or VideoFlash/1001_DFA_ANG_XX.flv"


@dataclass
class _Scan:
    clips: dict = field(default_factory=dict)
    foreign: list = field(default_factory=list)
    duplicates: list = field(default_factory=list)


def index_cremad(data, video_dir=None, demographics=None) -> IndexResult:
    """Scan a CREMA-D tree (see ``manifest.index_dataset``); the manifest has no split yet. A tree of Git LFS pointer
    files (a zip download of the release repository) is refused in one line saying how to get the media."""
    data = existing_folder(data)
    audio_root = _audio_root(data)
    video_root = existing_folder(video_dir) if video_dir else _video_root(data)
    audio = _scan(audio_root, AUDIO_SUFFIXES + (".mp3",) if audio_root.name == MP3_FOLDER else AUDIO_SUFFIXES)
    video = _scan(video_root, VIDEO_SUFFIXES)
    if video_dir and not video.clips:
        raise DataError(f"{video_root}: no CREMA-D videos found (expected {EXPECTED})")
    if not audio.clips and not video.clips:
        foreign = audio.foreign + video.foreign
        seen = f"; found {len(foreign)} other media files{examples(foreign)}" if foreign else ""
        raise DataError(f"{data}: no CREMA-D clips found (expected {EXPECTED}){seen}; a RAVDESS tree is found by its names, "
                        f"a folder per label needs --layout folders --speaker-pattern RE")
    for found, root in ((audio, audio_root), (video, video_root)):
        pointers = sum(is_lfs_pointer(path) for _, path in found.clips.values())
        if pointers:
            raise DataError(f"{root}: {lfs_message(pointers, len(found.clips), root.name)}")
    demographics_file = _demographics_file(data, demographics)
    manifest = _join_demographics(audio_from_videos(_pair(audio.clips, video.clips)), demographics_file)
    return IndexResult(
        manifest=manifest,
        foreign=sorted(set(audio.foreign + video.foreign)),
        unpaired_audio=sorted(set(audio.clips) - set(video.clips)),
        unpaired_video=sorted(set(video.clips) - set(audio.clips)),
        duplicates=sorted(audio.duplicates + video.duplicates),
        defects=find_defects(manifest),
        roots={"data": str(data), "audio": str(audio_root), "video": str(video_root) if video.clips else "",
               "demographics": str(demographics_file or asset_path(DEMOGRAPHICS_FILE))},
    )


def looks_like_cremad(data: Path) -> bool:
    """True when ``data`` holds a CREMA-D name (AudioWAV/, VideoFlash/ or the files themselves)."""
    return _has_clips(_audio_root(data), AUDIO_SUFFIXES + (".mp3",)) or _has_clips(_video_root(data), VIDEO_SUFFIXES)


def _has_clips(root: Path, suffixes: tuple[str, ...]) -> bool:
    """True at the first file under ``root`` that ``_scan`` would take for a clip."""
    for path, _ in list_files(str(root), SEARCH_DEPTH):
        stem, suffix = os.path.splitext(os.path.basename(path))
        if suffix.lower() in suffixes and "." not in stem and try_parse_name(stem) is not None:
            return True
    return False


def find_kaggle_data() -> tuple[Path, Path | None]:
    """The CREMA-D data folder (and video folder, if found) under KAGGLE_INPUT; DataError if none."""
    for pattern in KAGGLE_DATA_GLOBS:
        for candidate in sorted(KAGGLE_INPUT.glob(pattern)):
            if candidate.is_dir() and _has_clips(_audio_root(candidate), AUDIO_SUFFIXES):
                return candidate, None if _video_root(candidate) != candidate else _find_kaggle_videos()
    raise DataError(f"no CREMA-D audio found under {KAGGLE_INPUT}; pass DATA, the folder holding AudioWAV/ or the .wav files")


def _audio_root(data: Path) -> Path:
    """AudioWAV/, else the release's AudioMP3/ (the same sound as MP3), else ``data`` itself."""
    for folder in (AUDIO_FOLDER, MP3_FOLDER):
        if (data / folder).is_dir():
            return data / folder
    return data


def _video_root(data: Path) -> Path:
    for candidate in (data / VIDEO_FOLDER, data.parent / VIDEO_FOLDER if data.name == AUDIO_FOLDER else None):
        if candidate is not None and candidate.is_dir():
            return candidate
    return data


def _find_kaggle_videos() -> Path | None:
    for pattern in KAGGLE_VIDEO_GLOBS:
        for candidate in sorted(KAGGLE_INPUT.glob(pattern)):
            if candidate.is_dir() and _has_clips(candidate, VIDEO_SUFFIXES):
                return candidate
    return None


def _scan(root: Path, suffixes: tuple[str, ...], depth: int = SEARCH_DEPTH) -> _Scan:
    """CREMA-D files under ``root`` (up to ``depth`` folders down), keyed by stem; shallowest copy wins."""
    scan, found = _Scan(), {}
    for path, level in list_files(str(root), depth):
        stem, suffix = os.path.splitext(os.path.basename(path))
        if suffix.lower() not in suffixes:
            continue
        clip = None if "." in stem else try_parse_name(stem)
        if clip is None:
            scan.foreign.append(os.path.basename(path))
            continue
        rank = (level, suffixes.index(suffix.lower()), path)
        if stem in found:
            scan.duplicates.append(max(rank, found[stem][0])[2])
            rank = min(rank, found[stem][0])
        found[stem] = (rank, clip)
    scan.clips = {stem: (clip, rank[2]) for stem, (rank, clip) in found.items()}
    return scan


def _pair(audio: dict, video: dict) -> pd.DataFrame:
    rows = []
    for stem in sorted(set(audio) | set(video)):
        clip, audio_path = audio.get(stem, (None, ""))
        video_clip, video_path = video.get(stem, (None, ""))
        clip = clip or video_clip
        rows.append({"stem": stem, "actor": clip.actor, "sentence": clip.sentence, "emotion": clip.emotion, "level": clip.level,
                     "audio_path": audio_path, "video_path": video_path})
    return pd.DataFrame(rows).astype({"actor": "int64"})


def _demographics_file(data: Path, override) -> Path | None:
    if override is not None:
        path = Path(override)
        if not path.is_file():
            raise DataError(f"{path}: demographics file not found")
        return path.absolute()
    for folder in (data, data.parent if data.name == AUDIO_FOLDER else None):
        if folder is not None and (folder / DEMOGRAPHICS_FILE).is_file():
            return folder / DEMOGRAPHICS_FILE
    return None


def _join_demographics(df: pd.DataFrame, path: Path | None) -> pd.DataFrame:
    table = load_demographics.__wrapped__(str(path)) if path else load_demographics()
    table = table[~table.index.duplicated()]
    table.index = table.index.astype("int64")
    joined = df.join(table[list(DEMOGRAPHIC_COLUMNS)], on="actor")
    joined["age"] = pd.to_numeric(joined["age"], errors="coerce").astype("float64")
    for column in DEMOGRAPHIC_COLUMNS[1:]:
        joined[column] = joined[column].fillna(UNKNOWN_SEX).astype(str)
    return joined
