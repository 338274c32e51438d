"""Predictor, `emolib predict` and `emolib timeline`: fallbacks, JSON output, video audio tracks,
windows, and agreement with `emolib evaluate` on a test clip of the trained demo models."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from emolib.cli.main import main
from emolib.cremad import EMOTIONS
from emolib.errors import EmolibError, ModelError
from emolib.infer.prediction import Prediction, PredictionError
from emolib.infer.predictor import Predictor
from emolib.media import read_audio_track

from media import face_frames, face_image, no_face_image, write_video, write_wav

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- helpers shared with test_capture


def speechlike(seconds: float = 3.0, sample_rate: int = 16000, seed: int = 0) -> np.ndarray:
    """A voiced, syllable-modulated harmonic tone with a little noise (clearly not silent)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    pitch = 140 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / sample_rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 6))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2
    return (0.2 * voiced * envelope + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


def write_av_clip(path, frames, audio=None, fps: int = 30, sample_rate: int = 16000, codec: str = "mpeg4") -> Path:
    """Write RGB frames (+ mono float audio as AAC) to an mp4 with PyAV."""
    import av
    from fractions import Fraction

    height, width = frames[0].shape[:2]
    with av.open(str(path), "w") as container:
        video = container.add_stream(codec, rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.bit_rate = 2_000_000
        sound = None
        if audio is not None:
            sound = container.add_stream("aac", rate=sample_rate)
            sound.layout = "mono"
        for image in frames:
            for packet in video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        if sound is not None:
            samples = np.asarray(audio, dtype=np.float32)
            chunk = 1024
            for start in range(0, len(samples), chunk):
                frame = av.AudioFrame.from_ndarray(samples[None, start : start + chunk], format="fltp", layout="mono")
                frame.sample_rate, frame.pts, frame.time_base = sample_rate, start, Fraction(1, sample_rate)
                for packet in sound.encode(frame):
                    container.mux(packet)
            for packet in sound.encode():
                container.mux(packet)
    return Path(path)


def make_untrained_models(root: Path, labels=EMOTIONS, voice_options: dict | None = None, face_options: dict | None = None,
                          audio_options: dict | None = None, face_settings: dict | None = None, calibrated: bool = True) -> Path:
    """Random-init tiny voice, face and fusion checkpoints over ``labels`` in root/{voice,face,fusion} (seconds, no training);
    the options go into the voice and face configs and their preprocessing settings (recipe options). ``calibrated``: each
    records a temperature of 1, as training writes one (False: as checkpoints made before calibration)."""
    import torch

    from emolib.files import file_digest
    from emolib.models.checkpoint import save_checkpoint
    from emolib.models.nets import FaceConfig, FaceModel, FusionConfig, FusionModel, VoiceConfig, VoiceModel
    from emolib.transforms import AudioSettings, FaceSettings

    torch.manual_seed(0)
    voice = VoiceModel(VoiceConfig(backbone="tiny", freeze="none", num_labels=len(labels), **(voice_options or {})))
    face = FaceModel(FaceConfig(backbone="tiny", weights=None, num_labels=len(labels), **(face_options or {})))
    fusion = FusionModel(FusionConfig(voice.feature_dim, face.feature_dim, hidden_dim=32, num_labels=len(labels)))
    audio, faces = {"audio": asdict(AudioSettings(**(audio_options or {})))}, {"face": asdict(FaceSettings(**(face_settings or {})))}
    calibration = {"calibration": {"temperature": 1.0, "fitted_on": "val", "clips": 0}} if calibrated else {}
    save_checkpoint(voice, "voice", root / "voice", audio, calibration, labels=labels)
    save_checkpoint(face, "face", root / "face", faces, calibration, labels=labels)
    lineage = {f"{kind}_sha256": file_digest(root / kind / "model.safetensors") for kind in ("voice", "face")}
    save_checkpoint(fusion, "fusion", root / "fusion", {**audio, **faces},
                    {"voice_checkpoint": "../voice", "face_checkpoint": "../face", **lineage, **calibration}, labels=labels)
    return root


@pytest.fixture(scope="module")
def untrained_models(tmp_path_factory) -> Path:
    return make_untrained_models(tmp_path_factory.mktemp("untrained") / "models")


@pytest.fixture(scope="module")
def predictor(untrained_models) -> Predictor:
    return Predictor.from_dir(untrained_models)


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="module")
def clip_with_track(media_dir) -> Path:
    """A 3 s mp4 (mpeg4 video of a face + AAC speech-like audio)."""
    return write_av_clip(media_dir / "talking.mp4", face_frames(90), speechlike(3.0))


def assert_distribution(probabilities: dict) -> None:
    assert list(probabilities) == list(EMOTIONS)
    values = np.array(list(probabilities.values()))
    assert values.shape == (6,)
    assert np.all(values >= 0) and values.sum() == pytest.approx(1.0, abs=1e-5)


# ---------------------------------------------------------------- Predictor on arrays


def test_both_modalities_use_fusion(predictor):
    stereo_44k = np.stack([speechlike(3.0, 44100), speechlike(3.0, 44100, seed=1)], axis=1)
    prediction = predictor.predict(stereo_44k, 44100, face_image())
    assert prediction.source == "fusion" and prediction.modalities == ["voice", "face"]
    assert prediction.present == [1, 1]
    for probabilities in (prediction.probabilities, prediction.voice, prediction.face, prediction.fusion):
        assert_distribution(probabilities)
    assert prediction.probabilities == prediction.fusion
    assert prediction.emotion == max(prediction.fusion, key=prediction.fusion.get)
    assert prediction.face_found and len(prediction.faces) == 1 and prediction.faces[0]["main"]
    x, y, w, h = prediction.face_box
    assert 0 <= x < 480 and 0 <= y < 360 and w > 50 and h > 50
    assert prediction.audio_seconds == pytest.approx(3.0, abs=1e-3)
    assert prediction.notes == []


def test_no_face_falls_back_to_voice(predictor):
    prediction = predictor.predict(speechlike(), 16000, no_face_image())
    assert prediction.modalities == ["voice"] and prediction.source == "voice"
    assert prediction.face_found is False and prediction.face is None and prediction.fusion is None
    assert prediction.probabilities == prediction.voice
    assert_distribution(prediction.probabilities)
    assert any("no face found" in note and "voice only" in note for note in prediction.notes)


def test_silence_falls_back_to_face(predictor):
    prediction = predictor.predict(np.zeros(48000, dtype=np.float32), 48000, face_image())
    assert prediction.modalities == ["face"] and prediction.source == "face"
    assert prediction.voice is None and prediction.probabilities == prediction.face
    assert any("silent" in note and "face only" in note for note in prediction.notes)


def test_silence_in_the_model_window_counts_as_silence(predictor):
    """Speech outside the centre 4 s window the model sees does not make the input usable."""
    wave = np.zeros(16000 * 10, dtype=np.float32)
    wave[:16000] = speechlike(1.0)
    prediction = predictor.predict(wave, 16000, face_image())
    assert prediction.modalities == ["face"]


def test_neither_modality_is_an_error(predictor):
    with pytest.raises(PredictionError, match="silent.*no face found") as caught:
        predictor.predict(np.zeros(16000, dtype=np.float32), 16000, no_face_image())
    assert isinstance(caught.value, EmolibError)
    assert "\n" not in str(caught.value)
    with pytest.raises(PredictionError, match="no audio; no image"):
        predictor.predict()


def test_short_audio_and_missing_rate(predictor):
    prediction = predictor.predict(speechlike(0.1), 16000, face_image())
    assert prediction.modalities == ["face"] and any("shorter than" in note for note in prediction.notes)
    with pytest.raises(EmolibError, match="sample_rate is required"):
        predictor.predict(speechlike(), None, face_image())


def test_frames_of_a_clip_are_averaged(predictor):
    frames = face_frames(3)
    prediction = predictor.predict(image=frames)
    assert prediction.frames == 3 and prediction.frames_with_face == 3 and prediction.modalities == ["face"]
    as_array = predictor.predict(image=np.stack(frames))
    assert as_array.face == pytest.approx(prediction.face)
    single = predictor.predict(image=frames[0])
    assert single.frames == 1 and single.face != pytest.approx(prediction.face)


def test_single_modality_through_fusion(untrained_models):
    predictor = Predictor.from_dir(untrained_models, single="fusion")
    prediction = predictor.predict(speechlike(), 16000, no_face_image())
    assert prediction.source == "fusion" and prediction.present == [1, 0] and prediction.modalities == ["voice"]
    assert_distribution(prediction.fusion)
    assert prediction.fusion != pytest.approx(prediction.voice)
    assert any("flagged missing" in note for note in prediction.notes)


def test_subset_of_models(untrained_models, tmp_path):
    import shutil

    shutil.copytree(untrained_models / "voice", tmp_path / "voice")
    predictor = Predictor.from_dir(tmp_path)
    assert predictor.kinds == ["voice"]
    prediction = predictor.predict(speechlike(), 16000, face_image())
    assert prediction.modalities == ["voice"] and any("no face model" in note for note in prediction.notes)
    with pytest.raises(PredictionError, match="no face model"):
        predictor.predict(image=face_image())
    assert Predictor.from_dir(tmp_path / "voice").kinds == ["voice"]  # a single checkpoint folder works too
    shutil.copytree(untrained_models / "fusion", tmp_path / "fusion")
    with pytest.raises(ModelError, match="needs the face checkpoint"):
        Predictor.from_dir(tmp_path)


def test_empty_models_folder(tmp_path):
    with pytest.raises(ModelError, match="no trained models"):
        Predictor.from_dir(tmp_path)
    with pytest.raises(ModelError, match="no such models folder"):
        Predictor.from_dir(tmp_path / "missing")


def test_to_dict_is_json(predictor):
    prediction = predictor.predict(speechlike(), 16000, face_image())
    data = json.loads(json.dumps(prediction.to_dict()))
    assert data["emotion"] in EMOTIONS and data["emotion_name"]
    assert data["modalities"] == ["voice", "face"] and data["face_found"] is True
    assert isinstance(data["face_box"], list) and len(data["face_box"]) == 4
    assert isinstance(Prediction(**{k: v for k, v in data.items() if k != "emotion_name"}), Prediction)


# ---------------------------------------------------------------- files and the CLI


def test_read_audio_track(clip_with_track, media_dir):
    samples, rate = read_audio_track(clip_with_track)
    assert rate == 16000 and samples.ndim == 2 and samples.shape[1] == 1
    assert samples.shape[0] / rate == pytest.approx(3.0, abs=0.1)
    assert np.sqrt(np.mean(samples**2)) > 0.02
    silent_video = write_video(media_dir / "mute.flv", face_frames(10))
    assert read_audio_track(silent_video) is None


def test_video_with_audio_track_gives_both_modalities(untrained_models, clip_with_track, capsys):
    assert main(["predict", "--models", str(untrained_models), "--video", str(clip_with_track), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["modalities"] == ["voice", "face"] and data["source"] == "fusion"
    assert data["audio_seconds"] == pytest.approx(3.0, abs=0.1) and data["frames"] == 3
    assert data["notes"] == []


def test_audio_flag_overrides_the_track(untrained_models, clip_with_track, media_dir, capsys):
    silence = write_wav(media_dir / "silence.wav", np.zeros(32000, dtype=np.float32))
    assert main(["predict", "--models", str(untrained_models), "--video", str(clip_with_track), "--audio", str(silence), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["modalities"] == ["face"] and any("silent" in note for note in data["notes"])


def test_video_without_track_says_so(untrained_models, media_dir, capsys):
    video = write_video(media_dir / "no_track.flv", face_frames(30))
    assert main(["predict", "--models", str(untrained_models), "--video", str(video)]) == 0
    out = capsys.readouterr().out
    assert "emotion:" in out and "no audio track" in out and "used: face -> face" in out


def test_text_output_lists_every_model(untrained_models, media_dir, capsys):
    image = media_dir / "face.png"
    import cv2

    cv2.imwrite(str(image), face_image()[:, :, ::-1])
    wav = write_wav(media_dir / "speech.wav", speechlike())
    assert main(["predict", "--models", str(untrained_models), "--image", str(image), "--audio", str(wav)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith("emotion: ")
    assert any(line.startswith("voice ") for line in lines) and any(line.startswith("face ") for line in lines)
    assert any(line.startswith("fusion*") for line in lines)
    assert "face found: yes" in out and "used: voice, face -> fusion" in out


def test_json_is_exactly_one_object_on_stdout(untrained_models, media_dir):
    """Through the real console entry point: nothing else may reach stdout (progress, warnings, notes)."""
    wav = write_wav(media_dir / "speech2.wav", speechlike())
    image = media_dir / "noface.png"
    import cv2

    cv2.imwrite(str(image), no_face_image())
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-m", "emolib", "predict", "--models", str(untrained_models), "--audio", str(wav),
                             "--image", str(image), "--json"], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)  # raises if anything but one JSON document is printed
    assert isinstance(data, dict) and data["modalities"] == ["voice"]
    assert "no face found" in result.stderr  # notes are repeated on stderr


@pytest.mark.parametrize("argv, message", [
    ([], "give --audio, --image and/or --video"),
    (["--audio", "missing.wav"], "missing.wav: no such file"),
    (["--image", "a.png", "--video", "b.mp4"], "not both"),
])
def test_predict_errors_are_one_line(untrained_models, capsys, argv, message):
    assert main(["predict", "--models", str(untrained_models), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_missing_models_folder_is_one_line(tmp_path, capsys):
    assert main(["predict", "--models", str(tmp_path / "nope"), "--image", str(REPO / "docs" / "live_demo.png")]) == 2
    err = capsys.readouterr().err
    assert "no such models folder" in err and err.count("\n") == 1


def test_timeline_windows_csv_and_png(untrained_models, media_dir, tmp_path, capsys):
    """An 8 s video with audio -> 4 s windows every 1 s: 0-4, 1-5, 2-6, 3-7, 4-8."""
    frames = face_frames(80)
    video = write_av_clip(media_dir / "long.mp4", frames * 3, np.concatenate([speechlike(4.0), speechlike(4.0, seed=2)]))
    out = tmp_path / "timeline"
    assert main(["timeline", str(video), "--models", str(untrained_models), "--out", str(out)]) == 0
    table = pd.read_csv(out / "timeline.csv")
    expected_windows = int((8.0 - 4.0) // 1.0) + 1
    assert len(table) == expected_windows
    assert table["start"].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert table["end"].tolist() == pytest.approx([4.0, 5.0, 6.0, 7.0, 8.0], abs=0.05)
    assert set(table["label"]) <= set(EMOTIONS) and (table["source"] == "fusion").all()
    for kind in ("prob", "voice", "face", "fusion"):
        sums = table[[f"{kind}_{e}" for e in EMOTIONS]].sum(axis=1)
        assert np.allclose(sums, 1.0, atol=1e-3)
    assert table["face_found"].all()
    png = (out / "timeline.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert f"{expected_windows} windows" in capsys.readouterr().out


def test_timeline_window_frames_come_from_the_window(predictor, media_dir):
    """Frames are sampled inside each window (read back from the frame numbers drawn on them)."""
    from emolib.media import window_frame_indices
    from emolib.video import read_frames_at

    from media import frame_number

    video = write_video(media_dir / "numbered.flv", face_frames(180))  # 6 s at 30 fps
    for start in (0.0, 1.0, 2.0):
        indices = window_frame_indices(start, start + 4.0, 30.0, 180, 3)
        assert all(start * 30 <= index < (start + 4) * 30 for index in indices)
        frames = read_frames_at(video, indices)
        assert [frame_number(frames[i]) for i in indices] == indices


def test_timeline_of_short_and_mute_video(untrained_models, media_dir, tmp_path):
    video = write_video(media_dir / "short.flv", face_frames(45))  # 1.5 s, no audio
    out = tmp_path / "short"
    assert main(["timeline", str(video), "--models", str(untrained_models), "--out", str(out)]) == 0
    table = pd.read_csv(out / "timeline.csv")
    assert len(table) == 1 and table["modalities"].tolist() == ["face"]
    assert "no audio track" in table["notes"][0]


# ---------------------------------------------------------------- agreement with evaluation


@pytest.mark.slow
def test_predict_matches_evaluation(trained_demo, capsys):
    """`emolib predict --video X.flv --audio X.wav` reproduces predictions.csv of `emolib evaluate`."""
    predictions = pd.read_csv(trained_demo / "reports" / "predictions.csv")
    data = trained_demo / "cremad-synth"
    rows = predictions.dropna(subset=["fusion_pred"]).head(3)
    assert len(rows)
    for _, row in rows.iterrows():
        video, wav = data / "VideoFlash" / f"{row.stem}.flv", data / "AudioWAV" / f"{row.stem}.wav"
        assert main(["predict", "--models", str(trained_demo / "models"), "--video", str(video), "--audio", str(wav), "--json"]) == 0
        result = json.loads(capsys.readouterr().out)
        assert result["source"] == "fusion"
        assert result["emotion"] == row.fusion_pred, row.stem
        for kind in ("voice", "face", "fusion"):
            expected = [row[f"{kind}_{e}"] for e in EMOTIONS]
            assert [result[kind][e] for e in EMOTIONS] == pytest.approx(expected, abs=1e-4), (row.stem, kind)


def test_the_suite_keeps_out_of_the_users_cache():
    """Fast files of in-memory models and bench inputs go to the cache root; during the suite that is the run's own
    temporary folder (conftest), never the user's ~/.cache/emolib (a full run once left 258 MB there)."""
    import tempfile

    from emolib.files import DEFAULT_CACHE_ROOT, cache_root

    assert cache_root() != DEFAULT_CACHE_ROOT
    assert Path(tempfile.gettempdir()).resolve() in cache_root().resolve().parents
