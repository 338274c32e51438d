"""Face detection on real photographs available offline, and on the synthetic set: three detectors side by side,
the frontal-only Haar cascade of emolib 0.1, the current Haar detector (padding, enlargement of small images,
profile cascades; what checkpoints made before BlazeFace keep), BlazeFace ``auto`` (short range, then full range only when
short finds nothing or only small faces; models made before ``both`` keep it) and BlazeFace ``both`` (both ranges merged by
one weighted NMS; the default of new models).

Sources: scikit-image's ``data.astronaut()`` (and crops and in-plane rotations of its face),
``data.camera()`` (a three-quarter view), ``data.lfw_subset()`` (100 faces and 100 non-faces, 25x25
crops from Labeled Faces in the Wild), Debian's opencv-doc ``messi5.jpg`` (a small face), a group
photo made by pasting 4 different real faces onto one canvas, a group photo of one near face and four
people further away (``near_and_far_photo``), and synthetic CREMA-D frames (480x360).
The section it writes goes between markers in BENCHMARKS.md, leaving the rest of the file alone.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..faces import HAAR, Detector, detect_faces
from .report import replace_section

MESSI = Path("/usr/share/doc/opencv-doc/examples/data/messi5.jpg")
ASTRONAUT_FACE = (174, 66, 98, 98)
CAMERA_FACE = (190, 60, 110, 130)
FRONTAL_ONLY = Detector(kind="haar", min_width=0, pad=0.0, profile=None)
DETECTORS = (("frontal_only", FRONTAL_ONLY), ("haar", HAAR), ("blazeface_auto", Detector(model="auto")), ("blazeface", Detector(model="both")))
NAMES = {"frontal_only": "Haar frontal only", "haar": "Haar", "blazeface_auto": "BlazeFace auto", "blazeface": "BlazeFace both"}
ROTATIONS = (-45, -30, -20, -10, 10, 20, 30, 45)
GROUP = 4
GROUP_SLOT, GROUP_FACE = 320, 200  # a 2x2 group on a 640x640 canvas
NEAR_WIDTH, FAR_TILE = 340, 320  # near_and_far_photo: the near portrait's width, and the 2x2 tiles of the others
START, END = "<!-- face-detection:start -->", "<!-- face-detection:end -->"


def _crop(image, box, fraction=1.0):
    x, y, w, h = box
    dx, dy = int(w * (1 - fraction) / 2), int(h * (1 - fraction) / 2)
    return image[y + dy: y + h - dy, x + dx: x + w - dx]


def group_photo() -> tuple[np.ndarray, list[tuple]]:
    """4 different real faces (the astronaut, the cameraman, two LFW faces enlarged) pasted two by two on one grey canvas,
    each in a slot with some grey around it, as faces in a group photo have; and where the pasted pictures are."""
    import cv2
    import skimage.data

    grey = lambda image: np.repeat(image[:, :, None], 3, axis=2) if image.ndim == 2 else image  # noqa: E731
    lfw = (skimage.data.lfw_subset() * 255).astype(np.uint8)
    astronaut, camera = skimage.data.astronaut(), grey(skimage.data.camera())
    pieces = [_crop(astronaut, (134, 16, 178, 198)), _crop(camera, (150, 20, 190, 210)), grey(lfw[3]), grey(lfw[11])]
    canvas = np.full((2 * GROUP_SLOT, 2 * GROUP_SLOT, 3), 128, dtype=np.uint8)
    boxes = []
    for index, piece in enumerate(pieces):
        piece = cv2.resize(piece, (GROUP_FACE, int(GROUP_FACE * piece.shape[0] / piece.shape[1])), interpolation=cv2.INTER_CUBIC)
        x = (index % 2) * GROUP_SLOT + (GROUP_SLOT - piece.shape[1]) // 2
        y = (index // 2) * GROUP_SLOT + (GROUP_SLOT - piece.shape[0]) // 2
        canvas[y: y + piece.shape[0], x: x + piece.shape[1]] = piece
        boxes.append((x, y, piece.shape[1], piece.shape[0]))
    return canvas, boxes


def near_and_far_photo() -> tuple[np.ndarray, list[tuple]]:
    """A 1000x640 group photo: the astronaut close up on the left (a near face, which the short-range model finds), and four
    people further away in a 2x2 block of 320 px tiles on the right (the astronaut twice, once mirrored, a closer crop of her,
    and the cameraman in profile); and the regions that hold each of the five faces (the near face's, then each tile)."""
    import cv2
    import skimage.data

    astronaut, camera = skimage.data.astronaut(), np.repeat(skimage.data.camera()[:, :, None], 3, axis=2)
    height, width = 2 * FAR_TILE, NEAR_WIDTH + 20 + 2 * FAR_TILE
    canvas = np.full((height, width, 3), 128, dtype=np.uint8)
    near = cv2.resize(astronaut[0:300, 100:360], (NEAR_WIDTH, int(NEAR_WIDTH * 300 / 260)), interpolation=cv2.INTER_CUBIC)
    top = (height - near.shape[0]) // 2
    canvas[top: top + near.shape[0], 10: 10 + NEAR_WIDTH] = near
    regions = [(10, top, NEAR_WIDTH, near.shape[0])]
    far = [astronaut[0:400, 56:456], cv2.flip(astronaut[0:400, 56:456], 1), camera[0:400, 56:456], astronaut[50:350, 80:380]]
    for index, piece in enumerate(far):
        x, y = NEAR_WIDTH + 20 + (index % 2) * FAR_TILE, (index // 2) * FAR_TILE
        canvas[y: y + FAR_TILE, x: x + FAR_TILE] = cv2.resize(piece, (FAR_TILE, FAR_TILE), interpolation=cv2.INTER_AREA)
        regions.append((x, y, FAR_TILE, FAR_TILE))
    return canvas, regions


def faces_found(boxes, regions) -> tuple[int, int]:
    """(regions with a detected box centred in them, boxes centred in none): faces found and false positives of a group photo."""
    found = sum(any(_centre_inside(box, region) for box in boxes) for region in regions)
    return found, sum(not any(_centre_inside(box, region) for region in regions) for box in boxes)


def photo_sets(synthetic_frames: list[np.ndarray]) -> dict[str, tuple[list[np.ndarray], bool]]:
    """{name: (images, whether they hold a face)} of every set measured."""
    import cv2
    import skimage.data

    astronaut = skimage.data.astronaut()
    crops = [_crop(astronaut, ASTRONAUT_FACE, fraction) for fraction in (1.0, 0.9, 0.8, 0.7)]
    centre = (ASTRONAUT_FACE[0] + ASTRONAUT_FACE[2] / 2, ASTRONAUT_FACE[1] + ASTRONAUT_FACE[3] / 2)
    rotations = [cv2.warpAffine(astronaut, cv2.getRotationMatrix2D(centre, angle, 1.0), (512, 512), borderMode=cv2.BORDER_REFLECT)
                 for angle in ROTATIONS]
    lfw = (skimage.data.lfw_subset() * 255).astype(np.uint8)
    sets = {
        "astronaut (512x512 portrait)": ([astronaut], True),
        "astronaut face cropped to fill the image (100-70 % of the face box)": (crops, True),
        "astronaut rotated in-plane ±10/20/30/45°": (rotations, True),
        "camera (512x512, three-quarter view)": ([np.repeat(skimage.data.camera()[:, :, None], 3, axis=2)], True),
        "LFW faces (25x25 pre-cropped)": ([np.repeat(face[:, :, None], 3, axis=2) for face in lfw[:100]], True),
        "LFW non-faces (false positives)": ([np.repeat(face[:, :, None], 3, axis=2) for face in lfw[100:]], False),
        "synthetic CREMA-D frames (480x360)": (synthetic_frames, True),
    }
    if MESSI.is_file():
        sets["messi5.jpg (opencv-doc, small face)"] = ([cv2.cvtColor(cv2.imread(str(MESSI)), cv2.COLOR_BGR2RGB)], True)
    return sets


def detection_rates(synthetic_frames: list[np.ndarray]) -> list[dict]:
    """Per set and detector: images with a face found (for the non-face set: false positives) and ms per image; for the
    group photos, the faces found (a box centred in a face's region) and the other boxes (false positives)."""
    rows = []
    for name, (images, faces) in photo_sets(synthetic_frames).items():
        row = {"set": name, "images": len(images), "faces": faces}
        for label, detector in DETECTORS:
            started = time.perf_counter()
            row[label] = sum(bool(detect_faces(image, detector)) for image in images)
            row[f"{label}_ms"] = 1000 * (time.perf_counter() - started) / max(1, len(images))
        rows.append(row)
    for name, (canvas, regions) in {
        f"group photo: {GROUP} different real faces pasted on one 640x640 canvas (faces found / other boxes)": group_photo(),
        "group photo: one near face and 4 people further away, 1000x640 (faces found of 5 / other boxes)": near_and_far_photo(),
    }.items():
        row = {"set": name, "images": 1, "faces": True}
        for label, detector in DETECTORS:
            started = time.perf_counter()
            boxes = detect_faces(canvas, detector)
            row[f"{label}_ms"] = 1000 * (time.perf_counter() - started)
            row[label] = "{} / {}".format(*faces_found(boxes, regions))
        rows.append(row)
    return rows


def _centre_inside(box, region) -> bool:
    x, y, w, h = box
    rx, ry, rw, rh = region
    return rx <= x + w / 2 <= rx + rw and ry <= y + h / 2 <= ry + rh


def markdown(rows: list[dict], command: str) -> str:
    """The BENCHMARKS.md section for ``rows``."""
    lines = [START, "## Face detection on real photographs (offline sources)", "",
             f"`{command}`, one run on this machine. *found* counts images with at least one face detected "
             "(for the non-face set: false positives). Haar, frontal only = emolib 0.1's detector; Haar = frontal, then padded "
             "(a face filling the image), small images enlarged to 160 px, then the profile cascade on the image and its mirror "
             "(what checkpoints made before BlazeFace keep); BlazeFace auto = MediaPipe's short-range model, then the full-range one "
             "only when it finds nothing or only small faces (what models made before `both` keep); BlazeFace both = both models on "
             "every image, their detections merged by one weighted NMS (the default of new models; it costs both models' time).", "",
             "| set | images | " + " | ".join(f"found: {NAMES[label]}" for label, _ in DETECTORS) + " | "
             + " | ".join(f"ms/image: {NAMES[label]}" for label, _ in DETECTORS) + " |",
             "| --- | ---: | " + " | ".join("---:" for _ in range(2 * len(DETECTORS))) + " |"]
    for row in rows:
        lines.append(f"| {row['set']} | {row['images']} | " + " | ".join(str(row[label]) for label, _ in DETECTORS) + " | "
                     + " | ".join(f"{row[label + '_ms']:.1f}" for label, _ in DETECTORS) + " |")
    lines += ["", "Not measured: faces turned further than three-quarter view (no such photograph ships offline).", END]
    return "\n".join(lines)


def update_section(path, section: str) -> str:
    """``path``'s text with this section replaced (or appended)."""
    return replace_section(path, section, START, END)
