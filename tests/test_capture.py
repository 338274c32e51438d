"""Capture back-ends, `emolib live` without devices, and the live widget's kernel side (no browser)."""
from __future__ import annotations

import json
import sys
import types

import cv2
import numpy as np
import pytest

from emolib.live.capture import Capture, FileCapture, LocalCapture, demo_clip, make_capture
from emolib.cli.main import main
from emolib.cremad import EMOTIONS
from emolib.errors import CaptureError

from media import face_frames, face_image, frame_number, no_face_image, write_video, write_wav
from test_predict import make_untrained_models, speechlike, write_av_clip


@pytest.fixture(scope="module")
def untrained_models(tmp_path_factory):
    return make_untrained_models(tmp_path_factory.mktemp("untrained") / "models")


@pytest.fixture(scope="module")
def predictor(untrained_models):
    from emolib.infer.predictor import Predictor

    return Predictor.from_dir(untrained_models)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A 3 s numbered FLV (no audio track) and a 2.5 s WAV, in CREMA-D layout."""
    root = tmp_path_factory.mktemp("cremad")
    (root / "VideoFlash").mkdir()
    (root / "AudioWAV").mkdir()
    video = write_video(root / "VideoFlash" / "1001_DFA_ANG_XX.flv", face_frames(90))
    wav = write_wav(root / "AudioWAV" / "1001_DFA_ANG_XX.wav", speechlike(2.5, 22050), sample_rate=22050)
    return root, video, wav


# ---------------------------------------------------------------- FileCapture


def test_file_capture_shapes(clip):
    _, video, wav = clip
    result = FileCapture(video=video, audio=wav).capture(4.0)
    assert isinstance(result, Capture)
    frame, audio, rate = result
    assert frame.shape == (360, 480, 3) and frame.dtype == np.uint8
    assert rate == 16000 and audio.ndim == 1 and audio.dtype == np.float32
    assert len(audio) == pytest.approx(2.5 * 16000, abs=2)  # the whole 2.5 s (resampled from 22.05 kHz)
    short = FileCapture(video=video, audio=wav).capture(1.0)
    assert len(short.audio) == 16000


def test_file_capture_frame_is_mid_recording(clip):
    _, video, wav = clip
    frame = FileCapture(video=video, audio=wav, offset=0.5).capture(1.0).frame  # records 0.5-1.5 s -> frame at 1.0 s
    assert frame_number(frame) == pytest.approx(30, abs=1)


def test_file_capture_uses_the_video_track_and_images(tmp_path):
    video = write_av_clip(tmp_path / "talk.mp4", face_frames(60), speechlike(2.0))
    frame, audio, rate = FileCapture(video=video).capture(4.0)
    assert frame.shape == (360, 480, 3) and rate == 16000 and len(audio) == pytest.approx(32000, rel=0.05)
    image = tmp_path / "face.png"
    cv2.imwrite(str(image), face_image()[:, :, ::-1])
    frame, audio, _ = FileCapture(image=image).capture(4.0)
    assert frame.shape == (360, 480, 3) and audio is None
    with pytest.raises(CaptureError):
        FileCapture()


def test_demo_clip(clip):
    root, video, wav = clip
    assert demo_clip(root) == (video, wav)
    with pytest.raises(CaptureError, match="no clip 1001_XXX"):
        demo_clip(root, "1001_XXX")


# ---------------------------------------------------------------- LocalCapture with fake devices


class FakeCamera:
    def __init__(self, index, opened=True, image=None):
        self.opened, self.released = opened, False
        self.image = face_image()[:, :, ::-1].copy() if image is None else image  # BGR like OpenCV

    def isOpened(self):
        return self.opened

    def read(self):
        return (True, self.image.copy()) if self.opened else (False, None)

    def grab(self):
        return self.opened

    def retrieve(self):
        return self.read()

    def release(self):
        self.released = True


def fake_sounddevice(rate=44100, level=0.2):
    module = types.ModuleType("sounddevice")

    class PortAudioError(Exception):
        pass

    def query_devices(device=None, kind=None):
        if device not in (None, 0, "Fake Mic"):
            raise ValueError(f"No input device matching {device!r}")
        return {"name": "Fake Mic", "max_input_channels": 1, "default_samplerate": float(rate)}

    def rec(frames, samplerate, channels, dtype, device=None):
        module.recorded = (frames, samplerate, channels, dtype, device)
        t = np.arange(frames) / samplerate
        return (level * np.sin(2 * np.pi * 220 * t)).astype(np.float32)[:, None]

    module.PortAudioError = PortAudioError
    module.query_devices, module.rec, module.wait = query_devices, rec, lambda: None
    return module


@pytest.fixture
def fake_devices(monkeypatch):
    sd = fake_sounddevice()
    monkeypatch.setitem(sys.modules, "sounddevice", sd)
    monkeypatch.setattr(cv2, "VideoCapture", lambda index, *args: FakeCamera(index))
    return sd


@pytest.fixture
def no_devices(monkeypatch):
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # import sounddevice -> ImportError
    monkeypatch.setattr(cv2, "VideoCapture", lambda index, *args: FakeCamera(index, opened=False))


def test_local_capture_shapes(fake_devices):
    seen = []
    frame, audio, rate = LocalCapture(camera=0, mic="Fake Mic").capture(0.3, progress=lambda e, s: seen.append(e))
    assert frame.shape == (360, 480, 3) and frame.dtype == np.uint8
    assert np.array_equal(frame, face_image())  # BGR from the camera turned back into RGB
    assert rate == 44100 and audio.shape == (int(round(0.3 * 44100)),) and audio.dtype == np.float32
    assert fake_devices.recorded[2:] == (1, "float32", "Fake Mic")
    assert seen and seen[-1] == pytest.approx(0.3)


def test_mic_index_given_as_text(fake_devices):
    LocalCapture(mic="0").capture(0.1)
    assert fake_devices.recorded[4] == 0


def test_no_camera_names_the_flag(monkeypatch):
    monkeypatch.setitem(sys.modules, "sounddevice", fake_sounddevice())
    monkeypatch.setattr(cv2, "VideoCapture", lambda index, *args: FakeCamera(index, opened=False))
    with pytest.raises(CaptureError) as caught:
        LocalCapture(camera=3).capture(0.1)
    message = str(caught.value)
    assert "camera 3" in message and "--camera N" in message and "microphone" not in message


def test_unknown_mic_names_the_flag(fake_devices):
    with pytest.raises(CaptureError, match=r"microphone 'Studio'.*python -m sounddevice.*--mic NAME"):
        LocalCapture(mic="Studio").check()


def test_missing_portaudio_is_a_capture_error(monkeypatch):
    def broken_import(name, *args, **kwargs):
        if name == "sounddevice":
            raise OSError("PortAudio library not found")
        return real_import(name, *args, **kwargs)

    import builtins

    real_import = builtins.__import__
    monkeypatch.delitem(sys.modules, "sounddevice", raising=False)
    monkeypatch.setattr(builtins, "__import__", broken_import)
    with pytest.raises(CaptureError, match="PortAudio library not found.*--mic NAME"):
        LocalCapture().input_device()


def test_live_without_devices_exits_2_with_one_line(no_devices, untrained_models, capsys):
    assert main(["live", "--models", str(untrained_models)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("emolib live: error: ")
    assert "camera 0" in err and "--camera N" in err
    assert "microphone" in err and "--mic NAME" in err and "python -m sounddevice" in err


def test_live_without_camera_only(monkeypatch, untrained_models, capsys):
    monkeypatch.setitem(sys.modules, "sounddevice", fake_sounddevice())
    monkeypatch.setattr(cv2, "VideoCapture", lambda index, *args: FakeCamera(index, opened=False))
    assert main(["live", "--models", str(untrained_models), "--camera", "2"]) == 2
    err = capsys.readouterr().err
    assert "camera 2" in err and "--camera N" in err and "--mic" not in err


def test_live_with_fake_devices(fake_devices, untrained_models, capsys):
    assert main(["live", "--models", str(untrained_models), "--seconds", "0.5", "--countdown", "0", "--json"]) == 0
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    assert data["modalities"] == ["voice", "face"] and data["emotion"] in EMOTIONS
    assert data["audio_seconds"] == pytest.approx(0.5, abs=0.01)
    assert "recording [" in captured.err


def test_live_loop_stops_on_ctrl_c(fake_devices, untrained_models, capsys, monkeypatch):
    import emolib.live.capture as capture_module

    calls = []
    original = capture_module.LocalCapture.capture

    def capture_twice(self, seconds, progress=None):
        calls.append(seconds)
        if len(calls) > 2:
            raise KeyboardInterrupt
        return original(self, seconds, progress)

    monkeypatch.setattr(capture_module.LocalCapture, "capture", capture_twice)
    assert main(["live", "--models", str(untrained_models), "--seconds", "0.2", "--countdown", "0", "--loop"]) == 0
    captured = capsys.readouterr()
    assert captured.out.count("emotion:") == 2 and "stopped" in captured.err


def test_make_capture():
    assert make_capture("browser") == "browser"
    assert isinstance(make_capture("local", camera=1, mic="USB"), LocalCapture)
    assert make_capture("auto", image="x.png").__class__ is FileCapture  # not in a notebook kernel
    with pytest.raises(CaptureError, match="expected one of"):
        make_capture("webcam")


# ---------------------------------------------------------------- the widget's kernel side


def jpeg(image_rgb) -> bytes:
    ok, data = cv2.imencode(".jpg", image_rgb[:, :, ::-1])
    assert ok
    return data.tobytes()


def test_widget_predicts_what_the_browser_sends(predictor, tmp_path):
    from emolib.live.widget import LiveDemo

    demo = LiveDemo(predictor, "browser", seconds=4, save_dir=tmp_path / "live")
    wave = speechlike(4.0, 48000)
    with demo.hold_trait_notifications():  # as ipywidgets applies one update from the browser
        demo.audio = wave.astype("<f4").tobytes()
        demo.sample_rate = 48000
        demo.frame = jpeg(face_image())
        demo.page_stats = {"rms": 0.1}
        demo.captures += 1
    assert demo.status == "done", demo.error
    assert demo.result["emotion"] in EMOTIONS and demo.result["modalities"] == ["voice", "face"]
    assert demo.result_png[:8] == b"\x89PNG\r\n\x1a\n"
    assert demo.received["sample_rate"] == 48000 and demo.received["audio_seconds"] == pytest.approx(4.0)
    assert demo.received["audio_rms"] == pytest.approx(float(np.sqrt(np.mean(wave.astype(np.float64) ** 2))), rel=1e-4)
    assert demo.received["frame_shape"] == [360, 480, 3] and demo.received["frame_std"] > 10
    assert demo.last_prediction.emotion == demo.result["emotion"]
    saved = json.loads((tmp_path / "live" / "capture.json").read_text())
    assert saved["prediction"]["emotion"] == demo.result["emotion"] and saved["page_stats"] == {"rms": 0.1}
    assert (tmp_path / "live" / "frame.png").exists() and (tmp_path / "live" / "audio.wav").exists()


def test_widget_shows_why_nothing_was_predicted(predictor):
    from emolib.live.widget import LiveDemo

    demo = LiveDemo(predictor, "browser")
    with demo.hold_trait_notifications():
        demo.audio = np.zeros(16000, dtype="<f4").tobytes()
        demo.sample_rate = 16000
        demo.frame = jpeg(no_face_image())
        demo.captures += 1
    assert demo.status == "error" and "silent" in demo.error and "no face found" in demo.error
    assert demo.result_text == "" and demo.received["audio_rms"] == 0.0


def test_widget_reports_a_bad_frame(predictor):
    from emolib.live.widget import LiveDemo

    demo = LiveDemo(predictor, "browser")
    with demo.hold_trait_notifications():
        demo.frame = b"not a jpeg"
        demo.captures += 1
    assert demo.status == "error" and "not a decodable" in demo.error


def test_widget_file_backend(predictor, clip):
    from emolib.live.widget import LiveDemo

    _, video, wav = clip
    demo = LiveDemo(predictor, FileCapture(video=video, audio=wav), seconds=4)
    assert demo.backend == "file"
    demo._on_message(demo, {"type": "record"}, [])  # what the Record button sends for kernel-side back-ends
    assert demo.status == "done", demo.error
    assert demo.result["modalities"] == ["voice", "face"]
    assert demo.received["audio_seconds"] == pytest.approx(2.5, abs=0.01)


def test_widget_local_backend_without_devices(predictor, no_devices):
    from emolib.live.widget import LiveDemo

    broken = LiveDemo(predictor, LocalCapture(camera=5))
    assert broken.record() is None
    assert broken.status == "error" and "--camera N" in broken.error and "--mic NAME" in broken.error
