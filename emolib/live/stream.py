"""Continuous live prediction: a rolling window of audio and frames, one update every hop, smoothed.

``StreamEngine`` keeps the model's window (4 s, from the checkpoint) of 16 kHz audio and the frames
of that window, and predicts with the same ``Predictor`` (fast path, face tracking, speech rule)
every ``hop`` seconds of stream time. The window ending at ``t`` is exactly the ``emolib timeline``
window starting at ``t - window``: the same audio samples and, for frames at known times, the same
frames (frame i of F at (i + 0.5) / F of the window: the latest frame at or before that time), so a
file streamed at hop 1 s gives the timeline's probabilities.

Updates never queue: ``run`` predicts in a worker thread, and a hop that comes while the previous
update is still running is skipped and counted, so what is shown lags by at most one update.
Smoothing is an exponential moving average of the probabilities (``smoothing`` 0: off) and the
shown label changes only when another label leads it by ``margin`` (hysteresis).
"""
from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from ..audio import SAMPLE_RATE, WINDOW_SECONDS
from ..errors import EmolibError
from ..eval.calibration import UNCERTAIN, abstained

DEFAULT_HOP = 1.0
MIN_HOP = 0.25
DEFAULT_SMOOTHING = 0.5
DEFAULT_MARGIN = 0.1
EPSILON = 1e-9


@dataclass
class Update:
    """One stream update: the window [start, time) of stream time, how long the prediction took, how many hops were skipped so
    far, raw and smoothed probabilities (None when nothing was usable), the shown label, and what was used."""

    time: float
    start: float
    latency: float
    skipped: int
    raw: dict | None
    smoothed: dict | None
    label: str | None
    modalities: list = field(default_factory=list)
    voice: dict | None = None
    face: dict | None = None
    speech_seconds: float | None = None
    no_speech: bool = False
    no_face: bool = False
    faces: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def line(self) -> str:
        shown = f"{self.label} {max(self.smoothed.values()):.0%}" if self.label else "-"
        states = [state for state, on in (("no speech", self.no_speech), ("no face", self.no_face)) if on]
        return (f"{self.time:7.2f} s  {shown:12s} from {'+'.join(self.modalities) or 'nothing'}"
                f"{'  (' + ', '.join(states) + ')' if states else ''}  latency {self.latency * 1000:.0f} ms, skipped {self.skipped}")


class Smoother:
    """Exponential moving average of probabilities with a hysteresis on the shown label."""

    def __init__(self, smoothing: float = DEFAULT_SMOOTHING, margin: float = DEFAULT_MARGIN):
        if not 0 <= smoothing < 1 or margin < 0:
            raise EmolibError(f"smoothing must be in [0, 1) and margin >= 0, got {smoothing} and {margin}")
        self.smoothing, self.margin = smoothing, margin
        self.state: dict | None = None
        self.label: str | None = None

    def update(self, raw: dict | None) -> tuple[dict | None, str | None]:
        if raw is None:
            return self.state, self.label
        if self.state is None or self.smoothing == 0:
            self.state = dict(raw)
        else:
            self.state = {label: self.smoothing * self.state[label] + (1 - self.smoothing) * value for label, value in raw.items()}
        leader = max(self.state, key=self.state.get)
        if self.label is None or self.state[leader] >= self.state.get(self.label, 0.0) + self.margin:
            self.label = leader
        return dict(self.state), self.label


class StreamEngine:
    """The rolling buffers and the predictions of a stream (see the module docstring). Feed it with ``push_audio`` (16 kHz mono)
    and ``push_frame`` (RGB, stamped with stream time); ``predict_window(end)`` predicts the window ending at ``end``."""

    def __init__(self, predictor, hop: float = DEFAULT_HOP, smoothing: float = DEFAULT_SMOOTHING, margin: float = DEFAULT_MARGIN):
        if not hop >= MIN_HOP:
            raise EmolibError(f"hop must be at least {MIN_HOP} s, got {hop}")
        self.predictor, self.hop = predictor, float(hop)
        self.window = predictor.audio_settings.window_seconds if predictor.audio_settings else WINDOW_SECONDS
        self.frame_count = predictor.face_settings.frames if predictor.face_settings else 0
        self.smoother = Smoother(smoothing, margin)
        self.audio = np.zeros(0, dtype=np.float32)
        self.audio_offset = 0  # stream sample index of self.audio[0]
        self.received = 0  # samples pushed so far
        self.video_span: tuple[float, float] | None = None  # (first, end) stream seconds of a file's video; None: a camera, unbounded
        from ..infer.timeline import new_speaker

        self.speaker = new_speaker(predictor)  # the session's running speaker statistics (an eGeMAPS voice model), as the timeline's
        self.segments = None  # a file's speech segments in stream seconds (stream_file measures the whole file, as the timeline does)
        self.vad = None  # else a live stream's Silero VAD, run on the audio as it arrives
        if predictor.voice is not None and predictor.min_speech > 0:
            from ..speech import StreamingVAD

            self.vad = StreamingVAD(predictor.speech_threshold, keep=self.window + 2 * self.hop + 2.0)
        self.frames: list[tuple[float, np.ndarray]] = []
        self.skipped = 0
        self.updates: list[Update] = []

    @property
    def now(self) -> float:
        """Stream time: the seconds of audio received."""
        return (self.audio_offset + len(self.audio)) / SAMPLE_RATE

    def start_audio_at(self, seconds: float) -> None:
        """The first sample pushed plays at ``seconds`` of stream time (a file whose sound starts late); before any is pushed."""
        if self.received:
            raise EmolibError("start_audio_at: audio was already pushed")
        self.audio_offset = int(round(seconds * SAMPLE_RATE))
        if self.vad is not None:
            self.vad.first = self.audio_offset / SAMPLE_RATE

    def push_audio(self, samples: np.ndarray) -> None:
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        self.received += len(samples)
        self.audio = np.concatenate([self.audio, samples])
        if self.vad is not None and self.segments is None:
            self.vad.push(samples)
        keep = int(round((self.window + 2 * self.hop) * SAMPLE_RATE))
        if len(self.audio) > keep:
            self.audio_offset += len(self.audio) - keep
            self.audio = self.audio[-keep:]

    def push_frame(self, frame: np.ndarray, at: float | None = None) -> None:
        self.frames.append((self.now if at is None else float(at), frame))
        horizon = (at if at is not None else self.now) - self.window - 2 * self.hop
        while len(self.frames) > 1 and self.frames[1][0] <= horizon:
            self.frames.pop(0)

    def window_inputs(self, end: float, start: float | None = None):
        """(audio samples, frames or None, seconds of speech or None) of the window [start, end), chosen as ``emolib timeline``
        chooses them; the speech is the window's share of the file's segments, or of the live VAD's (None: the rule is off)."""
        start = max(0.0, end - self.window) if start is None else start
        first, last = int(round(start * SAMPLE_RATE)) - self.audio_offset, int(round(end * SAMPLE_RATE)) - self.audio_offset
        clip = self.audio[max(0, first): max(0, last)]
        images = None
        if self.frame_count and self.frames:  # the timeline's frames: spread over the part of the window where the video plays
            first, last = (max(start, self.video_span[0]), min(end, self.video_span[1])) if self.video_span else (start, end)
            times = np.array([at for at, _ in self.frames])
            span = max(last - first, EPSILON)
            targets = [first + (index + 0.5) * span / self.frame_count for index in range(self.frame_count)] if last > first else []
            picks = [int(np.searchsorted(times, target + EPSILON, side="right")) - 1 for target in targets]
            fresh = start - EPSILON if self.video_span is None else -np.inf  # a camera's frame from before the window is stale
            images = [self.frames[pick][1] for pick in picks if pick >= 0 and self.frames[pick][0] >= fresh] or None
        speech = None
        if self.segments is not None:
            from ..speech import seconds_in

            speech = seconds_in(self.segments, start, end)
        elif self.vad is not None:
            speech = self.vad.seconds_in(start, end)
        return (clip if clip.size else None), images, speech

    def predict_window(self, end: float, start: float | None = None, inputs=None) -> Update:
        """Predict the window ending at ``end`` (``inputs``: its (audio, frames), taken earlier from the buffers); returns (and
        keeps) its Update."""
        from ..infer.prediction import PredictionError

        start = max(0.0, end - self.window) if start is None else start
        clip, images, speech = inputs if inputs is not None else self.window_inputs(end, start)
        began = time.perf_counter()
        try:
            prediction = self.predictor.predict(clip, SAMPLE_RATE, images, audio_name=f"audio {start:g}-{end:g} s",
                                                image_name=f"frames {start:g}-{end:g} s", speech_seconds=speech, speaker=self.speaker)
        except PredictionError as error:
            prediction, notes = None, [str(error)]
        latency = time.perf_counter() - began
        raw = dict(prediction.probabilities) if prediction else None
        smoothed, label = self.smoother.update(raw)
        if label is not None and abstained(smoothed, getattr(self.predictor, "abstain", None)):
            label = UNCERTAIN  # the shown (smoothed) emotion is not sure enough
        update = Update(time=round(end, 6), start=round(start, 6), latency=latency, skipped=self.skipped,
                        raw=raw, smoothed=smoothed, label=label, modalities=list(prediction.modalities) if prediction else [],
                        voice=prediction.voice if prediction else None, face=prediction.face if prediction else None,
                        speech_seconds=prediction.speech_seconds if prediction else None,
                        no_speech=bool(prediction is None or "voice" not in prediction.modalities),
                        no_face=bool(prediction is None or not prediction.face_found), faces=list(prediction.faces) if prediction else [],
                        notes=list(prediction.notes) if prediction else notes)
        self.updates.append(update)
        return update

    def table(self):
        """The updates so far as a DataFrame: time, latency, skipped, label, raw_<label> and smoothed_<label> columns, flags."""
        import pandas as pd

        rows = []
        for update in self.updates:
            row = {"time": update.time, "start": update.start, "latency": update.latency, "skipped": update.skipped, "label": update.label,
                   "modalities": "+".join(update.modalities), "no_speech": update.no_speech, "no_face": update.no_face,
                   "speech_seconds": update.speech_seconds}
            row.update({f"raw_{label}": value for label, value in (update.raw or {}).items()})
            row.update({f"smoothed_{label}": value for label, value in (update.smoothed or {}).items()})
            rows.append(row)
        return pd.DataFrame(rows)


def update_times(duration: float, window: float, hop: float) -> list[tuple[float, float]]:
    """(start, end) of each update over a recording of ``duration`` s: the windows of ``emolib timeline``."""
    from ..infer.timeline import window_starts

    return [(start, min(start + window, duration)) for start in window_starts(duration, window, hop)]


class Runner:
    """Runs an engine's predictions in one worker thread: ``tick(end)`` starts the update of the window ending at ``end`` unless
    the previous one is still running, in which case that hop is skipped and counted."""

    def __init__(self, engine: StreamEngine, on_update=None):
        self.engine, self.on_update = engine, on_update or (lambda update: None)
        self.busy = threading.Lock()
        self.thread: threading.Thread | None = None

    def tick(self, end: float, start: float | None = None) -> bool:
        if not self.busy.acquire(blocking=False):
            self.engine.skipped += 1
            return False
        inputs = self.engine.window_inputs(end, start)  # taken now, in the feeding thread: the buffers move on

        def work():
            try:
                self.on_update(self.engine.predict_window(end, start, inputs))
            finally:
                self.busy.release()

        self.thread = threading.Thread(target=work, daemon=True)
        self.thread.start()
        return True

    def wait(self) -> None:
        if self.thread is not None:
            self.thread.join()


def stream_file(engine: StreamEngine, video, audio=None, realtime: bool = True, on_update=None) -> list[Update]:
    """Play a video (or sound) file through ``engine``: its audio and frames arrive as the stream time passes, one update per hop
    (``update_times``: the timeline's windows), each stream where it plays on the file's clock (``media.timed_media``).
    ``realtime`` paces the feeding by the wall clock and predicts in a worker thread (skipping hops it cannot keep up with);
    otherwise every window is predicted in turn, as fast as possible."""
    from ..media import timed_media
    from ..video import read_frames_at

    media = timed_media(video, audio)
    wave = np.zeros(0, dtype=np.float32) if media.wave is None else media.wave
    plan = update_times(media.duration, engine.window, engine.hop)
    wanted = {index for start, end in plan for index in media.frame_indices(start, end, engine.frame_count)}  # the timeline's frames
    frames = read_frames_at(video, wanted) if wanted else {}
    engine.video_span = (media.video_start, media.video_end) if media.frames else None
    engine.start_audio_at(media.audio_start)
    if engine.vad is not None and media.wave is not None:  # the whole file's speech segments, as the timeline measures them
        from ..speech import speech_segments

        engine.segments = speech_segments(media.wave, engine.predictor.speech_threshold) + media.audio_start
    runner = Runner(engine, on_update) if realtime else None
    fed_frames, began = 0, time.perf_counter()
    arrivals = sorted(frames)
    for start, end in plan:
        if realtime:
            time.sleep(max(0.0, began + end - time.perf_counter()))
        engine.push_audio(wave[engine.received: max(engine.received, int(round((end - media.audio_start) * SAMPLE_RATE)))])
        while fed_frames < len(arrivals) and media.video_start + arrivals[fed_frames] / media.fps < end + EPSILON:
            engine.push_frame(frames[arrivals[fed_frames]], media.video_start + arrivals[fed_frames] / media.fps)
            fed_frames += 1
        if runner is not None:
            runner.tick(end, start)
        else:
            update = engine.predict_window(end, start)
            if on_update is not None:
                on_update(update)
    if runner is not None:
        runner.wait()
    return engine.updates


def stream_local(engine: StreamEngine, capture, on_update=None) -> list[Update]:
    """Stream from this machine's camera and microphone (a ``capture.LocalCapture``) until Ctrl-C: the microphone's samples arrive
    through a sounddevice input stream, a camera frame is read every hop, and each hop ticks a ``Runner``."""
    import queue

    from ..audio import to_model_rate

    sounddevice = capture.sounddevice()
    device = capture.input_device()
    rate = int(device.get("default_samplerate") or SAMPLE_RATE)
    chunks: queue.Queue = queue.Queue()
    runner = Runner(engine, on_update)
    camera = capture.open_camera()
    with sounddevice.InputStream(device=device.get("index"), channels=1, samplerate=rate, dtype="float32",
                                 callback=lambda data, frames, when, status: chunks.put(data[:, 0].copy())):
        next_tick = engine.window
        while True:
            engine.push_audio(to_model_rate(np.concatenate([chunks.get()] + [chunks.get_nowait() for _ in range(chunks.qsize())]), rate,
                                            name="microphone"))
            if engine.now >= next_tick:
                ok, frame = camera.read()
                if ok:
                    import cv2

                    engine.push_frame(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
                runner.tick(engine.now)
                next_tick += engine.hop
