"""Media files: the audio track of a video (or any media file PyAV reads), and the sound of an input.

``input_audio`` is the one function that picks the audio of an input (a sound file, or else the
audio track of a video); the predictor, the timeline and the file capture all use it. A sound file
is anything soundfile reads (WAV, FLAC, OGG, ...) or else anything PyAV decodes (M4A/AAC, MP3, an
audio-only MP4, ...): ``load_sound``. The frames come from ``emolib.video``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .audio import MIN_SECONDS, SAMPLE_RATE, load_audio, to_model_rate
from .errors import AudioError, VideoError


def input_audio(audio=None, video=None) -> tuple[np.ndarray | None, list[str]]:
    """The sound of an input as a 16 kHz mono waveform, and notes: ``audio`` (a sound file) when
    given, else the audio track of ``video``; (None, [why]) when the video has no audio track."""
    if audio is not None:
        return load_sound(audio), []
    if video is None:
        return None, ["no audio"]
    track = read_audio_track(video)
    if track is None:
        return None, [f"{video}: no audio track"]
    return to_model_rate(*track, name=str(video)), []


def load_sound(path) -> np.ndarray:
    """A sound file as 16 kHz mono float32: ``audio.load_audio`` (soundfile), else the audio stream PyAV decodes.

    Raises AudioError naming the file (soundfile's reason) when neither can read it.
    """
    try:
        return load_audio(path)
    except AudioError as error:
        if "not a readable audio file" not in str(error):
            raise
        try:
            track = read_audio_track(path)
        except (AudioError, VideoError):
            track = None
        if track is None:
            raise
    wave = to_model_rate(*track, name=str(path))
    if len(wave) < MIN_SECONDS * SAMPLE_RATE:
        raise AudioError(f"{path}: clip is {len(wave) / SAMPLE_RATE:.2f} s long, shorter than the minimum of {MIN_SECONDS:.2f} s")
    return wave


def audio_problem(path) -> str | None:
    """Why ``path`` cannot give audio (one line naming it), or None when it can: a quick check (headers,
    not samples) run over a whole dataset before training, so an epoch never dies on one bad file."""
    import soundfile

    from .audio import check_audio_header

    try:
        check_audio_header(path)
        soundfile.info(str(path))
        return None
    except AudioError as error:
        reason = str(error)
    except (soundfile.LibsndfileError, RuntimeError, ValueError, TypeError):
        reason = f"{path}: not a readable audio file"
    if "audio" in stream_kinds(path):
        return None
    return reason


def stream_kinds(path) -> set[str]:
    """The kinds of streams ("audio", "video") in a media file, by PyAV; empty when PyAV cannot open it."""
    import av

    try:
        with av.open(str(path)) as container:
            return {kind for kind in ("audio", "video") if getattr(container.streams, kind)}
    except (av.error.FFmpegError, OSError, ValueError, EOFError):
        return set()


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
