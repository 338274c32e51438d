"""What every corpus layout shares when it is indexed: the result record, folder checks, file listing, pairing
audio with videos' sound tracks."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..errors import DataError

EXAMPLES = 5
AUDIO_SUFFIXES = (".wav", ".flac")
VIDEO_SUFFIXES = (".flv", ".mp4")


@dataclass
class IndexResult:
    """What an index found: the manifest plus everything it left out or could not pair."""

    manifest: pd.DataFrame
    foreign: list[str] = field(default_factory=list)
    unpaired_audio: list[str] = field(default_factory=list)
    unpaired_video: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    defects: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["stem", "modality", "reason"]))
    roots: dict = field(default_factory=dict)


def existing_folder(folder) -> Path:
    """``folder`` as an absolute Path; DataError when it is missing or not a folder."""
    path = Path(folder).expanduser().absolute()
    if not path.exists():
        raise DataError(f"{path}: folder not found")
    if not path.is_dir():
        raise DataError(f"{path}: not a folder")
    return path


def list_files(root: str, depth: int, level: int = 0, seen: set | None = None):
    """(path, level) of the files under ``root`` down to ``depth`` folders, hidden ones left out.

    Symbolic links are followed, but each real folder is entered and each real file given at most once
    (``seen`` holds their real paths; pass one set to share it between calls), so a link loop ends and a
    linked folder adds no second copy of its files.
    """
    seen = set() if seen is None else seen
    real = os.path.realpath(root)
    if real in seen:
        return
    seen.add(real)
    try:
        entries = sorted(os.scandir(root), key=lambda entry: entry.name)
    except OSError:
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_file():
            target = os.path.realpath(entry.path)
            if target not in seen:
                seen.add(target)
                yield entry.path, level
        elif entry.is_dir() and level < depth:
            yield from list_files(entry.path, depth, level + 1, seen)


def audio_from_videos(manifest: pd.DataFrame) -> pd.DataFrame:
    """Clips without an audio file take their video's audio track (CREMA-D's FLVs, RAVDESS's MP4s) when it has one."""
    from ..media import stream_kinds

    missing = (manifest["audio_path"] == "") & (manifest["video_path"] != "")
    with_track = [index for index in manifest.index[missing] if "audio" in stream_kinds(manifest.at[index, "video_path"])]
    manifest.loc[with_track, "audio_path"] = manifest.loc[with_track, "video_path"]
    return manifest


LFS_POINTER_PREFIX = b"version https://git-lfs.github.com/spec/v1"
LFS_POINTER_MAX_BYTES = 1024  # a pointer is about 130 bytes: version, oid sha256:..., size ...


def is_lfs_pointer(path) -> bool:
    """True when the file at ``path`` is a Git LFS pointer (what a zip download of an LFS repository holds), not media."""
    try:
        if os.path.getsize(path) > LFS_POINTER_MAX_BYTES:
            return False
        with open(path, "rb") as file:
            return file.read(len(LFS_POINTER_PREFIX)) == LFS_POINTER_PREFIX
    except OSError:
        return False


def lfs_message(pointers: int, total: int, folder: str) -> str:
    """The one line that says a tree holds Git LFS pointers instead of media, and how to get the media."""
    return (f"{pointers:,} of {total:,} {folder} files are Git LFS pointers (a zip download of the repository), not media: "
            f"`emolib download cremad --to DIR`, or `git lfs pull` in a clone")


def examples(names: list[str]) -> str:
    """`` (e.g. a, b, c, ...)`` for a summary line, or '' when there are none."""
    if not names:
        return ""
    more = ", ..." if len(names) > EXAMPLES else ""
    return " (e.g. " + ", ".join(names[:EXAMPLES]) + more + ")"
