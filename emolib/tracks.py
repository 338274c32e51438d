"""Faces across frames: detections linked into tracks, and the clip's main track.

Greedy matching, frame by frame: each live track is paired with the detection that overlaps its
last box most (IoU), provided the overlap is at least ``MIN_IOU`` or, for a face that moved fast,
its keypoints (or box centre) lie within ``MAX_SHIFT`` of its size from the track's last ones. An
unmatched detection starts a new track; a track ends after ``MAX_MISSED`` frames without a match.
The main track is the one present in most frames, the largest on ties: in CREMA-D and RAVDESS,
the speaker.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

MIN_IOU = 0.3
MAX_SHIFT = 0.5  # of the face's width
MAX_MISSED = 2


@dataclass
class Track:
    """One face over time: ``faces`` maps frame index -> the detection (anything with ``box`` and ``keypoints``)."""

    id: int
    faces: dict = field(default_factory=dict)

    @property
    def frames(self) -> list[int]:
        return sorted(self.faces)

    @property
    def area(self) -> float:
        return float(np.mean([face.box[2] * face.box[3] for face in self.faces.values()]))

    def last(self):
        return self.faces[max(self.faces)]

    def nearest(self, frame: int):
        """The detection of this track in ``frame``, else in the nearest frame where it was found."""
        return self.faces[min(self.faces, key=lambda index: (abs(index - frame), index))]


def box_iou(a, b) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    width = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    height = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    overlap = width * height
    return overlap / max(aw * ah + bw * bh - overlap, 1e-9)


def shift(a, b) -> float:
    """How far face ``b`` is from face ``a``, in ``a``'s widths: mean keypoint distance when both have keypoints, else box centres."""
    width = max(a.box[2], 1)
    if a.keypoints is not None and b.keypoints is not None:
        return float(np.linalg.norm(np.asarray(a.keypoints) - np.asarray(b.keypoints), axis=1).mean()) / width
    centre = lambda face: np.array([face.box[0] + face.box[2] / 2, face.box[1] + face.box[3] / 2])  # noqa: E731
    return float(np.linalg.norm(centre(a) - centre(b))) / width


def link(detections: list[list], min_iou: float = MIN_IOU, max_shift: float = MAX_SHIFT, max_missed: int = MAX_MISSED) -> list[Track]:
    """Tracks of the faces in ``detections`` (one list of faces per frame), ids in order of appearance."""
    tracks: list[Track] = []
    live: list[Track] = []
    for frame, faces in enumerate(detections):
        live = [track for track in live if frame - max(track.faces) <= max_missed + 1]
        pairs = []
        for t, track in enumerate(live):
            for d, face in enumerate(faces):
                overlap, moved = box_iou(track.last().box, face.box), shift(track.last(), face)
                if overlap >= min_iou or moved <= max_shift:
                    pairs.append((-overlap, moved, t, d))
        used_tracks, used_faces = set(), set()
        for _, _, t, d in sorted(pairs):
            if t not in used_tracks and d not in used_faces:
                live[t].faces[frame] = faces[d]
                used_tracks.add(t)
                used_faces.add(d)
        for d, face in enumerate(faces):
            if d not in used_faces:
                track = Track(len(tracks), {frame: face})
                tracks.append(track)
                live.append(track)
    return tracks


def main_track(tracks: list[Track]) -> Track | None:
    """The track present in most frames, the largest on ties (None without tracks)."""
    return max(tracks, key=lambda track: (len(track.faces), track.area, -track.id), default=None)


def ordered(tracks: list[Track]) -> list[Track]:
    """The main track first, then the others by frames present and size."""
    return sorted(tracks, key=lambda track: (-len(track.faces), -track.area, track.id))
