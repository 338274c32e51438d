"""Face detection on real photographs available offline, and on the synthetic set: the current detector
(padding, enlargement of small images, profile cascades) against the frontal-only detector of emolib 0.1.

Sources: scikit-image's ``data.astronaut()`` (and crops and in-plane rotations of its face),
``data.lfw_subset()`` (100 faces and 100 non-faces, 25x25 crops from Labeled Faces in the Wild),
Debian's opencv-doc ``messi5.jpg``, and synthetic CREMA-D frames. The section it writes goes between
markers in BENCHMARKS.md, leaving the rest of the file alone.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..faces import Detector, detect_faces
from .report import replace_section

MESSI = Path("/usr/share/doc/opencv-doc/examples/data/messi5.jpg")
ASTRONAUT_FACE = (174, 66, 98, 98)
FRONTAL_ONLY = Detector(min_width=0, pad=0.0, profile=None)
START, END = "<!-- face-detection:start -->", "<!-- face-detection:end -->"


def photo_sets(synthetic_frames: list[np.ndarray]) -> dict[str, tuple[list[np.ndarray], bool]]:
    """{name: (images, whether they hold a face)} of every set measured."""
    import cv2
    import skimage.data

    astronaut = skimage.data.astronaut()
    x, y, w, h = ASTRONAUT_FACE
    crops = [astronaut[y + int(h * (1 - f) / 2): y + h - int(h * (1 - f) / 2), x + int(w * (1 - f) / 2): x + w - int(w * (1 - f) / 2)]
             for f in (1.0, 0.9, 0.8, 0.7)]
    rotations = [cv2.warpAffine(astronaut, cv2.getRotationMatrix2D((256, 256), angle, 1.0), (512, 512), borderMode=cv2.BORDER_REFLECT)
                 for angle in (-30, -20, -10, 10, 20, 30)]
    lfw = (skimage.data.lfw_subset() * 255).astype(np.uint8)
    sets = {
        "astronaut (512x512 portrait)": ([astronaut], True),
        "astronaut face cropped to fill the image (100-70 % of the face box)": (crops, True),
        "astronaut rotated in-plane ±10/20/30°": (rotations, True),
        "LFW faces (25x25 pre-cropped)": ([np.repeat(face[:, :, None], 3, axis=2) for face in lfw[:100]], True),
        "LFW non-faces (false positives)": ([np.repeat(face[:, :, None], 3, axis=2) for face in lfw[100:]], False),
        "synthetic CREMA-D frames": (synthetic_frames, True),
    }
    if MESSI.is_file():
        sets["messi5.jpg (opencv-doc, small face)"] = ([cv2.cvtColor(cv2.imread(str(MESSI)), cv2.COLOR_BGR2RGB)], True)
    return sets


def detection_rates(synthetic_frames: list[np.ndarray]) -> list[dict]:
    """Per set: images, found by the frontal-only detector and by the current one, and ms per image for each."""
    rows = []
    for name, (images, faces) in photo_sets(synthetic_frames).items():
        row = {"set": name, "images": len(images), "faces": faces}
        for label, detector in (("frontal_only", FRONTAL_ONLY), ("current", Detector())):
            started = time.perf_counter()
            row[label] = sum(bool(detect_faces(image, detector)) for image in images)
            row[f"{label}_ms"] = 1000 * (time.perf_counter() - started) / max(1, len(images))
        rows.append(row)
    return rows


def markdown(rows: list[dict], command: str) -> str:
    """The BENCHMARKS.md section for ``rows``."""
    lines = [START, "## Face detection on real photographs (offline sources)", "",
             f"`{command}`, one run on this machine. *found* counts images with at least one face detected "
             "(for the non-face set: false positives). Frontal only = emolib 0.1's detector; current = frontal, then "
             "padded (a face filling the image), small images enlarged to 160 px, then the profile cascade on the image and its mirror.", "",
             "| set | images | found, frontal only | found, current | ms/image frontal only | ms/image current |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for row in rows:
        lines.append(f"| {row['set']} | {row['images']} | {row['frontal_only']} | {row['current']} | "
                     f"{row['frontal_only_ms']:.1f} | {row['current_ms']:.1f} |")
    lines += ["", "Not measured: faces turned about 45° (no such photograph ships offline); the profile cascade is there for them.", END]
    return "\n".join(lines)


def update_section(path, section: str) -> str:
    """``path``'s text with this section replaced (or appended)."""
    return replace_section(path, section, START, END)
