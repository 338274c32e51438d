"""The face-crop cache: every clip of a dataset cropped once, with a checkpoint's FaceSettings.

``prepare_faces`` stores one ``.npz`` per clip (arrays ``crops``, ``found``, ``boxes``; see
``faces.crop_clip_faces``) as ``<cache>/faces/<settings key>/<stem>-<file identity>.npz``. The
settings key covers frames per clip, crop size, margin, the detector and its parameters; the file
identity (``files.file_identity``: path, size, modification time) covers the video itself. So
changed settings, a replaced video, or another tree with the same clip names (the real CREMA-D
after the synthetic demo) never reuse another video's crops.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
import zipfile
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..errors import DataError, EmolibError, VideoError
from ..faces import FALLBACK_FRACTION, clip_has_face
from ..files import atomic_save_arrays, atomic_write, cache_root, file_identity
from ..transforms import FaceSettings, crop_clip
from ..video import read_frames

FACES_DIR = "faces"
CROP_VERSION = 3  # 2: the clip's main face track, aligned crops; 3: BlazeFace run by ONNX Runtime (its detections within 4e-4 of OpenCV's)
SAFE_NAME = re.compile(r"[^\w.-]+")  # a stem like "happy/01_a" becomes part of a file name
INDEX_COLUMNS = ["stem", "face_path", "faces_found", "frames", "has_face", "error"]


def settings_key(settings: FaceSettings) -> str:
    """Cache folder name for these crop settings, e.g. ``f3_s224_m0.25-1a2b3c4d``.

    The hash covers the detector, alignment and the crop constants, so changing any of them never reuses stale crops.
    """
    detection = [asdict(settings.detector), settings.align, FALLBACK_FRACTION, CROP_VERSION]
    digest = hashlib.sha1(json.dumps(detection, sort_keys=True).encode()).hexdigest()[:8]
    return f"f{settings.frames}_s{settings.image_size}_m{settings.margin:g}-{digest}"


def crop_path(folder, stem: str, video) -> Path:
    """Where the crops of clip ``stem`` (from file ``video``) live in a settings folder; OSError when the video is missing."""
    return Path(folder) / f"{SAFE_NAME.sub('_', str(stem))}-{file_identity(video)}.npz"


def cached_crop_paths(rows, cache_dir, settings: FaceSettings | None = None) -> list[str]:
    """The crop file of each row (stem, video_path) under ``cache_dir`` (the cache root), or '' when not cached."""
    folder = Path(cache_dir) / FACES_DIR / settings_key(settings or FaceSettings())
    paths = []
    for stem, video in zip(rows["stem"], rows["video_path"]):
        try:
            path = crop_path(folder, stem, video) if str(video or "") else None
        except OSError:
            path = None
        paths.append(str(path) if path is not None and path.is_file() else "")
    return paths


def load_face_crops(path: str | Path) -> np.ndarray:
    """Load the (frames, size, size, 3) uint8 crops of one cached clip."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            return archive["crops"]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
        reason = " ".join(str(error).split()) or type(error).__name__
        raise VideoError(f"{path}: unreadable face-crop cache file ({reason}); delete it to rebuild") from None


def face_index(manifest, cache_dir=None, settings: FaceSettings | None = None, workers: int | None = None, progress: bool = True):
    """Face crops of every clip of ``manifest`` with video, prepared once under ``cache_dir`` (default: the cache root)."""
    return prepare_faces(manifest, Path(cache_dir or cache_root()) / FACES_DIR, settings or FaceSettings(), workers, progress)


def prepare_faces(manifest, cache_dir, settings: FaceSettings | None = None, workers: int | None = None, progress: bool = True):
    """Crop faces from every clip of ``manifest`` that has a ``video_path``, caching one npz per clip.

    Files go to ``cache_dir/<settings_key(settings)>/<stem>.npz``, written atomically; clips
    already cached are not decoded again. ``workers`` processes (default min(4, cpu count); 0 = in
    this process) share the work; they are spawned, so scripts must call this under
    ``if __name__ == "__main__":``. Unreadable videos are warned about and reported instead of
    stopping the run. Returns a DataFrame with columns stem, face_path ("" when failed),
    faces_found (frames with a detected face), frames, has_face (``faces.clip_has_face``: whether
    the face model may use the clip), error ("" when fine).
    """
    import pandas as pd

    settings = settings or FaceSettings()
    if "video_path" not in manifest.columns:
        raise DataError("manifest: no video_path column (build it with video files to prepare faces)")
    folder = Path(cache_dir) / settings_key(settings)
    folder.mkdir(parents=True, exist_ok=True)
    _write_settings(folder, settings)
    jobs, errors = [], {}
    for stem, video in _videos(manifest):
        try:
            jobs.append((str(stem), str(video), str(crop_path(folder, stem, video)), settings))
        except OSError as error:
            jobs.append((str(stem), str(video), "", settings))
            errors[str(stem)] = f"{video}: {error.strerror or 'unreadable'}"
    todo = [job for job in jobs if job[2] and not Path(job[2]).is_file()]
    errors.update({stem: error for stem, error in _run(todo, workers, progress) if error})
    rows = []
    for stem, video, target, _ in jobs:
        if stem in errors:
            warnings.warn(f"skipping {stem}: {errors[stem]}", stacklevel=2)
            rows.append({"stem": stem, "face_path": "", "faces_found": 0, "frames": 0, "has_face": False, "error": errors[stem]})
            continue
        with np.load(target, allow_pickle=False) as archive:
            found = archive["found"]
        rows.append({"stem": stem, "face_path": target, "faces_found": int(found.sum()), "frames": len(found),
                     "has_face": clip_has_face(found), "error": ""})
    return pd.DataFrame(rows, columns=INDEX_COLUMNS)


def prepare_clip(stem: str, video: str, target: str, settings: FaceSettings) -> tuple[str, str | None]:
    """Read, crop and save one clip; returns (stem, error message or None)."""
    import cv2

    try:
        crops, found, boxes = crop_clip(read_frames(video, settings.frames), settings)
    except EmolibError as error:
        return stem, str(error)
    except cv2.error as error:
        return stem, f"{video}: OpenCV failed ({' '.join(str(error).split())})"
    atomic_save_arrays(target, crops=crops, found=found, boxes=boxes)
    return stem, None


def _videos(manifest):
    stems = manifest["stem"] if "stem" in manifest.columns else manifest.index.to_series()
    for stem, video in zip(stems, manifest["video_path"]):
        if isinstance(video, (str, os.PathLike)) and str(video):
            yield stem, video


def _run(jobs: list[tuple], workers: int | None, progress: bool):
    from tqdm.auto import tqdm

    workers = min(4, os.cpu_count() or 1) if workers is None else workers
    bar = tqdm(total=len(jobs), desc="face crops", unit="clip", disable=not progress or not jobs)
    with bar:
        if workers <= 0 or len(jobs) <= 1:
            for job in jobs:
                yield prepare_clip(*job)
                bar.update()
            return
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        context = multiprocessing.get_context("spawn")  # forked children hang in OpenCV's inherited thread pool
        with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=context, initializer=_single_threaded) as pool:
            for future in as_completed([pool.submit(prepare_clip, *job) for job in jobs]):
                yield future.result()
                bar.update()


def _single_threaded() -> None:
    import cv2

    cv2.setNumThreads(1)


def _write_settings(folder: Path, settings: FaceSettings) -> None:
    path = folder / "settings.json"
    if not path.is_file():
        record = {**asdict(settings), "fallback_fraction": FALLBACK_FRACTION, "crop_version": CROP_VERSION}
        atomic_write(path, json.dumps(record, indent=2) + "\n")
