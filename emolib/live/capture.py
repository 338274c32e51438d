"""Capture back-ends: one frame and a few seconds of audio, from devices or files.

Every back-end has ``capture(seconds, progress=None) -> Capture(frame, audio, sample_rate)``:
``frame`` is an RGB uint8 (H, W, 3) array (or None), ``audio`` a 1-D float32 array at
``sample_rate`` (or None). ``progress(elapsed, seconds)`` is called while recording.

- ``LocalCapture``: the camera (OpenCV) and microphone (sounddevice, imported lazily: PortAudio
  may be missing) of the machine running Python;
- ``FileCapture``: a video or image plus a WAV file (or the video's own audio track), for
  notebooks run non-interactively and tests;
- the browser back-end (getUserMedia in the user's browser) is the ``emolib.live.widget.LiveDemo``
  widget: it is event-driven, since a kernel cannot wait for the browser while a cell runs.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..audio import WINDOW_SECONDS
from ..errors import CaptureError
from ..video import quiet_opencv

CAPTURE_CHOICES = ("auto", "browser", "local", "file")
LIST_MICS = "python -m sounddevice"
WARMUP_FRAMES = 5


class Capture(NamedTuple):
    """One capture: RGB frame, mono float32 audio and its sample rate."""

    frame: np.ndarray | None
    audio: np.ndarray | None
    sample_rate: int


class FileCapture:
    """Replays files: a frame from ``video`` (or ``image``) and audio from ``audio`` (or the video's track).

    ``capture(seconds)`` returns the audio that plays from ``offset`` for at most ``seconds`` (16 kHz, as
    ``audio.load_audio`` gives) and the video frame in the middle of that span, on the file's clock
    (``media.timed_media``); no frame when the video does not play then.
    """

    name = "file"

    def __init__(self, video=None, audio=None, image=None, offset: float = 0.0):
        if video is None and image is None and audio is None:
            raise CaptureError("file capture: give a video, an image and/or an audio file")
        self.video = Path(video) if video is not None else None
        self.image = Path(image) if image is not None else None
        self.audio = Path(audio) if audio is not None else None
        self.offset = float(offset)
        self.frame_scale = (1.0, 1.0)  # the last frame's pixels -> the file's own (a very large image is read smaller)

    def __repr__(self) -> str:
        parts = [f"{key}={str(value)!r}" for key, value in (("video", self.video), ("image", self.image), ("audio", self.audio)) if value]
        return f"FileCapture({', '.join(parts)})"

    def capture(self, seconds: float = WINDOW_SECONDS, progress=None) -> Capture:
        from ..audio import SAMPLE_RATE
        from ..media import input_audio, timed_media

        end = self.offset + seconds
        frame = None
        if self.video is not None:  # on the file's clock: a track that starts late plays where it plays
            media = timed_media(self.video, self.audio)
            end = min(end, max(media.duration, self.offset))
            wave = media.audio_between(self.offset, end)
            indices = media.frame_indices(self.offset, end, 1) if self.image is None else []
            if indices:
                frame = self._frame(indices[0])
        else:
            wave = input_audio(self.audio)[0] if self.audio is not None else None
            if wave is not None:
                wave = wave[int(round(self.offset * SAMPLE_RATE)): int(round(end * SAMPLE_RATE))]
        if self.image is not None:
            from ..video import read_image_scaled

            frame, self.frame_scale = read_image_scaled(self.image)
        if progress is not None:
            progress(seconds, seconds)
        return Capture(frame, wave, SAMPLE_RATE)

    def _frame(self, index: int) -> np.ndarray:
        from ..errors import VideoError
        from ..video import read_frames_at

        frames = read_frames_at(self.video, [index])
        if index not in frames:
            raise VideoError(f"{self.video}: frame {index} cannot be decoded")
        return frames[index]


class LocalCapture:
    """The camera (OpenCV index ``camera``) and microphone (sounddevice name or index ``mic``) of this machine."""

    name = "local"

    def __init__(self, camera: int = 0, mic=None, sample_rate: int | None = None):
        self.camera = int(camera)
        self.mic = int(mic) if isinstance(mic, str) and mic.strip().isdigit() else mic
        self.sample_rate = sample_rate
        self._camera = None

    def __repr__(self) -> str:
        return f"LocalCapture(camera={self.camera}, mic={self.mic!r})"

    # ------------------------------------------------------------ devices

    def open_camera(self):
        """The opened cv2.VideoCapture, or CaptureError naming the camera and how to pick another."""
        import cv2

        if self._camera is not None:
            return self._camera
        camera, frame, reason = None, None, ""
        try:
            with quiet_opencv():
                camera = cv2.VideoCapture(self.camera)
                if camera is None or not camera.isOpened():
                    reason = "missing, busy or not permitted"
                else:
                    ok, frame = camera.read()
                    if not ok or frame is None:
                        frame, reason = None, "it gives no frames"
        except cv2.error as error:
            reason = " ".join(str(error).split())
        if frame is None:
            if camera is not None:
                camera.release()
            raise CaptureError(f"no camera: OpenCV cannot open camera {self.camera} ({reason}); pick another with --camera N")
        self._camera = camera
        return camera

    def sounddevice(self):
        """The sounddevice module, or CaptureError when it or PortAudio is missing."""
        try:
            import sounddevice
        except (ImportError, OSError) as error:
            reason = " ".join(str(error).split()) or type(error).__name__
            raise CaptureError(f"no microphone: sounddevice cannot load PortAudio ({reason}); install it "
                               f"(e.g. apt install libportaudio2), list microphones with `{LIST_MICS}` and pick one with --mic NAME") from None
        return sounddevice

    def input_device(self) -> dict:
        """The microphone's sounddevice info, or CaptureError naming it and how to list and pick one."""
        sd = self.sounddevice()
        try:
            return dict(sd.query_devices(self.mic, "input"))
        except (ValueError, sd.PortAudioError) as error:
            which = f"microphone {self.mic!r}" if self.mic is not None else "default microphone"
            raise CaptureError(f"no microphone: {which} not found ({' '.join(str(error).split())}); "
                               f"list microphones with `{LIST_MICS}` and pick one with --mic NAME") from None

    def check(self) -> None:
        """Open the camera and find the microphone; one CaptureError naming everything missing."""
        problems = []
        for check in (self.open_camera, self.input_device):
            try:
                check()
            except CaptureError as error:
                problems.append(str(error))
        if problems:
            raise CaptureError("; ".join(problems))

    # ------------------------------------------------------------ capture

    def capture(self, seconds: float = WINDOW_SECONDS, progress=None) -> Capture:
        """Record ``seconds`` of audio and grab the frame in the middle of the recording."""
        self.check()
        sd = self.sounddevice()
        camera = self.open_camera()
        for _ in range(WARMUP_FRAMES):  # auto exposure settles over the first frames
            camera.grab()
        rate = int(self.sample_rate or self.input_device().get("default_samplerate") or 16000)
        try:
            recording = sd.rec(int(round(seconds * rate)), samplerate=rate, channels=1, dtype="float32", device=self.mic)
        except (sd.PortAudioError, ValueError) as error:
            raise CaptureError(f"microphone {self.mic if self.mic is not None else '(default)'}: cannot record ({' '.join(str(error).split())}); pick another with --mic NAME") from None
        started, frame = time.monotonic(), None
        while (elapsed := time.monotonic() - started) < seconds:
            camera.grab()  # keep the driver's buffer fresh
            if frame is None and elapsed >= seconds / 2:
                ok, bgr = camera.retrieve()
                frame = bgr if ok else None
            if progress is not None:
                progress(elapsed, seconds)
            time.sleep(0.05)
        try:
            sd.wait()
        except sd.PortAudioError as error:
            raise CaptureError(f"microphone: recording failed ({' '.join(str(error).split())})") from None
        if frame is None:
            ok, frame = camera.read()
            if not ok:
                raise CaptureError(f"camera {self.camera}: stopped giving frames; pick another with --camera N")
        if progress is not None:
            progress(seconds, seconds)
        import cv2

        return Capture(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), np.asarray(recording, dtype=np.float32).reshape(-1), rate)

    def close(self) -> None:
        if self._camera is not None:
            self._camera.release()
            self._camera = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def demo_clip(data_dir, stem: str | None = None) -> tuple[Path, Path]:
    """(video, wav) of a clip of a CREMA-D-layout folder (VideoFlash/*.flv, AudioWAV/*.wav).

    ``stem`` picks one (e.g. "1001_DFA_ANG_XX"); by default the first clip, by name, that has both.
    """
    data_dir = Path(data_dir)
    videos = {path.stem: path for path in sorted((data_dir / "VideoFlash").glob("*.flv"))}
    audios = {path.stem: path for path in sorted((data_dir / "AudioWAV").glob("*.wav"))}
    both = [name for name in videos if name in audios]
    if stem is not None:
        if stem not in both:
            raise CaptureError(f"{data_dir}: no clip {stem} with both VideoFlash/{stem}.flv and AudioWAV/{stem}.wav")
        return videos[stem], audios[stem]
    if not both:
        raise CaptureError(f"{data_dir}: no clip with both a VideoFlash/*.flv and an AudioWAV/*.wav (make one with `emolib synth`)")
    return videos[both[0]], audios[both[0]]


def in_notebook_kernel() -> bool:
    """True inside a Jupyter kernel (where a browser may display widgets)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def make_capture(kind: str = "auto", camera: int = 0, mic=None, video=None, audio=None, image=None):
    """The back-end named ``kind``: "browser" (returned as the string; see emolib.live.widget), a
    LocalCapture, or a FileCapture. "auto" is "browser" inside a notebook kernel, else "file".
    """
    if kind not in CAPTURE_CHOICES:
        raise CaptureError(f"capture back-end {kind!r}: expected one of {', '.join(CAPTURE_CHOICES)}")
    if kind == "auto":
        kind = "browser" if in_notebook_kernel() else "file"
    if kind == "browser":
        return "browser"
    if kind == "local":
        return LocalCapture(camera, mic)
    return FileCapture(video=video, audio=audio, image=image)
