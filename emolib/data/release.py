"""CREMA-D's official release, file by file: the packaged list of every media file (path, SHA-256, size), and
``verify``, which compares a local copy with it.

The list (``assets/release_files.csv.gz``, 22,326 rows: AudioWAV, VideoFlash, AudioMP3) was read from
the release repository's own Git LFS pointers. A file is genuine when its size and SHA-256 match.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..cremad import asset_path
from ..errors import DataError
from ..files import file_digest
from .scan import is_lfs_pointer

RELEASE_FILE = "release_files.csv.gz"
PARTS = {"audio": "AudioWAV", "video": "VideoFlash", "mp3": "AudioMP3"}
DEFAULT_PARTS = ("audio", "video")


def parse_parts(text) -> tuple[str, ...]:
    """``"audio,video"`` -> ("audio", "video"); DataError naming an unknown part."""
    parts = tuple(part.strip() for part in (text.split(",") if isinstance(text, str) else text) if part.strip())
    unknown = [part for part in parts if part not in PARTS]
    if unknown or not parts:
        raise DataError(f"--parts {text!r}: expected a comma-separated list of {', '.join(PARTS)}")
    return parts


def release_files(parts=DEFAULT_PARTS, listing=None) -> pd.DataFrame:
    """The release's media files of ``parts``: ``path`` (relative, e.g. VideoFlash/1001_DFA_ANG_XX.flv), ``sha256``, ``size``, ``part``.

    ``listing``: another list of the same columns (path, sha256, size); default the packaged one."""
    table = pd.read_csv(listing or asset_path(RELEASE_FILE), dtype={"path": str, "sha256": str, "size": "int64"})
    table["part"] = table["path"].str.split("/").str[0].map({folder: part for part, folder in PARTS.items()})
    return table[table["part"].isin(parse_parts(parts))].reset_index(drop=True)


@dataclass
class Verification:
    """What ``verify`` found: per problem, the relative paths."""

    files: int = 0
    genuine: int = 0
    problems: dict = field(default_factory=lambda: {"missing": [], "lfs pointer": [], "size differs": [], "sha256 differs": []})

    @property
    def complete(self) -> bool:
        return not any(self.problems.values())

    def summary(self, root, hashed: bool) -> str:
        found = "; ".join(f"{name} {len(paths):,}" for name, paths in self.problems.items() if paths)
        checked = "size and SHA-256" if hashed else "size (add --hash to check SHA-256)"
        verdict = "complete and genuine" if self.complete else f"NOT complete: {found}"
        return f"{root}: {self.genuine:,} of {self.files:,} release files match ({checked}); {verdict}"


def verify(root, parts=DEFAULT_PARTS, hashed: bool = False, progress: bool = True, listing=None) -> Verification:
    """Compare the tree ``root`` (AudioWAV/, VideoFlash/, AudioMP3/) with the release list: missing files, Git LFS pointers,
    sizes that differ and, with ``hashed``, SHA-256s that differ (another version of the file, or a corrupt one)."""
    from tqdm.auto import tqdm

    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: folder not found")
    expected = release_files(parts, listing)
    result = Verification(files=len(expected))
    rows = tqdm(expected.itertuples(index=False), total=len(expected), desc="verify", unit="file", disable=not progress)
    for row in rows:
        path = root / row.path
        if not path.is_file():
            problem = "missing"
        elif is_lfs_pointer(path):
            problem = "lfs pointer"
        elif path.stat().st_size != row.size:
            problem = "size differs"
        elif hashed and file_digest(path) != row.sha256:
            problem = "sha256 differs"
        else:
            result.genuine += 1
            continue
        result.problems[problem].append(row.path)
    return result
