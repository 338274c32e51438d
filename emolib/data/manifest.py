"""The manifest: one row per clip, from any corpus layout, in one general format.

On disk (CSV or Parquet) a manifest has the columns ``audio``, ``video`` (either may be empty for a
one-modality clip), ``label``, ``speaker`` (splits stay speaker-disjoint), optional ``stem`` and
``split``, and any extra columns, which are kept (CREMA-D's sentence, level and demographics,
RAVDESS's channel and intensity, your own). Relative paths are relative to the manifest's folder.
In memory, ``load_manifest`` gives the working table the pipeline uses: ``stem``, ``actor`` (the
speaker), ``emotion`` (the label name), ``label`` (its index in the label set), ``audio_path``,
``video_path``, ``split`` and the extra columns.

``index_dataset`` writes that table from three layouts: CREMA-D (``cremad_tree``), RAVDESS and a
folder per label (``layouts``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError
from ..files import atomic_path
from ..labels import encode_labels, label_order
from .cremad_tree import find_kaggle_data, index_cremad, looks_like_cremad
from .layouts import index_folders, index_ravdess, looks_like_ravdess
from .scan import IndexResult, examples, existing_folder
from .splits import DEFAULT_FOLDS, DEFAULT_PROTOCOL, SPLITS, UNKNOWN_SEX, assign_splits

MANIFEST_COLUMNS = ["stem", "actor", "emotion", "label", "audio_path", "video_path", "split"]
FILE_COLUMNS = {"stem": "stem", "actor": "speaker", "emotion": "label", "audio_path": "audio", "video_path": "video", "split": "split"}
REQUIRED_FILE_COLUMNS = ("audio", "video", "label", "speaker")
LEGACY_COLUMNS = {"actor": "speaker", "emotion": "label", "audio_path": "audio", "video_path": "video"}  # manifests of emolib < 0.3
WORKING_ONLY_COLUMNS = ("actor", "emotion", "audio_path", "video_path")  # extra columns may not take these names
FLOAT_COLUMNS = ("age",)
LAYOUTS = ("auto", "cremad", "ravdess", "folders")
PARQUET_SUFFIXES = (".parquet", ".pq")

__all__ = ["IndexResult", "index_dataset", "load_manifest", "write_manifest", "summarize", "find_kaggle_data", "MANIFEST_COLUMNS"]


def index_dataset(data=None, video_dir=None, fold=None, folds=DEFAULT_FOLDS, seed=0, demographics=None, protocol: str = DEFAULT_PROTOCOL,
                  layout: str = "auto", speaker_pattern: str | None = None, labels=None) -> IndexResult:
    """Scan a corpus tree and build its manifest (the working table, rows sorted by stem).

    ``layout``: "cremad" (``cremad_tree.index_cremad``: ``data`` holds AudioWAV/ or the files; None
    looks under /kaggle/input; ``video_dir`` and ``demographics`` as there), "ravdess"
    (``layouts.index_ravdess``), "folders" (``layouts.index_folders`` with ``speaker_pattern``), or
    "auto": CREMA-D names, else RAVDESS names, else a folder per label. ``fold`` (0-based) selects a
    fold of ``protocol`` instead of train/val/test. ``labels`` overrides the label order (a list or
    "a,b,c"). ``result.defects`` lists the known CREMA-D release defects found here.
    """
    if layout not in LAYOUTS:
        raise DataError(f"unknown layout {layout!r} (expected one of {', '.join(LAYOUTS)})")
    if data is None:
        data, found_video_dir = find_kaggle_data()
        video_dir, layout = video_dir or found_video_dir, "cremad"
    layout = detect_layout(data, video_dir, speaker_pattern) if layout == "auto" else layout
    if layout == "cremad":
        result = index_cremad(data, video_dir, demographics)
    elif layout == "ravdess":
        result = index_ravdess(data)
    else:
        result = index_folders(data, speaker_pattern)
    manifest = normalize_speakers(result.manifest)
    try:
        try:
            manifest = assign_splits(manifest, fold=fold, folds=folds, seed=seed, protocol=protocol)
        except DataError as error:
            if fold is not None or protocol != DEFAULT_PROTOCOL:  # a split that was asked for
                raise
            # a manifest needs no split: too few speakers for one is said here and again where a split is used (training)
            manifest = manifest.assign(split="")
            result.roots["split_note"] = f"no splits ({error}): assigned where they are used"
        manifest = with_label_set(manifest, labels)
    except DataError as error:
        raise DataError(f"{result.roots.get('data', data)}: {error}") from None
    result.manifest = _ordered(manifest)
    result.roots.update(layout=layout, fold=fold, folds=folds, seed=seed, protocol=protocol)
    return result


def detect_layout(data, video_dir=None, speaker_pattern: str | None = None) -> str:
    """"cremad", "ravdess" or "folders": what the names under ``data`` look like. A tree of neither corpus is
    a folder per label when a speaker pattern is given, else CREMA-D (whose error then lists what was found).
    A speaker pattern on a tree of CREMA-D or RAVDESS names is ambiguous: DataError asking for --layout."""
    folder = existing_folder(data)
    found = "cremad" if video_dir or looks_like_cremad(folder) else "ravdess" if looks_like_ravdess(folder) else None
    if found and speaker_pattern:
        raise DataError(f"{folder}: --speaker-pattern is for a folder per label, but these names look like {found}; pass --layout folders "
                        f"(labels from the folders) or --layout {found} (labels from the names, without --speaker-pattern)")
    return found or ("folders" if speaker_pattern else "cremad")


def with_label_set(manifest: pd.DataFrame, labels=None, where: str = "labels") -> pd.DataFrame:
    """``manifest`` with its ``label`` column encoded against the label set of its ``emotion`` names (``labels.label_order``)."""
    return encode_labels(manifest, label_order(manifest["emotion"], labels, where), where)


def label_set(manifest: pd.DataFrame) -> tuple[str, ...]:
    """The label set a manifest is encoded with: its names ordered by their ``label`` index."""
    pairs = manifest[["label", "emotion"]].drop_duplicates().sort_values("label")
    return tuple(pairs["emotion"].astype(str))


def normalize_speakers(manifest: pd.DataFrame) -> pd.DataFrame:
    """The ``actor`` column as int64 when every speaker is a whole number, else as text."""
    speakers = manifest["actor"].astype(str).str.strip()
    if (speakers == "").any():
        first = manifest.index[speakers == ""][0]
        raise DataError(f"{int((speakers == '').sum())} clips have no speaker (e.g. row {first + 2}, "
                        f"{manifest.at[first, 'stem'] if 'stem' in manifest else ''})")
    whole = speakers.str.fullmatch(r"[+-]?\d+").all()
    return manifest.assign(actor=speakers.astype("int64") if whole else speakers)


def summarize(result) -> str:
    """A compact, human-readable summary of an IndexResult or a manifest DataFrame."""
    df = result.manifest if isinstance(result, IndexResult) else result
    has_audio, has_video = (df[column].fillna("").astype(str) != "" for column in ("audio_path", "video_path"))
    emotions = df["emotion"].value_counts()
    sexes = (df.drop_duplicates("actor")["sex"] if "sex" in df else pd.Series(UNKNOWN_SEX, index=df["actor"].unique())).fillna(UNKNOWN_SEX)
    lines = [
        f"clips: {len(df)} ({int((has_audio & has_video).sum())} with audio and video), speakers: {df['actor'].nunique()}",
        "labels: " + ", ".join(f"{emotion} {int(emotions.get(emotion, 0))}" for emotion in label_set(df)),
        "speakers by sex: " + ", ".join(f"{sex} {count}" for sex, count in sexes.value_counts().sort_index().items()),
        f"unpaired: {int((has_audio & ~has_video).sum())} audio-only, {int((has_video & ~has_audio).sum())} video-only",
    ]
    if isinstance(result, IndexResult):
        lines.insert(0, f"layout: {result.roots.get('layout', '-')}; audio: {result.roots.get('audio') or '-'}; "
                        f"video: {result.roots.get('video') or '-'}")
        lines.append(f"foreign names ignored: {len(result.foreign)}{examples(result.foreign)}")
        if result.duplicates:
            lines.append(f"duplicate files ignored: {len(result.duplicates)}{examples(result.duplicates)}")
        if len(result.defects):
            lines.append(f"known CREMA-D release defects here: {len(result.defects)} (left out of training and evaluation "
                         f"unless --include-defective)")
            lines += [f"  {row.stem} {row.modality}: {row.reason}" for row in result.defects.itertuples(index=False)]
    note = result.roots.get("split_note") if isinstance(result, IndexResult) else None
    lines.append("splits: " + ("; ".join(_split_summary(df, split) for split in _split_names(df)) or note or "none"))
    return "\n".join(lines)


def write_manifest(df: pd.DataFrame, path) -> Path:
    """Write the working table ``df`` in the general format, atomically: Parquet for a .parquet name, else CSV."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path}: is a folder; give a file name for the manifest, e.g. {path / 'manifest.csv'}")
    missing = [column for column in MANIFEST_COLUMNS if column not in df.columns]
    if missing:
        raise DataError(f"{path}: not a manifest table, missing columns {', '.join(missing)}")
    extras = [column for column in df.columns if column not in MANIFEST_COLUMNS]
    table = df[list(FILE_COLUMNS) + extras].rename(columns=FILE_COLUMNS)
    table = table[["stem", "speaker", "label", "audio", "video", "split"] + extras]
    with atomic_path(path) as temp:
        if path.suffix.lower() in PARQUET_SUFFIXES:
            table.to_parquet(temp, index=False)
        else:
            table.to_csv(temp, index=False, float_format="%g")
    return path


def load_manifest(path, labels=None) -> pd.DataFrame:
    """Read a manifest (CSV or Parquet, general format) into the working table; ``labels`` overrides the label order.

    DataError with one line naming the file for a missing file, missing columns, a clip with neither
    audio nor video, a repeated stem, or a speaker in two splits.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: manifest not found (create one with `emolib index DATA --out {path}`)")
    table = _read_table(path)
    if set(LEGACY_COLUMNS) <= set(table.columns) and not {"audio", "video", "speaker"} & set(table.columns):
        table = table.drop(columns=["label"], errors="ignore").rename(columns=LEGACY_COLUMNS)
    missing = [column for column in REQUIRED_FILE_COLUMNS if column not in table.columns]
    if missing:
        raise DataError(f"{path}: not a manifest, missing columns {', '.join(missing)} (needs {', '.join(REQUIRED_FILE_COLUMNS)})")
    reserved = [column for column in table.columns if column in WORKING_ONLY_COLUMNS]
    if reserved:
        raise DataError(f"{path}: column {reserved[0]!r} is a name emolib uses for its own working column (from "
                        f"{FILE_COLUMNS.get(reserved[0], 'label')!r}); rename it")
    try:
        return _working_table(table, path.parent.absolute(), labels)
    except DataError as error:
        raise DataError(f"{path}: {error}") from None


def _read_table(path: Path) -> pd.DataFrame:
    try:
        if path.suffix.lower() in PARQUET_SUFFIXES:
            table = pd.read_parquet(path)  # a null cell is an empty one, as in a CSV: text, never "nan" or "None"
            return table.assign(**{column: [("" if pd.isna(value) else str(value)) if np.ndim(value) == 0 else str(value) for value in table[column]]
                                   for column in table.columns if column not in FLOAT_COLUMNS})
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError, ValueError) as error:
        raise DataError(f"{path}: not a manifest {'Parquet file' if path.suffix.lower() in PARQUET_SUFFIXES else 'CSV'} "
                        f"({str(error).strip().splitlines()[0]})") from None


def _working_table(table: pd.DataFrame, root: Path, labels) -> pd.DataFrame:
    table = table.copy()
    for column in ("audio", "video"):
        table[column] = [_absolute(value, root) for value in table[column].astype(str).str.strip()]
    empty = table.index[(table["audio"] == "") & (table["video"] == "")]
    if len(empty):
        raise DataError(f"row {empty[0] + 2}: neither audio nor video")
    if (table["label"].astype(str).str.strip() == "").any():
        raise DataError(f"row {table.index[table['label'].astype(str).str.strip() == ''][0] + 2}: no label")
    stems = table["stem"].astype(str).str.strip() if "stem" in table.columns else pd.Series("", index=table.index)
    if stems.eq("").any() and stems.ne("").any():
        raise DataError(f"row {table.index[stems == ''][0] + 2}: no stem (give every clip one, or leave the column out)")
    if stems.eq("").all():
        table["stem"] = [_stem(audio or video, root) for audio, video in zip(table["audio"], table["video"])]
    repeated = table.loc[table["stem"].duplicated(), "stem"]
    if len(repeated):
        raise DataError(f"clip {repeated.iloc[0]!r} appears twice (stems must be unique; add a 'stem' column)")
    table = table.rename(columns={value: key for key, value in FILE_COLUMNS.items()})
    table["emotion"] = table["emotion"].astype(str).str.strip()
    for column in FLOAT_COLUMNS:
        if column in table.columns:
            table[column] = pd.to_numeric(table[column], errors="coerce").astype("float64")
    table = normalize_speakers(table)
    if "split" not in table.columns:
        table["split"] = ""
    _check_split(table)
    return _ordered(with_label_set(table, labels))


def _check_split(table: pd.DataFrame) -> None:
    given = table["split"].astype(str)
    unknown = sorted(set(given) - set(SPLITS) - {""})
    if unknown:
        raise DataError(f"unknown split {unknown[0]!r} (expected {', '.join(SPLITS)} or empty)")
    if given.eq("").any() and given.ne("").any():
        raise DataError("some clips have a split and others none; give every clip one, or leave the column empty")
    per_speaker = table[given != ""].groupby("actor")["split"].nunique()
    if (per_speaker > 1).any():
        raise DataError(f"speaker {per_speaker[per_speaker > 1].index[0]} is in more than one split (splits must be speaker-disjoint)")


def has_splits(manifest: pd.DataFrame) -> bool:
    """True when every clip of ``manifest`` has a split."""
    return "split" in manifest.columns and bool(len(manifest)) and bool(manifest["split"].astype(str).ne("").all())


def _absolute(value: str, root: Path) -> str:
    if not value or value == "nan":
        return ""
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else root / path)


def _stem(path: str, root: Path) -> str:
    try:
        relative = Path(path).relative_to(root)
    except ValueError:
        relative = Path(Path(path).name)
    return relative.with_suffix("").as_posix()


def _ordered(manifest: pd.DataFrame) -> pd.DataFrame:
    extras = [column for column in manifest.columns if column not in MANIFEST_COLUMNS]
    return manifest[MANIFEST_COLUMNS + extras].sort_values("stem", kind="stable").reset_index(drop=True)


def _split_names(df: pd.DataFrame) -> list[str]:
    present = [split for split in df["split"].dropna().unique() if split]
    return [split for split in SPLITS if split in present] + sorted(set(present) - set(SPLITS))


def _split_summary(df: pd.DataFrame, split: str) -> str:
    rows = df[df["split"] == split]
    return f"{split} {rows['actor'].nunique()} speakers / {len(rows)} clips"

