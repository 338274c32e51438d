"""OpenCV's Haar cascades (2001): the face detector of checkpoints written before BlazeFace, and ``Detector(kind="haar")``.

Detection runs on a grey, equalised copy at most ``width`` pixels wide (smaller images enlarged to
``min_width``); when the frontal cascade finds nothing, the image is padded and tried again, then the
profile cascade runs on the padded image and its mirror image.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from .errors import ModelError

HAAR_CASCADE = "haarcascade_frontalface_default.xml"
PROFILE_CASCADE = "haarcascade_profileface.xml"
DETECT_WIDTH = 320
DETECT_MIN_WIDTH = 160
DETECT_PAD = 0.25
DETECT_SCALE_FACTOR = 1.1
DETECT_MIN_NEIGHBORS = 5
DETECT_MIN_SIZE = 40

Box = tuple[int, int, int, int]


def haar_boxes(image: np.ndarray, detector) -> list[Box]:
    """Haar detection: the largest confident face first (boxes backed by at least half as many raw detections as the best
    one, largest first, then the weaker ones: on skimage's astronaut photo the largest box is a false positive on the
    shuttle, backed by 7 raw detections against the face's 47)."""
    import cv2

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
    boxes = [inside(tuple(int(round(value / scale)) for value in box), width, height) for box, _ in ranked]
    return [box for box in boxes if box[2] > 0 and box[3] > 0]


def _cascade_boxes(grey: np.ndarray, cascade: str, detector) -> list[tuple[Box, int]]:
    """(box, number of raw detections merged into it) for each face the cascade finds."""
    found, votes = load_cascade(cascade).detectMultiScale2(
        grey, scaleFactor=detector.scale_factor, minNeighbors=detector.min_neighbors, minSize=(detector.min_size, detector.min_size))
    return [(tuple(int(value) for value in box), int(count)) for box, count in zip(found, votes)]


def inside(box: Box, width: int, height: int) -> Box:
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
