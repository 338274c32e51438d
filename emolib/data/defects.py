"""The known defects of the CREMA-D release, per modality, and how a manifest leaves them out.

CREMA-D's own README lists files that are not what their names say (``assets/defects.csv``: stem,
modality, reason). ``modality`` is ``video`` (the FLV), ``audio`` (the WAV) or ``video_audio`` (the
FLV's audio track, missing in copies from before 16 December 2020; it matters only when the audio
is taken from the FLV). By default training, evaluation and cross-validation leave out the
defective modality of each clip (a clip whose WAV is fine keeps its voice); ``--include-defective``
keeps everything. The manifest's ``excluded`` column says what was left out and why, and every
report lists it.
"""
from __future__ import annotations

from functools import lru_cache

import pandas as pd

from ..cremad import asset_path

DEFECTS_FILE = "defects.csv"
PATH_OF = {"audio": "audio_path", "video": "video_path"}
HICMAE_LEFT_OUT = ("1076_MTI_NEU_XX", "1076_MTI_SAD_XX", "1064_TIE_SAD_XX", "1064_IEO_DIS_MD")


@lru_cache(maxsize=1)
def load_defects() -> pd.DataFrame:
    """The packaged list: stem, modality (audio, video, video_audio), reason."""
    return pd.read_csv(asset_path(DEFECTS_FILE), dtype=str, keep_default_na=False)


def find_defects(manifest: pd.DataFrame) -> pd.DataFrame:
    """The defects that apply to the files of ``manifest``: stem, modality (audio or video), reason.

    A ``video_audio`` defect applies to the audio when it is taken from the FLV (audio_path is the video).
    """
    rows = manifest.set_index("stem")
    found = []
    for defect in load_defects().itertuples(index=False):
        if defect.stem not in rows.index:
            continue
        clip = rows.loc[defect.stem]
        audio, video = str(clip["audio_path"] or ""), str(clip["video_path"] or "")
        if defect.modality == "video_audio":
            if audio and audio == video:
                found.append((defect.stem, "audio", f"audio taken from the FLV: {defect.reason}"))
        elif str(clip[PATH_OF[defect.modality]] or ""):
            found.append((defect.stem, defect.modality, defect.reason))
    return pd.DataFrame(found, columns=["stem", "modality", "reason"])


def exclude_defects(manifest: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``manifest`` with each defective modality's path emptied and the ``excluded`` column saying why.

    A clip left with neither audio nor video stays in the manifest (no model gets an input from it).
    """
    out = _with_excluded_column(manifest)
    defects = find_defects(out)
    for defect in defects.itertuples(index=False):
        row = out.index[out["stem"] == defect.stem]
        out.loc[row, PATH_OF[defect.modality]] = ""
        note = f"{defect.modality}: {defect.reason}"
        out.loc[row, "excluded"] = [f"{old}; {note}" if old else note for old in out.loc[row, "excluded"]]
    return out


def excluded_list(manifest: pd.DataFrame) -> list[dict]:
    """What a report lists: [{stem, excluded}] for every clip of ``manifest`` with something left out."""
    if "excluded" not in manifest.columns:
        return []
    rows = manifest[manifest["excluded"].fillna("").astype(str) != ""]
    return [{"stem": stem, "excluded": why} for stem, why in zip(rows["stem"], rows["excluded"])]


def leave_out(manifest: pd.DataFrame, stems, reason: str) -> pd.DataFrame:
    """A copy of ``manifest`` in which the clips ``stems`` give no input at all (both paths emptied), with ``excluded`` saying why."""
    out = _with_excluded_column(manifest)
    rows = out["stem"].isin(stems)
    out.loc[rows, ["audio_path", "video_path"]] = ""
    out.loc[rows, "excluded"] = reason
    return out


def _with_excluded_column(manifest: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``manifest`` whose ``excluded`` column exists and holds strings ('' when nothing is left out)."""
    out = manifest.copy()
    out["excluded"] = out.get("excluded", pd.Series("", index=out.index)).fillna("").astype(str)
    return out
