"""Faces in images: detection (BlazeFace with keypoints, or Haar), aligned or square crops, the main face, and the
one no-face policy.

``Detector`` holds every detection parameter; it is stored in each face checkpoint (inside
``transforms.FaceSettings``) so training, evaluation and live inference detect the same way. A
checkpoint written before BlazeFace has no ``kind`` and keeps Haar (``transforms.FaceSettings.from_stored``).
Crops are aligned from the keypoints when the settings ask for it (``align_crop``: eyes level,
centred and scaled by the eye distance), else square around the box (``crop_box``). In a clip the
faces are linked into tracks (``tracks``) and the main track is the one cropped.
The on-disk crop cache of whole datasets is ``emolib.data.face_cache``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
import numpy as np

from .blazeface import Face
from .errors import ModelError
from .haar import (DETECT_MIN_NEIGHBORS, DETECT_MIN_SIZE, DETECT_MIN_WIDTH, DETECT_PAD, DETECT_SCALE_FACTOR, DETECT_WIDTH, HAAR_CASCADE,
                   PROFILE_CASCADE, haar_boxes, load_cascade)
from .tracks import link, main_track
from .video import as_rgb

FACE_SIZE = 224
FACE_MARGIN = 0.25
FALLBACK_FRACTION = 0.8
KINDS = ("blazeface", "haar")
BLAZEFACE_MODELS = ("both", "auto", "short", "full")
NMS_IOU = 0.3
SMALL_FACE = 0.12  # auto: a largest face narrower than this share of the image's longer side is retried with the full-range model
FACE_WIDTH_IN_EYES = 2.2  # an aligned crop's face width, in eye distances (so that margin means what it means for a box)
EYE_LINE = 0.42  # where the eyes sit in an aligned face (share of its height from the top)

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class Detector:
    """Face detection settings.

    ``kind="blazeface"`` (the default for new models): MediaPipe's BlazeFace (``emolib.blazeface``),
    every face with 6 keypoints; ``model`` "both" (the default of new models: the short- and the
    full-range model, their detections merged by one weighted NMS, so a near face does not hide the
    distant ones of a group photo), "short" (faces within about 2 m), "full" (small and distant
    faces) or "auto" (what models made before "both" keep: short, then full only when short finds
    nothing or only faces narrower than ``small_face`` of the image's longer side); ``score`` the
    detection threshold (None: MediaPipe's, 0.5 short / 0.6 full); ``nms_iou`` the weighted-NMS overlap.

    ``kind="haar"``: OpenCV's cascades on a grey, equalised copy ``width`` pixels wide at most
    (smaller images are enlarged to ``min_width``); when the frontal cascade finds nothing the image
    is padded by ``pad`` of its larger side and tried again, then the ``profile`` cascade runs on
    the padded image and its mirror image. (BlazeFace needs no padded retry: on the LFW crops it
    found one more face of 100 and made 16 more false positives of 100.)
    """

    cascade: str = HAAR_CASCADE
    width: int = DETECT_WIDTH
    scale_factor: float = DETECT_SCALE_FACTOR
    min_neighbors: int = DETECT_MIN_NEIGHBORS
    min_size: int = DETECT_MIN_SIZE
    min_width: int = DETECT_MIN_WIDTH
    pad: float = DETECT_PAD
    profile: str | None = PROFILE_CASCADE
    kind: str = "blazeface"
    model: str = "both"
    score: float | None = None
    nms_iou: float = NMS_IOU
    small_face: float = SMALL_FACE

    def __post_init__(self):
        if self.kind not in KINDS or (self.kind == "blazeface" and self.model not in BLAZEFACE_MODELS):
            raise ModelError(f"face detector {self.kind!r} / model {self.model!r}: expected kind {' or '.join(KINDS)}, "
                             f"BlazeFace model {', '.join(BLAZEFACE_MODELS)}")


DEFAULT_DETECTOR = Detector()
HAAR = Detector(kind="haar")


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


def detect(image: np.ndarray, detector: Detector = DEFAULT_DETECTOR) -> list[Face]:
    """Every face in an RGB image (see ``Detector``), largest first: ``blazeface.Face`` records (box, score, keypoints;
    Haar's have no keypoints)."""
    return detect_many([image], detector)[0]


def detect_many(images: list[np.ndarray], detector: Detector = DEFAULT_DETECTOR) -> list[list[Face]]:
    """``detect`` of each image; BlazeFace runs its networks on several images at a time (the same faces, faster)."""
    images = [as_rgb(image) for image in images]
    if detector.kind == "haar":
        return [[Face(box) for box in haar_boxes(image, detector)] for image in images]
    return [sorted(faces, key=lambda face: -face.box[2] * face.box[3]) for faces in _blazeface(images, detector)]


def _blazeface(images: list[np.ndarray], detector: Detector) -> list[list[Face]]:
    from . import blazeface

    if detector.model != "auto":
        return blazeface.detect_many(images, detector.model, detector.score, detector.nms_iou)
    found = blazeface.detect_many(images, "short", detector.score, detector.nms_iou)
    # auto: the full-range model where the short-range one finds nothing or only small faces
    retry = [index for index, (image, faces) in enumerate(zip(images, found))
             if not faces or max(face.box[2] for face in faces) < detector.small_face * max(image.shape[:2])]
    for index, distant in zip(retry, blazeface.detect_many([images[index] for index in retry], "full", detector.score, detector.nms_iou)):
        found[index] = distant or found[index]
    return found


def detect_faces(image: np.ndarray, detector: Detector = DEFAULT_DETECTOR) -> list[Box]:
    """The boxes (x, y, w, h) of ``detect``, in image pixels inside the image, largest first."""
    return [face.box for face in detect(image, detector) if face.box[2] > 0 and face.box[3] > 0]


def crop_face(image: np.ndarray, size: int = FACE_SIZE, margin: float = FACE_MARGIN, detector: Detector = DEFAULT_DETECTOR,
              align: bool = False) -> FaceCrop:
    """Crop the largest detected face as a ``size`` x ``size`` RGB image (``face_crop``: aligned when ``align`` and keypoints exist).

    With several faces the largest wins. With none, falls back to a centred square of
    FALLBACK_FRACTION of the shorter side, and ``found`` is False.
    """
    image = as_rgb(image)
    faces = detect(image, detector)
    if not faces:
        return FaceCrop(crop_box(image, centre_box(image), size, margin=0.0), None, False, 0)
    return FaceCrop(face_crop(image, faces[0], size, margin, align), faces[0].box, True, len(faces))


def face_crop(image: np.ndarray, face: Face, size: int = FACE_SIZE, margin: float = FACE_MARGIN, align: bool = False) -> np.ndarray:
    """The one crop function of training, evaluation and inference: ``align_crop`` when ``align`` and the face has keypoints,
    else ``crop_box`` around its box."""
    if align and face.keypoints is not None:
        return align_crop(image, face.keypoints, size, margin)
    return crop_box(image, face.box, size, margin)


def align_crop(image: np.ndarray, keypoints: np.ndarray, size: int = FACE_SIZE, margin: float = FACE_MARGIN) -> np.ndarray:
    """A ``size`` x ``size`` crop rotated so that the eyes are level, scaled so that the face (``FACE_WIDTH_IN_EYES`` eye
    distances wide) plus ``margin`` on each side fills it, with the eyes at ``EYE_LINE`` of the face's height."""
    import cv2

    transform = alignment(keypoints, size, margin)
    return cv2.warpAffine(as_rgb(image), transform, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))


def alignment(keypoints: np.ndarray, size: int = FACE_SIZE, margin: float = FACE_MARGIN) -> np.ndarray:
    """The 2x3 affine map from image pixels to the aligned crop of ``align_crop`` (BlazeFace keypoints: right eye, left eye first)."""
    right, left = np.asarray(keypoints[0], dtype=np.float64), np.asarray(keypoints[1], dtype=np.float64)
    eyes = (right + left) / 2
    distance = max(float(np.linalg.norm(left - right)), 1.0)
    angle = math.atan2(left[1] - right[1], left[0] - right[0])
    face = FACE_WIDTH_IN_EYES * distance
    scale = size / (face * (1 + 2 * margin))
    cos, sin = math.cos(-angle) * scale, math.sin(-angle) * scale
    rotation = np.array([[cos, -sin], [sin, cos]])
    target = np.array([size / 2, size / 2 + (EYE_LINE - 0.5) * face * scale])
    return np.hstack([rotation, (target - rotation @ eyes)[:, None]])


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
                    detector: Detector = DEFAULT_DETECTOR, align: bool = False):
    """Crop the main face of a clip in each frame (``tracks.main_track``: present in most frames, largest on ties); frames
    where it was not found reuse its nearest frame's detection.

    ``detections`` (one ``detect`` or ``detect_faces`` list per frame) skips detecting again when the caller has them.
    Returns (crops uint8 (n, size, size, 3), found bool (n,), boxes int (n, 4)): ``found`` marks
    frames where the main face was detected, ``boxes`` the face box each crop used (-1 for the centred
    fallback, used only when no frame of the clip has a face; see ``clip_has_face``).
    """
    if detections is None:
        detections = detect_many(frames, detector)
    return crop_track(frames, main_track(link(as_faces(detections))), size, margin, align)


def as_faces(detections) -> list[list[Face]]:
    """Per-frame detections as ``Face`` records (a plain box becomes a face without keypoints)."""
    return [[face if isinstance(face, Face) else Face(tuple(face)) for face in faces] for faces in detections]


def crop_track(frames: list[np.ndarray], track, size: int = FACE_SIZE, margin: float = FACE_MARGIN, align: bool = False):
    """(crops, found, boxes) of one ``tracks.Track`` in each frame, as ``crop_clip_faces`` describes; None: no face."""
    found = np.array([track is not None and i in track.faces for i in range(len(frames))], dtype=bool)
    boxes = np.full((len(frames), 4), -1, dtype=np.int64)
    crops = np.empty((len(frames), size, size, 3), dtype=np.uint8)
    for i, frame in enumerate(frames):
        if track is not None:
            face = track.nearest(i)
            boxes[i] = face.box
            crops[i] = face_crop(frame, face, size, margin, align)
        else:
            crops[i] = crop_box(frame, centre_box(frame), size, margin=0.0)
    return crops, found, boxes
