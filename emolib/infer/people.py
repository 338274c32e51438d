"""Every face of a prediction's frames: detected, linked into tracks (``emolib.tracks``), the main one cropped for the
face and fusion models as in training, the others predicted by the face model alone.

``Prediction.faces`` lists them, the main face first: ``{id, box, found_in_frames, probabilities, label, main, source}``.
The main face's probabilities are the prediction's final ones (fused with the voice when there is one); another
face's are the face model's alone (``source: "face"``), since the voice belongs to one person.

Windows of a file that overlap hold the same frames (a 16-frame model's 4 s windows every 1 s share 12 of 16): with
``SharedFrames`` each decoded frame's faces are detected once and each face crop is embedded once, whichever windows
hold them. The results are the same as detecting and embedding per window (a crop depends only on its frame and face).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..faces import as_faces, crop_track, detect_many, face_crop
from ..tracks import Track, link, ordered
from .scoring import classify

EMBED_BATCH = 32  # face crops per encoder call when a window brings new frames


@dataclass
class ClipFaces:
    """The faces of a clip's frames: per-frame detections and the tracks, main first (empty without faces)."""

    detections: list
    tracks: list[Track]

    @property
    def main(self) -> Track | None:
        return self.tracks[0] if self.tracks else None


@dataclass
class SharedFrames:
    """One file's frames as its windows share them (``frame_ids``: each window's frame numbers, ``TimelineInputs.frame_ids``):
    the faces of each frame number, and the per-frame embedding of each (frame number, face) crop."""

    faces: dict = field(default_factory=dict)
    embeddings: dict = field(default_factory=dict)


def detect_all(shared: SharedFrames, windows, frame_ids, settings) -> None:
    """Detect the faces of every frame the windows hold (``windows``: each window's frames; ``frame_ids``: their numbers) that
    ``shared`` does not have yet, all in one ``detect_many`` (BlazeFace then runs full batches, not a window's few new frames)."""
    new = {}
    for frames, numbers in zip(windows, frame_ids):
        for frame, number in zip(frames or [], numbers):
            if number not in shared.faces:
                new.setdefault(number, frame)
    shared.faces.update(zip(new, detect_many(list(new.values()), settings.detector)))


def find_faces(frames: list[np.ndarray], settings, whole_image: bool = False, frame_ids=None, shared: SharedFrames | None = None) -> ClipFaces:
    """Detect and track the faces of ``frames`` with ``settings.detector``; ``whole_image``: each frame is one face. With
    ``shared`` and the frames' numbers ``frame_ids``, a frame another window already had is not detected again."""
    if whole_image:
        detections = [[(0, 0, frame.shape[1], frame.shape[0])] for frame in frames]
    elif shared is not None and frame_ids is not None:
        detect_all(shared, [frames], [frame_ids], settings)
        detections = [shared.faces[number] for number in frame_ids]
    else:
        detections = detect_many(frames, settings.detector)
    return ClipFaces(detections, ordered(link(as_faces(detections))))


def track_features(predictor, frames, track: Track, frame_ids=None, shared: SharedFrames | None = None):
    """The face model's clip embedding (1, D) of ``track``'s crops in ``frames`` (a frame without it takes its nearest frame's
    face, as ``faces.crop_track``). With ``shared``, only the crops no earlier window embedded are cropped and embedded."""
    settings = predictor.face_settings
    if shared is None or frame_ids is None:
        crops, _, _ = crop_track(frames, track, settings.image_size, settings.margin, settings.align)
        return predictor.face_features(crops)
    faces = [track.nearest(index) for index in range(len(frames))]
    keys = [(number, face_key(face)) for number, face in zip(frame_ids, faces)]
    missing = list({key: index for index, key in enumerate(keys) if key not in shared.embeddings}.items())
    for start in range(0, len(missing), EMBED_BATCH):
        part = missing[start : start + EMBED_BATCH]
        crops = np.stack([face_crop(frames[index], faces[index], settings.image_size, settings.margin, settings.align) for _, index in part])
        for (key, _), embedding in zip(part, predictor.frame_embeddings(crops)):
            shared.embeddings[key] = embedding
    return predictor.pooled_face(np.stack([shared.embeddings[key] for key in keys]))


def face_key(face) -> tuple:
    """What a crop of a frame depends on besides the frame: the face's box and keypoints."""
    return (tuple(face.box), None if face.keypoints is None else np.asarray(face.keypoints, dtype=np.float32).tobytes())


def first_box(track: Track) -> list[int]:
    return [int(value) for value in track.faces[track.frames[0]].box]


def other_faces(predictor, frames, faces: ClipFaces, frame_ids=None, shared: SharedFrames | None = None) -> list[dict]:
    """The face model's own prediction for every face but the main one."""
    entries = []
    for rank, track in enumerate(faces.tracks[1:], start=1):
        probabilities = classify(predictor.face, track_features(predictor, frames, track, frame_ids, shared), predictor.labels)
        entries.append({"id": rank, "box": first_box(track), "found_in_frames": len(track.faces), "probabilities": probabilities,
                        "label": max(probabilities, key=probabilities.get), "main": False, "source": "face"})
    return entries


def main_face(faces: ClipFaces, probabilities: dict, source: str) -> dict:
    return {"id": 0, "box": first_box(faces.main), "found_in_frames": len(faces.main.faces), "probabilities": dict(probabilities),
            "label": max(probabilities, key=probabilities.get), "main": True, "source": source}
