"""Frames and images for the face model: N evenly spaced RGB frames from a clip, RGB images from files.

Everything returned here is RGB uint8 (H, W, 3); OpenCV's BGR never leaves this module.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np

from .errors import VideoError, check_input_file

DEFAULT_FRAMES = 3
JPEG_MAGIC = b"\xff\xd8\xff"
ROW_BLOCK = 256
SEQUENTIAL_FRAMES = 900  # clips up to this many frames (30 s) are read in one pass: seeking re-decodes from a keyframe each time,
# which for CREMA-D's VP6 (one keyframe per clip) made 16 frames of a 61-frame clip cost 6x one sequential pass
MAX_IMAGE_SIDE = 4096  # larger images are downscaled on reading: faces need far fewer pixels, memory stays bounded


def read_frames(path: str | Path, count: int = DEFAULT_FRAMES) -> list[np.ndarray]:
    """Read ``count`` evenly spaced RGB uint8 frames, frame i at (i + 0.5) / count of the clip.

    When the container reports a frame count, a clip of up to ``SEQUENTIAL_FRAMES`` is read in one
    sequential pass (grab every frame, decode to pixels only the wanted ones) and a longer one seeks
    straight to the wanted frames; without a count, or when the count is wrong (metadata promising
    more frames than the file holds), the frames are counted in a first pass. Clips shorter than
    ``count`` frames repeat frames, so the result always has ``count`` entries. Raises VideoError
    naming the file when it is missing or has no readable frames.
    """
    import cv2

    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    path = Path(path)
    check_input_file(path, VideoError)
    capture = _open(path)
    try:
        total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        frames = None
        if 0 < total <= SEQUENTIAL_FRAMES:
            wanted = frame_indices(total, count)
            picked = _pick_in_one_pass(capture, wanted)
            frames = [picked[index] for index in wanted] if len(picked) == len(set(wanted)) else None
        elif total > 0:
            frames = _read_by_seeking(capture, frame_indices(total, count))
    finally:
        capture.release()
    if frames is None:
        frames = _read_sequentially(path, count)
    return [cv2.cvtColor(frame, cv2.COLOR_BGR2RGB) for frame in frames]


def frame_indices(total: int, count: int = DEFAULT_FRAMES) -> list[int]:
    """Indices of ``count`` frames evenly spread over ``total``, each in the middle of its segment."""
    return [min(total - 1, int((i + 0.5) * total / count)) for i in range(count)]


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as RGB uint8 (H, W, 3); see ``as_rgb`` for grey, alpha and 16-bit input. An image larger than
    ``MAX_IMAGE_SIDE`` is a downscaled working copy: ``read_image_scaled`` says by how much.

    JPEGs follow their EXIF orientation; other formats are decoded unchanged (alpha and depth kept).
    """
    return read_image_scaled(path)[0]


def read_image_scaled(path: str | Path) -> tuple[np.ndarray, tuple[float, float]]:
    """(``read_image``'s RGB working copy, (x, y) scale): the scale maps the copy's pixels to the file's own, (1.0, 1.0) unless
    the image was larger than ``MAX_IMAGE_SIDE``; boxes found on the copy are reported times it."""
    import cv2

    path = Path(path)
    check_input_file(path, VideoError)
    data = np.fromfile(str(path), dtype=np.uint8)
    flags = cv2.IMREAD_COLOR if data[:3].tobytes() == JPEG_MAGIC else cv2.IMREAD_UNCHANGED
    image = cv2.imdecode(data, flags)
    if image is None or image.size == 0:
        raise VideoError(f"{path}: not a readable image")
    height, width = image.shape[:2]
    image = _fit_within(image, MAX_IMAGE_SIDE)
    scale = (width / image.shape[1], height / image.shape[0])
    if image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA)
    try:
        return as_rgb(image), scale
    except VideoError as error:
        raise VideoError(f"{path}: {error}") from None


def as_rgb(image: np.ndarray) -> np.ndarray:
    """Return an RGB uint8 (H, W, 3) copy-or-view of an RGB-ordered array.

    Accepts grey (H, W) or (H, W, 1), RGB, and RGBA, which is composited onto white so that
    transparent backgrounds look like a plain wall. uint16 is scaled to 8 bits; floats are read
    as [0, 1] and clipped; bool is black/white.
    """
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4) or 0 in image.shape:
        raise VideoError(f"image array: expected (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got shape {image.shape}")
    if image.dtype == np.uint8 and image.shape[2] == 3:
        return np.ascontiguousarray(image)
    converted = np.empty(image.shape[:2] + (min(image.shape[2], 3),), dtype=np.uint8)
    for start in range(0, image.shape[0], ROW_BLOCK):  # in blocks of rows: float temporaries stay small for huge images
        converted[start : start + ROW_BLOCK] = _to_uint8(image[start : start + ROW_BLOCK])
    return np.repeat(converted, 3, axis=2) if converted.shape[2] == 1 else converted


def _to_uint8(block: np.ndarray) -> np.ndarray:
    """Rows of an image -> uint8 with 1 or 3 channels (alpha composited on white)."""
    block = _to_unit_float(block) if block.dtype != np.uint8 else block
    if block.shape[2] == 4:
        block = _composite_on_white(block)
    if block.dtype != np.uint8:
        block = np.round(np.clip(block, 0.0, 1.0) * 255.0).astype(np.uint8)
    return block


def _to_unit_float(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.bool_:
        return image.astype(np.float32)
    if image.dtype == np.uint16:
        return image.astype(np.float32) / 65535.0
    if np.issubdtype(image.dtype, np.floating):
        return np.nan_to_num(image.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
    raise VideoError(f"image array: unsupported pixel type {image.dtype}")


def _fit_within(image: np.ndarray, side: int) -> np.ndarray:
    """Downscale (area averaging, any channel count and depth) so that neither side exceeds ``side``."""
    import cv2

    scale = side / max(image.shape[:2])
    if scale >= 1.0:
        return image
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _composite_on_white(rgba: np.ndarray) -> np.ndarray:
    pixels = rgba.astype(np.float32) / 255.0 if rgba.dtype == np.uint8 else rgba
    alpha = np.clip(pixels[:, :, 3:], 0.0, 1.0)
    return pixels[:, :, :3] * alpha + (1.0 - alpha)


@contextlib.contextmanager
def quiet_opencv():
    """Keep OpenCV's and its FFmpeg's warnings off the terminal (emolib reports what matters in its own words)."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # read when OpenCV first opens a video; the user's value wins
    import cv2

    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(level)


def _open(path: Path):
    import cv2

    with quiet_opencv():
        capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    if not capture.isOpened():
        capture.release()
        raise VideoError(f"{path}: {_why_unreadable(path)}")
    return capture


def _read_by_seeking(capture, indices: list[int]) -> list[np.ndarray] | None:
    import cv2

    frames = []
    for index in indices:
        if capture.get(cv2.CAP_PROP_POS_FRAMES) != index:
            capture.set(cv2.CAP_PROP_POS_FRAMES, index)
        if not capture.grab() or capture.get(cv2.CAP_PROP_POS_FRAMES) != index + 1:
            return None
        ok, frame = capture.retrieve()
        if not ok:
            return None
        frames.append(frame)
    return frames


def _pick_in_one_pass(capture, wanted) -> dict[int, np.ndarray]:
    """{index: BGR frame} of the ``wanted`` indices, grabbing frames in order from where ``capture`` is (the start)."""
    wanted = sorted(set(wanted))
    picked, index, position = {}, 0, 0
    while position < len(wanted) and capture.grab():
        if index == wanted[position]:
            ok, frame = capture.retrieve()
            if ok:  # a frame that does not decode is left out; the caller sees it missing
                picked[index] = frame
            position += 1
        index += 1
    return picked


def _read_sequentially(path: Path, count: int) -> list[np.ndarray]:
    capture = _open(path)
    try:
        total = 0
        while capture.grab():
            total += 1
    finally:
        capture.release()
    if total == 0:
        raise VideoError(f"{path}: no readable video frames")
    wanted = frame_indices(total, count)
    capture = _open(path)
    try:
        picked = _pick_in_one_pass(capture, wanted)
    finally:
        capture.release()
    if len(picked) < len(set(wanted)):
        raise VideoError(f"{path}: frames stopped decoding on a second pass (corrupt stream)")
    return [picked[index] for index in wanted]


def _why_unreadable(path: Path) -> str:
    try:
        import av
    except ImportError:
        return "not a readable video (unknown format, no video stream or corrupt)"
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                return "no video stream (no readable video frames)"
            return f"video stream ({container.streams.video[0].codec_context.name}) has no readable frames"
    except EOFError:
        return "no readable video frames (file ends before the first frame; truncated?)"
    except (av.error.FFmpegError, ValueError, OSError) as error:
        reason = getattr(error, "strerror", None) or type(error).__name__
        return f"not a readable video ({reason})"


def video_info(path) -> tuple[int, float]:
    """(frame count, frames per second) of a video, counting frames when the container does not say."""
    import cv2

    with quiet_opencv():
        capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    if not capture.isOpened():
        capture.release()
        raise VideoError(f"{path}: not a readable video")
    try:
        total, fps = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), float(capture.get(cv2.CAP_PROP_FPS))
        if total <= 0:
            total = 0
            while capture.grab():
                total += 1
    finally:
        capture.release()
    if total <= 0:
        raise VideoError(f"{path}: no readable video frames")
    if not fps or not np.isfinite(fps) or fps <= 0:
        raise VideoError(f"{path}: unknown frame rate")
    return total, fps


def read_frames_at(path, indices) -> dict[int, np.ndarray]:
    """RGB frames at the given indices, in one sequential pass (only those frames are kept)."""
    import cv2

    with quiet_opencv():
        capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    try:
        picked = _pick_in_one_pass(capture, [int(i) for i in indices])
    finally:
        capture.release()
    return {index: cv2.cvtColor(frame, cv2.COLOR_BGR2RGB) for index, frame in picked.items()}
