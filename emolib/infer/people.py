"""Every face of a prediction's frames: detected, linked into tracks (``emolib.tracks``), the main one cropped for the
face and fusion models as in training, the others predicted by the face model alone.

``Prediction.faces`` lists them, the main face first: ``{id, box, found_in_frames, probabilities, label, main, source}``.
The main face's probabilities are the prediction's final ones (fused with the voice when there is one); another
face's are the face model's alone (``source: "face"``), since the voice belongs to one person.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..faces import as_faces, crop_track, detect
from ..tracks import Track, link, ordered


@dataclass
class ClipFaces:
    """The faces of a clip's frames: per-frame detections and the tracks, main first (empty without faces)."""

    detections: list
    tracks: list[Track]

    @property
    def main(self) -> Track | None:
        return self.tracks[0] if self.tracks else None


def find_faces(frames: list[np.ndarray], settings, whole_image: bool = False) -> ClipFaces:
    """Detect and track the faces of ``frames`` with ``settings.detector``; ``whole_image``: each frame is one face."""
    if whole_image:
        detections = [[(0, 0, frame.shape[1], frame.shape[0])] for frame in frames]
    else:
        detections = [detect(frame, settings.detector) for frame in frames]
    return ClipFaces(detections, ordered(link(as_faces(detections))))


def first_box(track: Track) -> list[int]:
    return [int(value) for value in track.faces[track.frames[0]].box]


def other_faces(predictor, frames, faces: ClipFaces) -> list[dict]:
    """The face model's own prediction for every face but the main one."""
    entries = []
    for rank, track in enumerate(faces.tracks[1:], start=1):
        crops, _, _ = crop_track(frames, track, predictor.face_settings.image_size, predictor.face_settings.margin, predictor.face_settings.align)
        probabilities = predictor._classify(predictor.face, predictor.face_features(crops))
        entries.append({"id": rank, "box": first_box(track), "found_in_frames": len(track.faces), "probabilities": probabilities,
                        "label": max(probabilities, key=probabilities.get), "main": False, "source": "face"})
    return entries


def main_face(faces: ClipFaces, probabilities: dict, source: str) -> dict:
    return {"id": 0, "box": first_box(faces.main), "found_in_frames": len(faces.main.faces), "probabilities": dict(probabilities),
            "label": max(probabilities, key=probabilities.get), "main": True, "source": source}
