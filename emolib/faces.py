"""Faces in images: Haar detection, square crops with margin, and the one no-face policy.

``Detector`` holds every detection parameter; it is stored in each face checkpoint (inside
``transforms.FaceSettings``) so training, evaluation and live inference detect the same way.
The on-disk crop cache of whole datasets is ``emolib.data.face_cache``.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from .errors import ModelError
from .video import as_rgb

FACE_SIZE = 224
FACE_MARGIN = 0.25
FALLBACK_FRACTION = 0.8
HAAR_CASCADE = "haarcascade_frontalface_default.xml"
PROFILE_CASCADE = "haarcascade_profileface.xml"
DETECT_WIDTH = 320
DETECT_MIN_WIDTH = 160
DETECT_PAD = 0.25
DETECT_SCALE_FACTOR = 1.1
DETECT_MIN_NEIGHBORS = 5
DETECT_MIN_SIZE = 40

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class Detector:
    """Face detection settings: the cascades, the image size detection runs at, and the cascade's parameters.

    Detection runs on a grey, equalised copy ``width`` pixels wide at most (smaller images are
    enlarged to ``min_width``, so a small pre-cropped face photo is found). When the frontal
    cascade finds nothing, the image is padded by ``pad`` of its larger side (a face that fills
    the whole image needs some context around it) and tried again, then the ``profile`` cascade
    runs on the padded image and its mirror image (faces turned left and right).
    """

    cascade: str = HAAR_CASCADE
    width: int = DETECT_WIDTH
    scale_factor: float = DETECT_SCALE_FACTOR
    min_neighbors: int = DETECT_MIN_NEIGHBORS
    min_size: int = DETECT_MIN_SIZE
    min_width: int = DETECT_MIN_WIDTH
    pad: float = DETECT_PAD
    profile: str | None = PROFILE_CASCADE


DEFAULT_DETECTOR = Detector()


@dataclass
class FaceCrop:
    """A square RGB face crop; ``box`` is the detected face (x, y, w, h) or None when none was found."""

    image: np.ndarray
    box: Box | None
    found: bool
    faces: int


def clip_has_face(found) -> bool:
    """The no-face policy of training, evaluation and prediction alike.

    A clip (or a live capture) gives the face model an input only when a face was detected in at
    least one of its frames (``found``: one flag per frame). Otherwise the face model is not used:
    the voice model decides, or the fusion model with the face flagged missing. The centred
    fallback crop is never fed to a model: a wall or a ceiling would get a confident emotion.
    """
    return bool(np.asarray(found, dtype=bool).any())


def detect_faces(image: np.ndarray, detector: Detector = DEFAULT_DETECTOR) -> list[Box]:
    """Detect faces in an RGB image (see ``Detector``); boxes (x, y, w, h) in image pixels inside the image.

    The largest confident face comes first: boxes backed by at least half as many raw detections
    as the best one, largest first, then the weaker ones (on skimage's astronaut photo the largest
    box is a false positive on the shuttle, backed by 7 raw detections against the face's 47).
    """
    import cv2

    image = as_rgb(image)
    height, width = image.shape[:2]
    scale = detector.width / width if width > detector.width else max(1.0, detector.min_width / width)
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    if scale != 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    grey = cv2.equalizeHist(grey)
    found = _cascade_boxes(grey, detector.cascade, detector)
    if not found and detector.pad > 0:
        border = int(round(detector.pad * max(grey.shape)))
        padded = cv2.copyMakeBorder(grey, border, border, border, border, cv2.BORDER_CONSTANT, value=int(grey.mean()))
        found = _cascade_boxes(padded, detector.cascade, detector)
        if not found and detector.profile:
            mirrored = np.ascontiguousarray(padded[:, ::-1])
            found = _cascade_boxes(padded, detector.profile, detector)
            found += [((padded.shape[1] - x - w, y, w, h), votes) for (x, y, w, h), votes in _cascade_boxes(mirrored, detector.profile, detector)]
        found = [((x - border, y - border, w, h), votes) for (x, y, w, h), votes in found]
    strongest = max((votes for _, votes in found), default=0)
    ranked = sorted(found, key=lambda item: (item[1] * 2 < strongest, -item[0][2] * item[0][3]))
    boxes = [_inside(tuple(int(round(value / scale)) for value in box), width, height) for box, _ in ranked]
    return [box for box in boxes if box[2] > 0 and box[3] > 0]


def _cascade_boxes(grey: np.ndarray, cascade: str, detector: Detector) -> list[tuple[Box, int]]:
    """(box, number of raw detections merged into it) for each face the cascade finds."""
    found, votes = load_cascade(cascade).detectMultiScale2(
        grey, scaleFactor=detector.scale_factor, minNeighbors=detector.min_neighbors, minSize=(detector.min_size, detector.min_size))
    return [(tuple(int(value) for value in box), int(count)) for box, count in zip(found, votes)]


def _inside(box: Box, width: int, height: int) -> Box:
    """``box`` clipped to the image."""
    x, y, w, h = box
    left, top = max(0, x), max(0, y)
    return left, top, min(width, x + w) - left, min(height, y + h) - top


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


def crop_face(image: np.ndarray, size: int = FACE_SIZE, margin: float = FACE_MARGIN, detector: Detector = DEFAULT_DETECTOR) -> FaceCrop:
    """Crop the largest detected face as a ``size`` x ``size`` RGB image (see ``crop_box``).

    With several faces the largest wins. With none, falls back to a centred square of
    FALLBACK_FRACTION of the shorter side, and ``found`` is False.
    """
    image = as_rgb(image)
    boxes = detect_faces(image, detector)
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


def crop_clip_faces(frames: list[np.ndarray], size: int = FACE_SIZE, margin: float = FACE_MARGIN, detections=None,
                    detector: Detector = DEFAULT_DETECTOR):
    """Crop each frame of a clip; frames without a face reuse the nearest frame's detected box.

    ``detections`` (one ``detect_faces`` list per frame) skips detecting again when the caller has them.
    Returns (crops uint8 (n, size, size, 3), found bool (n,), boxes int (n, 4)): ``found`` marks
    frames where a face was detected, ``boxes`` the face box each crop used (-1 for the centred
    fallback, used only when no frame of the clip has a face; see ``clip_has_face``).
    """
    if detections is None:
        detections = [detect_faces(frame, detector) for frame in frames]
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
