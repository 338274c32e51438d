"""Index a CREMA-D tree (AudioWAV/, VideoFlash/, or Kaggle's flat copies) into a manifest table.

One row per clip stem: its parsed name, label, absolute audio and video paths ('' when
a side is missing), actor demographics and an actor-disjoint split.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..cremad import EMOTIONS, asset_path, load_demographics, try_parse_name
from ..errors import DataError
from ..files import atomic_path
from .defects import find_defects
from .splits import DEFAULT_FOLDS, DEFAULT_PROTOCOL, SPLITS, UNKNOWN_SEX, assign_splits

MANIFEST_COLUMNS = [
    "stem", "actor", "sentence", "emotion", "level", "label", "audio_path", "video_path",
    "split", "age", "sex", "race", "ethnicity",
]
INT_COLUMNS = ("actor", "label")
FLOAT_COLUMNS = ("age",)
DEMOGRAPHIC_COLUMNS = ("age", "sex", "race", "ethnicity")
AUDIO_SUFFIXES = (".wav", ".flac")
VIDEO_SUFFIXES = (".flv", ".mp4")
AUDIO_FOLDER = "AudioWAV"
VIDEO_FOLDER = "VideoFlash"
DEMOGRAPHICS_FILE = "VideoDemographics.csv"
SEARCH_DEPTH = 2
KAGGLE_INPUT = Path("/kaggle/input")
KAGGLE_DATA_GLOBS = (
    "cremad", "crema-d", "cremad/AudioWAV", "crema-d/AudioWAV", "*/AudioWAV", "*/*/AudioWAV", "*/*/*/AudioWAV",
)
KAGGLE_VIDEO_GLOBS = ("*/VideoFlash", "*/*/VideoFlash", "*/*/*/VideoFlash")
EXAMPLES = 5
EXPECTED = "ACTOR_SENTENCE_EMOTION_LEVEL names, e.g. AudioWAV/1001_DFA_ANG_XX.wav or VideoFlash/1001_DFA_ANG_XX.flv"


@dataclass
class IndexResult:
    """What index_dataset found: the manifest plus everything it left out or could not pair."""

    manifest: pd.DataFrame
    foreign: list[str] = field(default_factory=list)
    unpaired_audio: list[str] = field(default_factory=list)
    unpaired_video: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    defects: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["stem", "modality", "reason"]))
    roots: dict = field(default_factory=dict)


@dataclass
class _Scan:
    clips: dict = field(default_factory=dict)
    foreign: list = field(default_factory=list)
    duplicates: list = field(default_factory=list)


def index_dataset(data=None, video_dir=None, fold=None, folds=DEFAULT_FOLDS, seed=0, demographics=None, protocol: str = DEFAULT_PROTOCOL) -> IndexResult:
    """Scan a CREMA-D tree and build its manifest (rows sorted by stem, columns MANIFEST_COLUMNS).

    ``data`` holds AudioWAV/ (or the audio files themselves, up to two folders deep); when None,
    common Kaggle locations under KAGGLE_INPUT are tried. Videos come from ``video_dir``, else
    DATA/VideoFlash/ (or its sibling when DATA is AudioWAV/), else DATA itself. Demographics come
    from ``demographics``, else DATA/VideoDemographics.csv, else the packaged table.
    ``fold`` (0-based) selects a fold of ``protocol`` ("default": k-fold splits of ``folds``;
    "hicmae": the published 5-fold partition, ``splits.hicmae_actors``) instead of train/val/test.
    A clip without an audio file takes its audio from its video's audio track, when it has one
    (as CREMA-D's FLVs do). ``result.defects`` lists the known release defects found here.
    """
    if data is None:
        data, found_video_dir = find_kaggle_data()
        video_dir = video_dir or found_video_dir
    data = _existing_folder(data)
    audio_root = _audio_root(data)
    video_root = _existing_folder(video_dir) if video_dir else _video_root(data)
    audio = _scan(audio_root, AUDIO_SUFFIXES)
    video = _scan(video_root, VIDEO_SUFFIXES)
    if video_dir and not video.clips:
        raise DataError(f"{video_root}: no CREMA-D videos found (expected {EXPECTED})")
    if not audio.clips and not video.clips:
        foreign = audio.foreign + video.foreign
        seen = f"; found {len(foreign)} other media files{_examples(foreign)}" if foreign else ""
        raise DataError(f"{data}: no CREMA-D clips found (expected {EXPECTED}){seen}")
    demographics_file = _demographics_file(data, demographics)
    manifest = _join_demographics(_audio_from_videos(_pair(audio.clips, video.clips)), demographics_file)
    try:
        manifest = assign_splits(manifest, fold=fold, folds=folds, seed=seed, protocol=protocol)[MANIFEST_COLUMNS]
    except DataError as error:
        raise DataError(f"{data}: {error}") from None
    return IndexResult(
        manifest=manifest,
        foreign=sorted(set(audio.foreign + video.foreign)),
        unpaired_audio=sorted(set(audio.clips) - set(video.clips)),
        unpaired_video=sorted(set(video.clips) - set(audio.clips)),
        duplicates=sorted(audio.duplicates + video.duplicates),
        defects=find_defects(manifest),
        roots={
            "data": str(data),
            "audio": str(audio_root),
            "video": str(video_root) if video.clips else "",
            "demographics": str(demographics_file or asset_path(DEMOGRAPHICS_FILE)),
            "fold": fold,
            "folds": folds,
            "seed": seed,
            "protocol": protocol,
        },
    )


def find_kaggle_data() -> tuple[Path, Path | None]:
    """The CREMA-D data folder (and video folder, if found) under KAGGLE_INPUT; DataError if none."""
    for pattern in KAGGLE_DATA_GLOBS:
        for candidate in sorted(KAGGLE_INPUT.glob(pattern)):
            if candidate.is_dir() and _scan(_audio_root(candidate), AUDIO_SUFFIXES).clips:
                return candidate, None if _video_root(candidate) != candidate else _find_kaggle_videos()
    raise DataError(f"no CREMA-D audio found under {KAGGLE_INPUT}; pass DATA, the folder holding AudioWAV/ or the .wav files")


def summarize(result) -> str:
    """A compact, human-readable summary of an IndexResult or a manifest DataFrame."""
    df = result.manifest if isinstance(result, IndexResult) else result
    has_audio, has_video = (df[column].fillna("").astype(str) != "" for column in ("audio_path", "video_path"))
    emotions = df["emotion"].value_counts()
    sexes = df.drop_duplicates("actor")["sex"].fillna(UNKNOWN_SEX).value_counts().sort_index()
    lines = [
        f"clips: {len(df)} ({int((has_audio & has_video).sum())} with audio and video), actors: {df['actor'].nunique()}",
        "emotions: " + ", ".join(f"{emotion} {int(emotions.get(emotion, 0))}" for emotion in EMOTIONS),
        "actors by sex: " + ", ".join(f"{sex} {count}" for sex, count in sexes.items()),
        f"unpaired: {int((has_audio & ~has_video).sum())} audio-only, {int((has_video & ~has_audio).sum())} video-only",
    ]
    if isinstance(result, IndexResult):
        lines.insert(0, f"audio: {result.roots.get('audio') or '-'}; video: {result.roots.get('video') or '-'}")
        lines.append(f"foreign names ignored: {len(result.foreign)}{_examples(result.foreign)}")
        if result.duplicates:
            lines.append(f"duplicate files ignored: {len(result.duplicates)}{_examples(result.duplicates)}")
        if len(result.defects):
            lines.append(f"known CREMA-D release defects here: {len(result.defects)} (left out of training and evaluation "
                         f"unless --include-defective)")
            lines += [f"  {row.stem} {row.modality}: {row.reason}" for row in result.defects.itertuples(index=False)]
    lines.append("splits: " + "; ".join(_split_summary(df, split) for split in _split_names(df)))
    return "\n".join(lines)


def write_manifest(df: pd.DataFrame, path) -> Path:
    """Write ``df`` as CSV atomically (``files.atomic_path``); return the path."""
    _check_columns(df, path)
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path}: is a folder; give a file name for the manifest, e.g. {path / 'manifest.csv'}")
    columns = MANIFEST_COLUMNS + [column for column in df.columns if column not in MANIFEST_COLUMNS]
    with atomic_path(path) as temp:
        df[columns].to_csv(temp, index=False, float_format="%g")
    return path


def load_manifest(path) -> pd.DataFrame:
    """Read a manifest CSV back: ints for actor/label, float age, str elsewhere ('' for a missing path)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: manifest not found (create one with `emolib index DATA --out {path}`)")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: not a manifest CSV ({str(error).strip().splitlines()[0]})") from None
    _check_columns(df, path)
    try:
        for column in INT_COLUMNS:
            df[column] = df[column].astype("int64")
    except ValueError:
        raise DataError(f"{path}: column '{column}' must hold integers") from None
    for column in FLOAT_COLUMNS:
        df[column] = pd.to_numeric(df[column], errors="coerce").astype("float64")
    return df


def _check_columns(df: pd.DataFrame, path) -> None:
    missing = [column for column in MANIFEST_COLUMNS if column not in df.columns]
    if missing:
        raise DataError(f"{path}: not a manifest, missing columns {', '.join(missing)}")


def _existing_folder(folder) -> Path:
    path = Path(folder).expanduser().absolute()
    if not path.exists():
        raise DataError(f"{path}: folder not found")
    if not path.is_dir():
        raise DataError(f"{path}: not a folder")
    return path


def _audio_root(data: Path) -> Path:
    return data / AUDIO_FOLDER if (data / AUDIO_FOLDER).is_dir() else data


def _video_root(data: Path) -> Path:
    for candidate in (data / VIDEO_FOLDER, data.parent / VIDEO_FOLDER if data.name == AUDIO_FOLDER else None):
        if candidate is not None and candidate.is_dir():
            return candidate
    return data


def _find_kaggle_videos() -> Path | None:
    for pattern in KAGGLE_VIDEO_GLOBS:
        for candidate in sorted(KAGGLE_INPUT.glob(pattern)):
            if candidate.is_dir() and _scan(candidate, VIDEO_SUFFIXES).clips:
                return candidate
    return None


def _scan(root: Path, suffixes: tuple[str, ...], depth: int = SEARCH_DEPTH) -> _Scan:
    """CREMA-D files under ``root`` (up to ``depth`` folders down), keyed by stem; shallowest copy wins."""
    scan, found = _Scan(), {}
    for path, level in _list_files(str(root), depth):
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


def _list_files(root: str, depth: int, level: int = 0):
    try:
        entries = list(os.scandir(root))
    except OSError:
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_file():
            yield entry.path, level
        elif entry.is_dir() and level < depth:
            yield from _list_files(entry.path, depth, level + 1)


def _pair(audio: dict, video: dict) -> pd.DataFrame:
    rows = []
    for stem in sorted(set(audio) | set(video)):
        clip, audio_path = audio.get(stem, (None, ""))
        video_clip, video_path = video.get(stem, (None, ""))
        clip = clip or video_clip
        rows.append({
            "stem": stem, "actor": clip.actor, "sentence": clip.sentence, "emotion": clip.emotion,
            "level": clip.level, "label": clip.label, "audio_path": audio_path, "video_path": video_path,
        })
    return pd.DataFrame(rows).astype({"actor": "int64", "label": "int64"})


def _audio_from_videos(manifest: pd.DataFrame) -> pd.DataFrame:
    """Clips without an audio file take their video's audio track (CREMA-D's FLVs carry one) when it has one."""
    from ..media import stream_kinds

    missing = (manifest["audio_path"] == "") & (manifest["video_path"] != "")
    with_track = [index for index in manifest.index[missing] if "audio" in stream_kinds(manifest.at[index, "video_path"])]
    manifest.loc[with_track, "audio_path"] = manifest.loc[with_track, "video_path"]
    return manifest


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


def _split_names(df: pd.DataFrame) -> list[str]:
    present = [split for split in df["split"].dropna().unique() if split]
    return [split for split in SPLITS if split in present] + sorted(set(present) - set(SPLITS))


def _split_summary(df: pd.DataFrame, split: str) -> str:
    rows = df[df["split"] == split]
    return f"{split} {rows['actor'].nunique()} actors / {len(rows)} clips"


def _examples(names: list[str]) -> str:
    if not names:
        return ""
    more = ", ..." if len(names) > EXAMPLES else ""
    return " (e.g. " + ", ".join(names[:EXAMPLES]) + more + ")"
