"""The live demo widget: a Record button that captures a frame and a few seconds of audio, then
shows the frame with the face box, the waveform, voice/face/fused probabilities and the emotion.

``LiveDemo(predictor, backend="browser")`` records in the user's browser (getUserMedia; works
on remote Jupyter, Kaggle, Colab): the JavaScript sends mono Float32 PCM with its sample rate
and a JPEG frame to the kernel through binary traitlets, and the kernel predicts with exactly
the training-time preprocessing (``Predictor.predict``). With a capture object instead
(``emolib.live.capture.LocalCapture`` or ``FileCapture``) the button asks the kernel to capture.

Failures (permission denied, no camera or microphone, silence with no face, ...) are shown in
the widget and kept in its ``status`` and ``error`` traits; nothing is swallowed.
"""
from __future__ import annotations

import copy
import json
import sys
import traceback
from pathlib import Path

import anywidget
import numpy as np
import traitlets
from ipywidgets.widgets.trait_types import bytes_serialization

from ..audio import WINDOW_SECONDS
from ..errors import CaptureError, EmolibError

WIDGET_JS = Path(__file__).with_name("capture_widget.js")
WIDGET_CSS = Path(__file__).with_name("capture_widget.css")


class LiveDemo(anywidget.AnyWidget):
    """Record button + result display; see the module docstring. ``last_prediction``,
    ``last_capture`` (frame, audio, sample_rate) hold the latest result for later cells.
    """

    _esm = WIDGET_JS
    _css = WIDGET_CSS

    backend = traitlets.Unicode("browser").tag(sync=True)
    seconds = traitlets.Float(WINDOW_SECONDS).tag(sync=True)
    status = traitlets.Unicode("idle").tag(sync=True)
    message = traitlets.Unicode("").tag(sync=True)
    error = traitlets.Unicode("").tag(sync=True)
    # browser -> kernel
    audio = traitlets.Bytes(b"").tag(sync=True, **bytes_serialization)
    sample_rate = traitlets.Int(0).tag(sync=True)
    frame = traitlets.Bytes(b"").tag(sync=True, **bytes_serialization)
    page_stats = traitlets.Dict().tag(sync=True)
    captures = traitlets.Int(0).tag(sync=True)
    # kernel -> browser
    labels = traitlets.List(traitlets.Unicode()).tag(sync=True)  # the predictor's label set, from its checkpoints
    received = traitlets.Dict().tag(sync=True)
    result = traitlets.Dict().tag(sync=True)
    result_text = traitlets.Unicode("").tag(sync=True)
    result_png = traitlets.Bytes(b"").tag(sync=True, **bytes_serialization)
    # streaming: the browser sends {type: "stream"} messages (audio chunk + frame as buffers) every hop; the kernel answers
    # each update with {type: "update"} and counts them here
    hop = traitlets.Float(1.0).tag(sync=True)
    streaming = traitlets.Bool(False).tag(sync=True)
    stream_updates = traitlets.Int(0).tag(sync=True)

    def __init__(self, predictor=None, backend="browser", seconds: float = WINDOW_SECONDS, save_dir=None, hop: float = 1.0,
                 smoothing: float = 0.5, min_speech: float | None = None, **kwargs):
        self.capturer = None if backend == "browser" else backend
        name = "browser" if backend == "browser" else getattr(backend, "name", type(backend).__name__)
        super().__init__(backend=name, seconds=float(seconds), hop=float(hop), **kwargs)
        self.smoothing = smoothing
        self.min_speech = min_speech  # the stream's no-speech rule (None: the predictor's own)
        self.engine = self.runner = None
        self.stream_table = None  # the last stream's updates (StreamEngine.table) once Stop is pressed
        self.predictor = predictor
        self.labels = list(getattr(predictor, "labels", ()))
        self.save_dir = Path(save_dir) if save_dir else None
        self.last_prediction = None
        self.last_capture = None
        self.message = f"press Record to capture {seconds:g} s " + ("in this browser" if name == "browser" else f"with {backend!r}")
        self.observe(self._on_browser_capture, names="captures")
        self.on_msg(self._on_message)

    # ---------------------------------------------------------------- events

    def _on_browser_capture(self, change) -> None:
        """The browser sent a capture (audio, sample_rate, frame were set in the same update)."""
        try:
            audio = np.frombuffer(bytes(self.audio), dtype="<f4").copy() if self.audio else None
            frame = decode_image(bytes(self.frame)) if self.frame else None
        except EmolibError as error:
            self._fail(str(error))
            return
        self.process(frame, audio, self.sample_rate or None)

    def _on_message(self, widget, content, buffers) -> None:
        if not isinstance(content, dict):
            return
        kind = content.get("type")
        if kind == "record":
            self.record()
        elif kind == "stream":
            self.stream_chunk(content, buffers)
        elif kind == "stop":
            self.stop_stream()

    # ---------------------------------------------------------------- streaming

    def stream_chunk(self, content: dict, buffers) -> None:
        """One hop of the browser's stream: its audio samples (Float32 at ``content["rate"]``) and a frame (JPEG), then an update
        unless the previous one is still running (``live.stream.Runner``: that hop is skipped)."""
        from ..audio import to_model_rate
        from .stream import Runner, StreamEngine

        try:
            if self.engine is None:
                if self.predictor is None:
                    raise CaptureError("no predictor: create the widget with LiveDemo(Predictor.from_dir(models))")
                predictor = self.predictor
                if self.min_speech is not None:  # the stream's own rule, the single-shot Record keeps the predictor's
                    predictor = copy.copy(predictor)
                    predictor.min_speech = float(self.min_speech)
                self.engine = StreamEngine(predictor, hop=self.hop, smoothing=self.smoothing)
                self.runner = Runner(self.engine, self._send_update)
                self.set_state_quietly(streaming=True, stream_updates=0, status="streaming", error="", message="streaming")
            audio = np.frombuffer(bytes(buffers[0]), dtype="<f4") if buffers and len(buffers[0]) else np.zeros(0, dtype=np.float32)
            if audio.size:
                self.engine.push_audio(to_model_rate(audio, int(content.get("rate") or 0), name="browser audio"))
            if len(buffers) > 1 and len(buffers[1]):
                self.engine.push_frame(decode_image(bytes(buffers[1])))
        except EmolibError as error:
            self._fail(str(error))
            return
        if self.engine.now > 0:
            self.runner.tick(self.engine.now)

    def _send_update(self, update) -> None:
        self.send({"type": "update", "update": _plain(update.to_dict()), "skipped": self.engine.skipped})
        self.stream_updates = len(self.engine.updates)

    def stop_stream(self):
        """End the stream: its updates stay in ``stream_table`` (a DataFrame) for later cells; returns it."""
        if self.engine is None:
            return self.stream_table
        self.runner.wait()
        self.stream_table = self.engine.table()
        count, skipped = len(self.engine.updates), self.engine.skipped
        self.engine = self.runner = None
        self.set_state_quietly(streaming=False, status="done", message=f"stream stopped: {count} updates, {skipped} hops skipped")
        return self.stream_table

    def record(self):
        """Capture with the kernel-side back-end (LocalCapture, FileCapture) and predict."""
        if self.capturer is None:
            self._fail("this widget records in the browser: press its Record button")
            return None
        self.set_state_quietly(status="recording", error="", message=f"recording {self.seconds:g} s with {self.capturer!r}...")
        try:
            frame, audio, rate = self.capturer.capture(self.seconds, progress=self._progress)
        except EmolibError as error:
            self._fail(str(error))
            return None
        except Exception as error:  # a driver or decoder failure: show it, do not swallow it
            self._fail(f"capture failed: {type(error).__name__}: {error}", log=True)
            return None
        return self.process(frame, audio, rate, getattr(self.capturer, "frame_scale", None))

    def _progress(self, elapsed: float, seconds: float) -> None:
        self.send({"type": "progress", "elapsed": float(elapsed), "seconds": float(seconds)})

    # ---------------------------------------------------------------- predict

    def process(self, frame, audio, sample_rate, image_scale=None):
        """Report what arrived, save it (``save_dir``), predict, and show the result (boxes in the input's own pixels:
        ``image_scale``, see ``Predictor.predict``). Returns the Prediction or None."""
        from ..infer.display import figure_png, plot_prediction

        self.received = capture_stats(frame, audio, sample_rate)
        self.last_capture = (frame, audio, sample_rate)
        self.set_state_quietly(status="processing", message="predicting...", error="")
        prediction, problem = None, ""
        try:
            if self.predictor is None:
                raise CaptureError("no predictor: create the widget with LiveDemo(Predictor.from_dir(models))")
            prediction = self.predictor.predict(audio, sample_rate, frame, audio_name="recorded audio", image_name="the frame",
                                                image_scale=image_scale)
        except EmolibError as error:
            problem = str(error)
        except Exception as error:
            problem = f"prediction failed: {type(error).__name__}: {error}"
            traceback.print_exc(file=sys.stderr)
        if self.save_dir is not None:
            self._save(frame, audio, sample_rate, prediction, problem)
        if prediction is None:
            self._fail(problem)
            return None
        self.last_prediction = prediction
        wave = None
        if audio is not None and len(audio) and sample_rate:
            from ..audio import to_model_rate

            wave = to_model_rate(audio, sample_rate, name="recorded audio")
        png = figure_png(plot_prediction(prediction, frame, wave))
        notes = f" ({'; '.join(prediction.notes)})" if prediction.notes else ""
        self.set_state_quietly(result=prediction.to_dict(), result_png=png, result_text=prediction.summary() + notes,
                               status="done", message=f"done: {prediction.display_label}", error="")
        return prediction

    def _fail(self, problem: str, log: bool = False) -> None:
        if log:
            traceback.print_exc(file=sys.stderr)
        self.set_state_quietly(status="error", error=problem, message="failed", result={}, result_text="", result_png=b"")

    def set_state_quietly(self, **values) -> None:
        """Set several traits and sync them in one message."""
        with self.hold_sync():
            for name, value in values.items():
                setattr(self, name, value)

    def _save(self, frame, audio, sample_rate, prediction, problem) -> None:
        """Write capture.json (what was received + the prediction), frame.png and audio.wav into save_dir."""
        import cv2
        import soundfile

        self.save_dir.mkdir(parents=True, exist_ok=True)
        report = {"received": self.received, "page_stats": dict(self.page_stats), "backend": self.backend,
                  "prediction": prediction.to_dict() if prediction else None, "error": problem}
        if frame is not None:
            cv2.imwrite(str(self.save_dir / "frame.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        if audio is not None and len(audio) and sample_rate:
            soundfile.write(str(self.save_dir / "audio.wav"), np.asarray(audio, dtype=np.float32), int(sample_rate))
        (self.save_dir / "capture.json").write_text(json.dumps(report, indent=2, default=str))


def _plain(value):
    """``value`` with numpy numbers as Python ones and non-finite floats as None (JSON for the comm)."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, (np.floating, float)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def decode_image(data: bytes) -> np.ndarray:
    """JPEG/PNG bytes -> RGB uint8 array (VideoError when undecodable)."""
    import cv2

    from ..errors import VideoError
    from ..video import as_rgb

    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise VideoError(f"frame from the browser: {len(data)} bytes, not a decodable JPEG/PNG")
    return as_rgb(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))


def capture_stats(frame, audio, sample_rate) -> dict:
    """What the kernel received: audio length, rate and RMS; frame shape and pixel standard deviation."""
    stats = {"audio_seconds": None, "sample_rate": int(sample_rate or 0), "audio_rms": None, "frame_shape": None, "frame_std": None}
    if audio is not None and len(audio):
        wave = np.asarray(audio, dtype=np.float64)
        stats["audio_rms"] = float(np.sqrt(np.mean(wave**2)))
        stats["audio_seconds"] = float(len(wave) / sample_rate) if sample_rate else None
    if frame is not None:
        stats["frame_shape"] = [int(v) for v in np.asarray(frame).shape]
        stats["frame_std"] = float(np.asarray(frame, dtype=np.float64).std())
    return stats


def live_demo(predictor, capture: str = "auto", seconds: float = WINDOW_SECONDS, camera: int = 0, mic=None,
              video=None, audio=None, image=None, save_dir=None) -> LiveDemo:
    """A LiveDemo with the back-end named ``capture`` ("auto", "browser", "local", "file"; see capture.make_capture)."""
    from .capture import make_capture

    return LiveDemo(predictor, make_capture(capture, camera, mic, video, audio, image), seconds, save_dir)
