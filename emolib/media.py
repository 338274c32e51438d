"""Media files: the audio track of a video (or any media file PyAV reads), and the sound of an input.

``input_audio`` is the one function that picks the audio of an input (a sound file, or else the
audio track of a video); the predictor, the timeline and the file capture all use it. A sound file
is anything soundfile reads (WAV, FLAC, OGG, ...) or else anything PyAV decodes (M4A/AAC, MP3, an
audio-only MP4, ...): ``load_sound``. The frames come from ``emolib.video``.

``TimedMedia`` (``timed_media``) puts a file's audio and frames on one clock, the file's own: each stream starts where
the container says (ffprobe's ``start_time``), so a track that starts late, or a video shorter than its sound, is placed
where it plays. A window of time gets only the samples and frames inside it (timeline, annotate, the stream, file capture).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .audio import MIN_SECONDS, SAMPLE_RATE, load_audio, to_model_rate
from .errors import AudioError, VideoError
from .video import video_info


def input_audio(audio=None, video=None) -> tuple[np.ndarray | None, list[str]]:
    """The sound of an input as a 16 kHz mono waveform, and notes: ``audio`` (a sound file) when
    given, else the audio track of ``video``; (None, [why]) when the video has no audio track.

    A sound file is read one way wherever it comes in (``--audio``, or as the file of a timeline or
    a stream): ``load_sound``. An MP3 read by PyAV would start with its decoder's 529 samples of
    delay (12 ms at 44.1 kHz) that soundfile's reader removes."""
    if audio is not None:
        return load_sound(audio), []
    if video is None:
        return None, ["no audio"]
    if is_sound_file(video):
        return load_sound(video), []
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


def is_sound_file(path) -> bool:
    """Whether soundfile reads ``path`` (WAV, FLAC, OGG, MP3, ...): its header only."""
    import soundfile

    try:
        soundfile.info(str(path))
        return True
    except (soundfile.LibsndfileError, RuntimeError, ValueError, TypeError, OSError):
        return False


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


def stream_starts(path) -> dict[str, float]:
    """{"audio": s, "video": s}: when each stream's first sample or frame plays, in seconds after the file's start (the earliest
    stream's start, as ffprobe's ``start_time`` gives them); a stream without a start time starts at 0. Empty when PyAV cannot
    open the file."""
    import av

    try:
        with av.open(str(path)) as container:
            starts = {}
            for kind in ("audio", "video"):
                streams = getattr(container.streams, kind)
                if streams and streams[0].start_time is not None and streams[0].time_base is not None:
                    starts[kind] = float(streams[0].start_time * streams[0].time_base)
                elif streams:
                    starts[kind] = 0.0
    except (av.error.FFmpegError, OSError, ValueError, EOFError):
        return {}
    origin = min(starts.values(), default=0.0)
    return {kind: round(start - origin, 6) for kind, start in starts.items()}


@dataclass
class TimedMedia:
    """A media file's sound (16 kHz) and video on the file's clock: ``wave[0]`` plays at ``audio_start`` s, frame k of ``frames``
    (at ``fps``) from ``video_start + k / fps`` to the next frame. ``notes`` say what is missing."""

    path: Path
    wave: np.ndarray | None
    audio_start: float = 0.0
    frames: int = 0
    fps: float = 1.0
    video_start: float = 0.0
    notes: list = field(default_factory=list)

    @property
    def audio_end(self) -> float:
        return self.audio_start + (len(self.wave) / SAMPLE_RATE if self.wave is not None else 0.0)

    @property
    def video_end(self) -> float:
        return self.video_start + self.frames / self.fps

    @property
    def duration(self) -> float:
        """Seconds from the file's start to the end of its last stream."""
        return max(self.video_end if self.frames else 0.0, self.audio_end if self.wave is not None else 0.0)

    def audio_between(self, start: float, end: float) -> np.ndarray | None:
        """The samples that play in [start, end) (None: none do)."""
        if self.wave is None:
            return None
        first = max(0, int(round((start - self.audio_start) * SAMPLE_RATE)))
        last = min(len(self.wave), int(round((end - self.audio_start) * SAMPLE_RATE)))
        return self.wave[first:last] if last > first else None

    def frame_indices(self, start: float, end: float, count: int) -> list[int]:
        """``count`` frames evenly spread over the part of [start, end) that has video, frame i at (i + 0.5) / count of it; none
        when the video does not play in it (before its first frame or after its last)."""
        return window_frame_indices(start, end, self.fps, self.frames, count, self.video_start) if self.frames and count else []

    def window_notes(self, start: float, end: float) -> list[str]:
        """What the window [start, end) lacks because a stream does not play in it."""
        notes = []
        if self.wave is not None and self.audio_between(start, end) is None:
            notes.append(f"no audio in {start:g}-{end:g} s (the audio plays {self.audio_start:g}-{self.audio_end:.2f} s)")
        if self.frames and not self.frame_indices(start, end, 1):
            notes.append(f"no video in {start:g}-{end:g} s (the video plays {self.video_start:g}-{self.video_end:.2f} s): no face input")
        return notes


def window_frame_indices(start: float, end: float, fps: float, total: int, count: int, video_start: float = 0.0) -> list[int]:
    """``count`` frame indices evenly spread over the part of [start, end) where a video of ``total`` frames starting at
    ``video_start`` s plays (frame i at (i + 0.5) / count of that part); [] when it does not play there."""
    first, last = max(start, video_start), min(end, video_start + total / fps)
    if last <= first or count < 1:
        return []
    offset, span = (first - video_start) * fps, (last - first) * fps
    return [min(total - 1, max(0, int(offset + (i + 0.5) * span / count))) for i in range(count)]


def timed_media(video, audio=None, read_audio: bool = True) -> TimedMedia:
    """``video`` (any media file; an audio-only one has no frames) on its own clock, with ``audio`` (a sound file, which plays
    from the video's start) instead of its track when given; ``read_audio`` False skips decoding the sound."""
    video = Path(video)
    kinds = stream_kinds(video)
    starts = stream_starts(video)
    total, fps = (0, 1.0) if kinds == {"audio"} else video_info(video)
    wave, notes = input_audio(audio, video) if read_audio else (None, [])
    if kinds == {"audio"}:
        notes.append(f"{video}: no video stream (audio only)")
    audio_start = starts.get("audio", 0.0) if audio is None else starts.get("video", 0.0)
    return TimedMedia(video, wave, audio_start, total, fps, starts.get("video", 0.0), notes)
