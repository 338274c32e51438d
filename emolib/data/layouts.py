"""Two more corpus layouts: RAVDESS, and a folder per label (``DATA/<label>/*.wav|*.mp4|*.flv``).

Both give the manifest rows of ``cremad_tree`` (stem, actor, emotion, audio_path, video_path, extras);
``manifest.index_dataset`` adds the split and the label set.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd

from ..errors import DataError
from ..ravdess import EXPECTED as RAVDESS_EXPECTED
from ..ravdess import try_parse_ravdess_name
from .scan import AUDIO_SUFFIXES, VIDEO_SUFFIXES, IndexResult, audio_from_videos, existing_folder, list_files

RAVDESS_DEPTH = 3
RAVDESS_VIDEO_PREFERENCE = ("audio-video", "video-only")  # a full-AV MP4 carries the sound; a video-only one does not
FOLDER_AUDIO_SUFFIXES = AUDIO_SUFFIXES + (".mp3", ".ogg", ".m4a")
FOLDER_VIDEO_SUFFIXES = VIDEO_SUFFIXES + (".avi", ".mov", ".mkv", ".webm")
FOLDER_DEPTH = 3
STEM_SEPARATOR = "/"
NOT_FOUND = (None, "", None)  # (rank, path, fields) of a side a recording lacks


def index_ravdess(data) -> IndexResult:
    """Scan a RAVDESS tree (``Actor_NN/`` folders, any parent folders): audio-only WAVs and full-AV (or video-only)
    MP4s, speech and song, paired by every name field but the modality. A clip without a WAV takes its MP4's sound."""
    data = existing_folder(data)
    audio, video, foreign, duplicates = {}, {}, [], []
    for path, _ in list_files(str(data), RAVDESS_DEPTH):
        name = os.path.basename(path)
        suffix = os.path.splitext(name)[1].lower()
        fields = try_parse_ravdess_name(name) if suffix in AUDIO_SUFFIXES + VIDEO_SUFFIXES else None
        if fields is None:
            if suffix in AUDIO_SUFFIXES + VIDEO_SUFFIXES:
                foreign.append(name)
            continue
        if fields.modality == "audio-only" and suffix in AUDIO_SUFFIXES:
            _keep(audio, fields, path, 0, duplicates)
        elif fields.modality != "audio-only" and suffix in VIDEO_SUFFIXES:
            _keep(video, fields, path, RAVDESS_VIDEO_PREFERENCE.index(fields.modality), duplicates)
        else:
            foreign.append(name)
    if not audio and not video:
        raise DataError(f"{data}: no RAVDESS files found (expected {RAVDESS_EXPECTED})")
    rows = []
    for stem in sorted(set(audio) | set(video)):
        fields = (audio.get(stem) or video.get(stem))[2]
        rows.append({"stem": stem, "actor": fields.actor, "emotion": fields.emotion, "audio_path": audio.get(stem, NOT_FOUND)[1],
                     "video_path": video.get(stem, NOT_FOUND)[1], "channel": fields.channel, "intensity": fields.intensity,
                     "statement": fields.statement, "repetition": fields.repetition, "sex": fields.sex})
    manifest = audio_from_videos(pd.DataFrame(rows).astype({"actor": "int64"}))
    return IndexResult(manifest=manifest, foreign=sorted(foreign), unpaired_audio=sorted(set(audio) - set(video)),
                       unpaired_video=sorted(set(video) - set(audio)), duplicates=sorted(duplicates),
                       roots={"data": str(data), "audio": str(data), "video": str(data) if video else ""})


def looks_like_ravdess(data: Path) -> bool:
    """True when ``data`` holds at least one RAVDESS-named media file."""
    return any(try_parse_ravdess_name(os.path.basename(path)) for path, _ in list_files(str(data), RAVDESS_DEPTH))


def _keep(found: dict, fields, path: str, rank: int, duplicates: list) -> None:
    """Keep (rank, path, fields) of the best-ranked file of each recording in ``found``; list the others in ``duplicates``."""
    candidate = (rank, path, fields)
    if fields.stem in found:
        candidate, dropped = sorted([found[fields.stem], candidate], key=lambda record: record[:2])
        duplicates.append(dropped[1])
    found[fields.stem] = candidate


def speaker_regex(pattern: str) -> re.Pattern:
    """The compiled ``--speaker-pattern``; DataError when it is not a regular expression."""
    try:
        regex = re.compile(pattern)
    except re.error as error:
        raise DataError(f"--speaker-pattern {pattern!r}: not a regular expression ({error})") from None
    if not regex.groups:
        raise DataError(f"--speaker-pattern {pattern!r}: has no capturing group; put the speaker in parentheses, e.g. '^(\\d+)_', "
                        f"or name it (?P<speaker>...)")
    return regex


def speaker_of(name: str, regex: re.Pattern) -> str | None:
    """The speaker in file name ``name``: the ``speaker`` group, else group 1; None when it does not match."""
    match = regex.search(name)
    if not match:
        return None
    if "speaker" in regex.groupindex:
        return match.group("speaker")
    return match.group(1)


def index_folders(data, speaker_pattern: str | None) -> IndexResult:
    """Scan ``DATA/<label>/`` folders: every media file under a label folder is a clip of that label.

    An audio file and a video file with the same path but the suffix are one clip; a second audio (or video)
    file of the same clip is listed as a duplicate. A file reached twice through symbolic links counts once,
    under the first label folder by name. The speaker is
    taken from each file name by ``speaker_pattern`` (a regular expression; see ``speaker_of``);
    files it does not match are left out and listed.
    """
    data = existing_folder(data)
    if not speaker_pattern:
        raise DataError(f"{data}: a folder-per-label layout needs --speaker-pattern (a regular expression that finds the speaker "
                        f"in a file name, e.g. '^(\\d+)_'), so that splits stay speaker-disjoint")
    regex = speaker_regex(speaker_pattern)
    clips, foreign, duplicates, seen = {}, [], [], {str(data.resolve())}
    for label_dir in sorted(path for path in data.iterdir() if path.is_dir() and not path.name.startswith(".")):
        for path, _ in list_files(str(label_dir), FOLDER_DEPTH, seen=seen):
            relative, suffix = os.path.splitext(os.path.relpath(path, data))
            side = "audio_path" if suffix.lower() in FOLDER_AUDIO_SUFFIXES else "video_path" if suffix.lower() in FOLDER_VIDEO_SUFFIXES else None
            if side is None:
                continue
            speaker = speaker_of(os.path.basename(path), regex)
            if speaker is None:
                foreign.append(os.path.relpath(path, data))
                continue
            stem = relative.replace(os.sep, STEM_SEPARATOR)
            clip = clips.setdefault(stem, {"stem": stem, "actor": speaker, "emotion": label_dir.name, "audio_path": "", "video_path": ""})
            if clip[side]:
                duplicates.append(os.path.relpath(path, data))  # 01_0.wav beside 01_0.flac: the first by name is kept
            else:
                clip[side] = path
    if not clips:
        seen = f"; {len(foreign)} media files did not match --speaker-pattern {speaker_pattern!r}" if foreign else ""
        raise DataError(f"{data}: no clips found (expected DATA/<label>/*.wav|*.mp4|*.flv){seen}")
    manifest = audio_from_videos(pd.DataFrame(sorted(clips.values(), key=lambda clip: clip["stem"])))
    audio_only = manifest.loc[manifest["video_path"] == "", "stem"].tolist()
    video_only = manifest.loc[manifest["audio_path"] == "", "stem"].tolist()
    return IndexResult(manifest=manifest, foreign=sorted(foreign), unpaired_audio=audio_only, unpaired_video=video_only, duplicates=sorted(duplicates),
                       roots={"data": str(data), "audio": str(data), "video": str(data) if (manifest["video_path"] != "").any() else ""})
