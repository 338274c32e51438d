"""Face crops for the face model: Haar detection, square crops with margin, and an on-disk crop cache.

``crop_face`` is used on single images and live frames; ``prepare_faces`` crops whole datasets once
and stores the crops as ``<cache_dir>/<settings key>/<stem>.npz`` for training.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from .errors import DataError, EmolibError, ModelError, VideoError
from .video import DEFAULT_FRAMES, as_rgb, read_frames

FACE_SIZE = 224
FACE_MARGIN = 0.25
FALLBACK_FRACTION = 0.8
HAAR_CASCADE = "haarcascade_frontalface_default.xml"
DETECT_WIDTH = 320
DETECT_SCALE_FACTOR = 1.1
DETECT_MIN_NEIGHBORS = 5
DETECT_MIN_SIZE = 40
CROP_VERSION = 1

Box = tuple[int, int, int, int]


@dataclass
class FaceCrop:
    """A square RGB face crop; ``box`` is the detected face (x, y, w, h) or None when none was found."""

    image: np.ndarray
    box: Box | None
    found: bool
    faces: int


def detect_faces(image: np.ndarray, cascade: str = HAAR_CASCADE) -> list[Box]:
    """Detect frontal faces in an RGB image; boxes (x, y, w, h) in image pixels, largest first.

    Detection runs on a grey, histogram-equalized copy scaled down to DETECT_WIDTH pixels wide.
    """
    import cv2

    image = as_rgb(image)
    scale = min(1.0, DETECT_WIDTH / image.shape[1])
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    if scale < 1.0:
        size = (DETECT_WIDTH, max(1, round(image.shape[0] * scale)))
        grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
    grey = cv2.equalizeHist(grey)
    found = load_cascade(cascade).detectMultiScale(
        grey,
        scaleFactor=DETECT_SCALE_FACTOR,
        minNeighbors=DETECT_MIN_NEIGHBORS,
        minSize=(DETECT_MIN_SIZE, DETECT_MIN_SIZE),
    )
    boxes = [tuple(int(round(value / scale)) for value in box) for box in found]
    return sorted(boxes, key=lambda box: box[2] * box[3], reverse=True)


@lru_cache(maxsize=None)
def load_cascade(name: str = HAAR_CASCADE):
    """Load an OpenCV Haar cascade by file name (from cv2.data) or path, once per process."""
    import cv2

    folder = getattr(getattr(cv2, "data", None), "haarcascades", "")
    path = Path(name) if Path(name).is_file() else Path(folder) / name
    if not path.is_file():
        raise ModelError(f"{name}: Haar cascade not found in {folder or 'cv2.data'} (OpenCV 5 removed them; pin opencv-python<5)")
    classifier = cv2.CascadeClassifier(str(path))
    if classifier.empty():
        raise ModelError(f"{path}: not a loadable Haar cascade")
    return classifier


def crop_face(image: np.ndarray, size: int = FACE_SIZE, margin: float = FACE_MARGIN) -> FaceCrop:
    """Crop the largest detected face as a ``size`` x ``size`` RGB image (see ``crop_box``).

    With several faces the largest wins. With none, falls back to a centred square of
    FALLBACK_FRACTION of the shorter side (faces in CREMA-D and webcams sit near the centre),
    and ``found`` is False.
    """
    image = as_rgb(image)
    boxes = detect_faces(image)
    if not boxes:
        return FaceCrop(crop_box(image, centre_box(image), size, margin=0.0), None, False, 0)
    return FaceCrop(crop_box(image, boxes[0], size, margin), boxes[0], True, len(boxes))


def centre_box(image: np.ndarray) -> Box:
    """The fallback square (x, y, w, h) in the middle of the image, FALLBACK_FRACTION of its shorter side."""
    height, width = image.shape[:2]
    side = max(1, int(min(height, width) * FALLBACK_FRACTION))
    return ((width - side) // 2, (height - side) // 2, side, side)


def crop_box(image: np.ndarray, box: Box, size: int = FACE_SIZE, margin: float = FACE_MARGIN) -> np.ndarray:
    """Square crop around ``box`` widened by ``margin`` times its side on every side, resized to ``size``.

    The square stays centred on the box; parts outside the image are padded black.
    """
    import cv2

    image = as_rgb(image)
    x, y, w, h = box
    side = max(1, int(round(max(w, h) * (1 + 2 * margin))))
    left = int(round(x + w / 2 - side / 2))
    top = int(round(y + h / 2 - side / 2))
    height, width = image.shape[:2]
    crop = image[max(top, 0) : min(top + side, height), max(left, 0) : min(left + side, width)]
    pads = (max(-top, 0), max(top + side - height, 0), max(-left, 0), max(left + side - width, 0))
    if any(pads):
        crop = cv2.copyMakeBorder(crop, *pads, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return cv2.resize(crop, (size, size), interpolation=interpolation)


def crop_clip_faces(frames: list[np.ndarray], size: int = FACE_SIZE, margin: float = FACE_MARGIN, detections=None):
    """Crop each frame of a clip; frames without a face reuse the nearest frame's detected box.

    ``detections`` (one ``detect_faces`` list per frame) skips detecting again when the caller has them.
    Returns (crops uint8 (n, size, size, 3), found bool (n,), boxes int (n, 4)): ``found`` marks
    frames where a face was detected, ``boxes`` the face box each crop used (-1 for the centred
    fallback, used only when no frame of the clip has a face).
    """
    if detections is None:
        detections = [detect_faces(frame) for frame in frames]
    detected = [(faces or [None])[0] for faces in detections]
    found = np.array([box is not None for box in detected], dtype=bool)
    boxes = np.full((len(frames), 4), -1, dtype=np.int64)
    crops = np.empty((len(frames), size, size, 3), dtype=np.uint8)
    hits = np.flatnonzero(found)
    for i, frame in enumerate(frames):
        if len(hits):
            boxes[i] = detected[hits[np.argmin(np.abs(hits - i))]]
            crops[i] = crop_box(frame, tuple(boxes[i]), size, margin)
        else:
            crops[i] = crop_box(frame, centre_box(frame), size, margin=0.0)
    return crops, found, boxes


def settings_key(frames: int = DEFAULT_FRAMES, size: int = FACE_SIZE, margin: float = FACE_MARGIN, cascade: str = HAAR_CASCADE) -> str:
    """Cache folder name for these crop settings, e.g. ``f3_s224_m0.25-1a2b3c4d``.

    The hash covers the cascade and detection constants, so changing any of them never reuses stale crops.
    """
    detection = [cascade, DETECT_WIDTH, DETECT_SCALE_FACTOR, DETECT_MIN_NEIGHBORS, DETECT_MIN_SIZE, FALLBACK_FRACTION, CROP_VERSION]
    digest = hashlib.sha1(json.dumps(detection).encode()).hexdigest()[:8]
    return f"f{frames}_s{size}_m{margin:g}-{digest}"


def load_face_crops(path: str | Path) -> np.ndarray:
    """Load the (frames, size, size, 3) uint8 crops of one cached clip."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            return archive["crops"]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
        reason = " ".join(str(error).split()) or type(error).__name__
        raise VideoError(f"{path}: unreadable face-crop cache file ({reason}); delete it to rebuild") from None


def prepare_faces(manifest, cache_dir, frames: int = DEFAULT_FRAMES, size: int = FACE_SIZE, margin: float = FACE_MARGIN, workers: int | None = None, progress: bool = True):
    """Crop faces from every clip of ``manifest`` that has a ``video_path``, caching one npz per clip.

    Files go to ``cache_dir/<settings_key(...)>/<stem>.npz`` (arrays ``crops``, ``found``, ``boxes``;
    see ``crop_clip_faces``), written atomically; clips already cached are not decoded again.
    ``workers`` processes (default min(4, cpu count); 0 = in this process) share the work; they are
    spawned, so scripts must call this under ``if __name__ == "__main__":``.
    Unreadable videos are warned about and reported instead of stopping the run.
    Returns a DataFrame with columns stem, face_path ("" when failed), faces_found (frames with a
    detected face), frames, error ("" when fine).
    """
    import pandas as pd

    if "video_path" not in manifest.columns:
        raise DataError("manifest: no video_path column (build it with video files to prepare faces)")
    folder = Path(cache_dir) / settings_key(frames, size, margin)
    folder.mkdir(parents=True, exist_ok=True)
    _write_settings(folder, frames, size, margin)
    jobs = [(str(stem), str(video), str(folder / f"{stem}.npz"), frames, size, margin) for stem, video in _videos(manifest)]
    todo = [job for job in jobs if not Path(job[2]).is_file()]
    errors = {stem: error for stem, error in _run(todo, workers, progress) if error}
    rows = []
    for stem, video, target, *_ in jobs:
        if stem in errors:
            warnings.warn(f"skipping {stem}: {errors[stem]}", stacklevel=2)
            rows.append({"stem": stem, "face_path": "", "faces_found": 0, "frames": 0, "error": errors[stem]})
            continue
        with np.load(target, allow_pickle=False) as archive:
            found = archive["found"]
        rows.append({"stem": stem, "face_path": target, "faces_found": int(found.sum()), "frames": len(found), "error": ""})
    return pd.DataFrame(rows, columns=["stem", "face_path", "faces_found", "frames", "error"])


def prepare_clip(stem: str, video: str, target: str, frames: int, size: int, margin: float) -> tuple[str, str | None]:
    """Read, crop and save one clip; returns (stem, error message or None)."""
    import cv2

    try:
        crops, found, boxes = crop_clip_faces(read_frames(video, frames), size, margin)
    except EmolibError as error:
        return stem, str(error)
    except cv2.error as error:
        return stem, f"{video}: OpenCV failed ({' '.join(str(error).split())})"
    _save_atomically(target, crops=crops, found=found, boxes=boxes)
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


def _save_atomically(target: str, **arrays) -> None:
    folder = os.path.dirname(target)
    handle, temporary = tempfile.mkstemp(suffix=".npz.tmp", dir=folder)
    try:
        with os.fdopen(handle, "wb") as file:
            np.savez(file, **arrays)
        os.chmod(temporary, 0o644)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _write_settings(folder: Path, frames: int, size: int, margin: float) -> None:
    settings = {
        "frames": frames, "size": size, "margin": margin, "cascade": HAAR_CASCADE, "detect_width": DETECT_WIDTH,
        "scale_factor": DETECT_SCALE_FACTOR, "min_neighbors": DETECT_MIN_NEIGHBORS, "min_size": DETECT_MIN_SIZE,
        "fallback_fraction": FALLBACK_FRACTION, "crop_version": CROP_VERSION,
    }
    path = folder / "settings.json"
    if not path.is_file():
        path.write_text(json.dumps(settings, indent=2) + "\n")
