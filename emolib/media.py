"""Media files: the audio track of a video (or any media file PyAV reads).

``Predictor.load_inputs``, ``timeline`` and ``FileCapture`` read a clip's sound through
``read_audio_track``; the frames come from ``emolib.video``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import AudioError, VideoError


def read_audio_track(path) -> tuple[np.ndarray, int] | None:
    """The first audio stream of a media file as ((frames, channels) float32, sample rate), or None.

    Decoded with PyAV; pass the result to ``audio.to_model_rate`` (Predictor.predict does).
    Raises AudioError naming the file when the stream cannot be decoded.
    """
    import av

    path = Path(path)
    if not path.is_file():
        raise VideoError(f"{path}: no such file")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError, ValueError) as error:
        raise VideoError(f"{path}: not a readable media file ({type(error).__name__}: {' '.join(str(error).split())})") from None
    chunks = []
    with container:
        if not container.streams.audio:
            return None
        stream = container.streams.audio[0]
        rate = stream.codec_context.sample_rate or stream.rate
        resampler = av.AudioResampler(format="fltp", rate=rate)
        try:
            for frame in container.decode(stream):
                chunks.extend(piece.to_ndarray() for piece in resampler.resample(frame))
            chunks.extend(piece.to_ndarray() for piece in resampler.resample(None))
        except (av.error.FFmpegError, ValueError) as error:
            if not chunks:
                raise AudioError(f"{path}: audio track cannot be decoded ({type(error).__name__})") from None
    if not chunks or not rate:
        return None
    samples = np.concatenate(chunks, axis=1).T.astype(np.float32, copy=False)
    return np.ascontiguousarray(samples), int(rate)
