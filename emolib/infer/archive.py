"""The files of an ``emolib annotate`` output folder: which inputs, which result keys, one schema, reading it back.

Each input path ends with exactly one result: ``windows/<key>.parquet`` (its windows) or
``errors/<key>.parquet`` (one row saying why it failed). ``<key>`` is ``<path hash>-<result hash>``:
the path's part keeps two copies of one recording apart (each gets its own rows); the result part
hashes the file's bytes and everything that changes its rows (window, hop, the models' weights and
configs, which hold the face and audio settings, and this folder format). A result whose key matches
is kept; one of the same path with another key was made from other bytes or settings and is replaced.
Every file is written with one explicit Arrow schema (nulls typed), so pandas, pyarrow.dataset and
DuckDB read the whole folder.
"""
from __future__ import annotations

import glob
import hashlib
import json
from pathlib import Path

from ..errors import EmolibError
from ..files import atomic_write, file_digest
from ..models.checkpoint import CONFIG_FILE, MODEL_KINDS, WEIGHTS_FILE

MEDIA_SUFFIXES = (".mp4", ".flv", ".mkv", ".mov", ".avi", ".webm", ".wav", ".flac", ".mp3", ".m4a", ".ogg")
LIST_SUFFIXES = (".csv", ".parquet")
WINDOWS_DIR, ERRORS_DIR = "windows", "errors"
FORMAT = 4  # of the rows (3: a row per window and face; 4: a tail window at the file's end, streams on the file's clock, speech from
# whole-file segments): a change of columns or of their meaning changes every key
TEXT_COLUMNS = ("label", "source", "modalities", "voice_pred", "face_pred", "fusion_pred", "notes")
ID_COLUMNS = ("file", "key", "models", "settings", "speaker")
ERROR_SCHEMA_FIELDS = (("file", "string"), ("error", "string"), ("key", "string"), ("settings", "string"))


def list_inputs(source) -> list[Path]:
    """Media files named by ``source``: a folder (recursive), a glob pattern, or a .csv/.parquet list (column ``path`` or the first).

    A listed file that does not exist is kept (it gets an error row), and so is every media name a folder or glob finds that is
    not a readable file (a dangling symlink, a symlink loop); an empty, unreadable or malformed list is one EmolibError.
    """
    path = Path(source)
    if path.is_dir():
        files = [item for item in path.rglob("*") if _media_entry(item)]
    elif path.suffix.lower() in LIST_SUFFIXES and path.is_file():
        files = [item if item.is_absolute() else path.parent / item for item in map(Path, _listed(path))]
    else:
        files = [Path(item) for item in glob.glob(str(source), recursive=True) if _media_entry(Path(item))]
    if not files:
        raise EmolibError(f"{source}: no media files found (give a folder, a glob, or a CSV/Parquet list with a 'path' column)")
    return sorted({file.absolute() for file in files})


def _media_entry(item: Path) -> bool:
    """A file, or a symlink that should be one (dangling, or a loop: it ends in an error row), with a media suffix."""
    return item.suffix.lower() in MEDIA_SUFFIXES and (item.is_symlink() or item.is_file())


def _listed(path: Path) -> list[str]:
    """The paths of a CSV or Parquet list file; EmolibError naming the file when it is not one."""
    table, column = listed_table(path)
    values = [str(value).strip() for value in table[column] if value is not None and str(value).strip() not in ("", "nan", "None")]
    if not values:
        raise EmolibError(f"{path}: column {column!r} names no file")
    return values


def listed_table(path: Path):
    """(the table of a CSV or Parquet list file, its column of paths: ``path`` or the first); EmolibError naming the file when it
    is not one, or is empty."""
    import pandas as pd

    try:
        table = pd.read_parquet(path) if path.suffix.lower() == ".parquet" else pd.read_csv(path, dtype=str, keep_default_na=False)
    except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        kind = "Parquet" if path.suffix.lower() == ".parquet" else "CSV"
        raise EmolibError(f"{path}: not a {kind} list of media files ({' '.join(str(error).split())[:160]})") from None
    if table.empty or not len(table.columns):
        raise EmolibError(f"{path}: the list is empty (one media file per row, in a column named 'path')")
    return table, "path" if "path" in table.columns else table.columns[0]


def run_settings(found: dict, window: float, hop: float, min_speech: float = 0.0, speaker_norm: bool = True, abstain: float | None = None) -> dict:
    """Everything besides a file's bytes that changes its rows: window, hop, the no-speech rule, speaker normalisation, abstention,
    each model's weights and config (face and audio settings, detector, labels, temperature), and the folder format."""
    return {"format": FORMAT, "window": float(window), "hop": float(hop), "min_speech": float(min_speech), "speaker_norm": bool(speaker_norm),
            "abstain": abstain,
            "models": {kind: file_digest(Path(folder) / WEIGHTS_FILE) for kind, folder in found.items()},
            "configs": {kind: file_digest(Path(folder) / CONFIG_FILE) for kind, folder in found.items()}}


def settings_key(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def path_part(path) -> str:
    return hashlib.sha256(str(path).encode()).hexdigest()[:12]


def content_key(path, settings_id: str) -> str:
    """The result hash of ``path``: its bytes and the settings (``settings_key``; OSError when the file cannot be read)."""
    return hashlib.sha256(f"{file_digest(path)}:{settings_id}".encode()).hexdigest()[:20]


def result_key(path, content: str) -> str:
    return f"{path_part(path)}-{content}"


def existing_results(out) -> dict[str, list[Path]]:
    """{path hash: result files} of an output folder."""
    found: dict[str, list[Path]] = {}
    for folder in (WINDOWS_DIR, ERRORS_DIR):
        for file in (Path(out) / folder).glob("*.parquet"):
            found.setdefault(file.stem.split("-")[0], []).append(file)
    return found


def window_schema(labels):
    """The Arrow schema of every windows file for a predictor of ``labels``."""
    import pyarrow as pa

    fields = [pa.field("start", pa.float64()), pa.field("end", pa.float64()), pa.field("tail", pa.bool_()), pa.field("face_id", pa.int64())]
    fields += [pa.field(name, pa.string()) for name in TEXT_COLUMNS[:3]]
    fields += [pa.field("face_found", pa.bool_()), pa.field("audio_rms", pa.float64()), pa.field("speech_seconds", pa.float64())]
    fields += [pa.field(name, pa.string()) for name in TEXT_COLUMNS[3:6]]
    fields += [pa.field(f"{kind}_{label}", pa.float64()) for kind in ("prob", *MODEL_KINDS) for label in labels]
    fields += [pa.field("notes", pa.string())] + [pa.field(name, pa.string()) for name in ID_COLUMNS]
    return pa.schema(fields)


def parquet_bytes(table, schema) -> bytes:
    """``table`` (a DataFrame) as Parquet with exactly ``schema``: missing columns are typed nulls."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    table = table.reindex(columns=schema.names)
    for field in schema:
        if pa.types.is_string(field.type):
            table[field.name] = [None if value is None or value != value else str(value) for value in table[field.name]]
        elif pa.types.is_boolean(field.type):
            table[field.name] = [None if value is None or value != value else bool(value) for value in table[field.name]]
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(table, schema=schema, preserve_index=False), buffer)
    return buffer.getvalue()


def relabel(data: bytes, path, key: str) -> bytes:
    """Parquet bytes of windows with their ``file`` and ``key`` columns set to ``path`` and ``key`` (same schema)."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(io.BytesIO(data))
    for name, value in (("file", str(path)), ("key", key)):
        table = table.set_column(table.schema.get_field_index(name), name, pa.array([value] * len(table), pa.string()))
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def error_bytes(path, error: str, key: str, settings: str) -> bytes:
    import pandas as pd
    import pyarrow as pa

    schema = pa.schema([pa.field(name, getattr(pa, kind)()) for name, kind in ERROR_SCHEMA_FIELDS])
    return parquet_bytes(pd.DataFrame([{"file": str(path), "error": error, "key": key, "settings": settings}]), schema)


def write_result(out, folder: str, key: str, data: bytes, replaced: list[Path]) -> None:
    """Write one path's result atomically, then remove that path's results made from other bytes or settings."""
    target = Path(out) / folder / f"{key}.parquet"
    atomic_write(target, data)
    for old in replaced:
        if old != target:
            old.unlink(missing_ok=True)


def read_windows(out):
    """All annotated windows of an output folder as one DataFrame."""
    import pandas as pd

    folder = Path(out) / WINDOWS_DIR
    return pd.read_parquet(folder) if any(folder.glob("*.parquet")) else pd.DataFrame()


def read_errors(out):
    """The error rows of an output folder as one DataFrame (file, error)."""
    import pandas as pd

    folder = Path(out) / ERRORS_DIR
    return pd.read_parquet(folder) if any(folder.glob("*.parquet")) else pd.DataFrame(columns=["file", "error"])
