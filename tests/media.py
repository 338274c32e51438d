"""Small media generators for tests: sine waves, WAV files, drawn faces, FLV1 videos."""
from __future__ import annotations

from pathlib import Path

import numpy as np

SKIN = (224, 172, 140)
NECK = (200, 150, 120)
HAIR = (50, 30, 20)
DARK = (40, 25, 20)
BACKGROUND = (90, 110, 130)
INDEX_BITS = 8  # frame numbers are written as black/white squares along the top edge
INDEX_BLOCK = 16


def sine(freq: float = 440.0, seconds: float = 1.0, sample_rate: int = 16000, amplitude: float = 0.5) -> np.ndarray:
    """A float32 sine wave."""
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def write_wav(path, samples, sample_rate: int = 16000, subtype: str = "PCM_16") -> Path:
    """Write samples ((n,) or (n, channels)) with soundfile; returns the path."""
    import soundfile

    soundfile.write(str(path), samples, sample_rate, subtype=subtype)
    return Path(path)


def draw_face(canvas: np.ndarray, cx: int, cy: int, height: int) -> np.ndarray:
    """Draw, in place, a frontal cartoon face ``height`` pixels tall (hair to chin) centred at (cx, cy).

    Haar's frontal-face cascade finds it from about 100 px tall (after blurring as in ``face_image``).
    """
    import cv2

    scale = height / 200.0

    def at(x, y):
        return int(cx + x * scale), int(cy + y * scale)

    def px(value):
        return max(1, int(value * scale))

    cv2.ellipse(canvas, at(0, -15), (px(82), px(100)), 0, 0, 360, HAIR, -1)
    cv2.rectangle(canvas, at(-30, 60), at(30, 140), NECK, -1)
    cv2.ellipse(canvas, at(0, 5), (px(72), px(95)), 0, 0, 360, SKIN, -1)
    cv2.ellipse(canvas, at(0, -70), (px(72), px(35)), 0, 180, 360, HAIR, -1)
    for side in (-1, 1):
        cv2.ellipse(canvas, at(side * 30, -28), (px(20), px(6)), 0, 180, 360, DARK, px(5))
        cv2.ellipse(canvas, at(side * 30, -10), (px(18), px(9)), 0, 0, 360, (150, 110, 95), -1)
        cv2.ellipse(canvas, at(side * 30, -10), (px(13), px(6)), 0, 0, 360, (245, 245, 245), -1)
        cv2.circle(canvas, at(side * 30, -10), px(6), DARK, -1)
    cv2.line(canvas, at(-4, -5), at(-9, 30), (180, 125, 100), px(4))
    cv2.ellipse(canvas, at(0, 33), (px(14), px(7)), 0, 0, 180, (170, 115, 95), px(4))
    cv2.ellipse(canvas, at(0, 55), (px(25), px(8)), 0, 0, 360, (150, 60, 60), -1)
    cv2.line(canvas, at(-25, 55), at(25, 55), (90, 30, 30), px(3))
    return canvas


def face_image(width: int = 480, height: int = 360, faces=((240, 180, 200),), background=BACKGROUND) -> np.ndarray:
    """An RGB uint8 image with a drawn face per (cx, cy, height) in ``faces``, softly blurred."""
    import cv2

    image = np.full((height, width, 3), background, dtype=np.uint8)
    for cx, cy, face_height in faces:
        draw_face(image, cx, cy, face_height)
    return cv2.GaussianBlur(image, (0, 0), 1.5)


def no_face_image(width: int = 480, height: int = 360) -> np.ndarray:
    """An RGB uint8 image of smooth colour gradients and a few shapes, but no face."""
    import cv2

    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([x * 255 // width, y * 255 // height, np.full_like(x, 120)], axis=-1).astype(np.uint8)
    cv2.rectangle(image, (40, 40), (160, 120), (20, 200, 60), -1)
    cv2.circle(image, (360, 250), 60, (230, 230, 40), -1)
    return image


def face_frames(count: int = 75, width: int = 480, height: int = 360, face_height: int = 200, index_patch: bool = True) -> list[np.ndarray]:
    """RGB frames of a face drifting sideways, numbered in binary along the top edge (see ``frame_number``)."""
    frames = []
    for i in range(count):
        frame = face_image(width, height, faces=((width // 2 - 20 + (i % 40), height // 2, face_height),))
        if index_patch:
            for bit in range(INDEX_BITS):
                frame[:INDEX_BLOCK, bit * INDEX_BLOCK : (bit + 1) * INDEX_BLOCK] = 255 * ((i >> bit) & 1)
        frames.append(frame)
    return frames


def frame_number(frame: np.ndarray) -> int:
    """Read back the frame number written by ``face_frames``."""
    inner = slice(4, INDEX_BLOCK - 4)
    bits = [frame[inner, bit * INDEX_BLOCK :][:, inner].mean() > 127 for bit in range(INDEX_BITS)]
    return sum(1 << bit for bit, on in enumerate(bits) if on)


def write_video(path, frames: list[np.ndarray], fps: float = 30.0, fourcc: str = "FLV1") -> Path:
    """Write RGB frames with cv2.VideoWriter (FLV1 = Sorenson H.263 in .flv, as CREMA-D ships)."""
    import cv2

    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"{path}: cv2.VideoWriter cannot write {fourcc}")
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return Path(path)
