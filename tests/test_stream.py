"""Live, continuously: the streaming engine against `emolib timeline`, skipped hops with a slow predictor, smoothing with
hysteresis, Silero VAD on silence then speech, the no-speech rule the same in the timeline and the stream, and the CLI."""
from __future__ import annotations

import json
import shutil
import subprocess
import time

import numpy as np
import pytest

from emolib.cli.main import main
from emolib.infer.predictor import Predictor
from emolib.infer.timeline import main_rows, predict_timeline
from emolib.live.stream import Smoother, StreamEngine, stream_file

from media import face_frames, write_wav
from test_predict import make_untrained_models, speechlike, write_av_clip


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return make_untrained_models(tmp_path_factory.mktemp("stream") / "models")


@pytest.fixture(scope="module")
def twenty_seconds(tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "twenty.mp4"
    return write_av_clip(path, face_frames(600, index_patch=False), speechlike(20.0, seed=3))


def test_streaming_a_file_gives_the_timelines_windows_and_probabilities(models, twenty_seconds):
    predictor = Predictor.from_dir(models, fast=False)
    engine = StreamEngine(predictor, hop=1.0, smoothing=0.0)
    updates = stream_file(engine, twenty_seconds, realtime=False)
    timeline = main_rows(predict_timeline(predictor, twenty_seconds, progress=False))
    assert len(updates) == len(timeline) == 17
    assert [update.start for update in updates] == list(timeline["start"]) and [update.time for update in updates] == list(timeline["end"])
    labels = predictor.labels
    raw = np.array([[update.raw[label] for label in labels] for update in updates])
    np.testing.assert_allclose(raw, timeline[[f"prob_{label}" for label in labels]].to_numpy(float), atol=1e-4)
    assert all(update.modalities == ["voice", "face"] and not update.no_face for update in updates)


def test_a_slow_predictor_skips_hops_instead_of_queueing(models, tmp_path):
    video = write_av_clip(tmp_path / "eight.mp4", face_frames(240, index_patch=False), speechlike(8.0))
    predictor = Predictor.from_dir(models, fast=False)
    original = predictor.predict

    def slow(*args, **kwargs):
        time.sleep(1.5)
        return original(*args, **kwargs)

    predictor.predict = slow
    engine = StreamEngine(predictor, hop=0.5, smoothing=0.0)
    started = time.perf_counter()
    updates = stream_file(engine, video, realtime=True)
    planned = 9  # windows ending at 4, 4.5, ..., 8 s
    assert engine.skipped >= 3 and len(updates) + engine.skipped == planned
    assert time.perf_counter() - started < 8.0 + 1.5 + 1.0  # the stream kept real time: nothing queued behind the slow updates
    assert [update.skipped for update in updates] == sorted(update.skipped for update in updates)


def test_smoothing_and_hysteresis():
    smoother = Smoother(smoothing=0.5, margin=0.1)
    _, label = smoother.update({"a": 0.6, "b": 0.4})
    assert label == "a"
    smoothed, label = smoother.update({"a": 0.45, "b": 0.55})  # b leads the raw output, but not the average by the margin
    assert smoothed == pytest.approx({"a": 0.525, "b": 0.475}) and label == "a"
    for _ in range(3):
        smoothed, label = smoother.update({"a": 0.3, "b": 0.7})
    assert label == "b" and smoothed["b"] > smoothed["a"] + 0.1
    off = Smoother(smoothing=0.0, margin=0.0)
    assert off.update({"a": 0.2, "b": 0.8}) == ({"a": 0.2, "b": 0.8}, "b")


# ---------------------------------------------------------------- speech detection


@pytest.fixture(scope="module")
def silent_then_speech(tmp_path_factory):
    """6 s of silence, then espeak-ng speech (about 6 s), as 16 kHz mono."""
    if shutil.which("espeak-ng") is None or shutil.which("ffmpeg") is None:
        pytest.skip("needs espeak-ng and ffmpeg (apt install espeak-ng ffmpeg)")
    import soundfile

    root = tmp_path_factory.mktemp("speech")
    subprocess.run(["espeak-ng", "-s", "140", "-w", str(root / "said.wav"),
                    "Kids are talking by the door. It is eleven o'clock. I would like a new alarm clock."], check=True)
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(root / "said.wav"), "-ar", "16000", "-ac", "1", str(root / "said16.wav")], check=True)
    speech, _ = soundfile.read(root / "said16.wav", dtype="float32")
    wave = np.concatenate([np.zeros(6 * 16000, dtype=np.float32), speech[: 6 * 16000]])
    return write_wav(root / "silent-then-speech.wav", wave), wave


def test_silero_vad_marks_silence_then_speech(silent_then_speech):
    from emolib.speech import speech_probabilities, speech_seconds

    _, wave = silent_then_speech
    probabilities = speech_probabilities(wave)
    per_second = 16000 // 512
    assert probabilities[: 5 * per_second].max() < 0.2 and (probabilities[7 * per_second:] > 0.5).mean() > 0.5
    assert speech_seconds(wave[: 6 * 16000]) == 0.0 and speech_seconds(wave[6 * 16000:]) > 2.0
    noise = np.random.default_rng(0).normal(0, 0.05, 3 * 16000).astype(np.float32)
    assert speech_seconds(noise) < 0.3


def test_the_no_speech_rule_is_the_same_in_the_timeline_and_the_stream(models, silent_then_speech, tmp_path):
    path, wave = silent_then_speech
    video = write_av_clip(tmp_path / "talk.mp4", face_frames(360, index_patch=False), wave)
    predictor = Predictor.from_dir(models, fast=False, min_speech=0.5)
    timeline = main_rows(predict_timeline(predictor, video, progress=False))
    updates = stream_file(StreamEngine(predictor, hop=1.0), video, realtime=False)
    timeline_flags = ["voice" not in modalities for modalities in timeline["modalities"].fillna("").str.split("+")]
    assert [update.no_speech for update in updates] == timeline_flags
    assert timeline_flags[0] and not timeline_flags[-1]  # silence first, speech at the end
    assert timeline["speech_seconds"].iloc[0] == 0.0 and timeline["speech_seconds"].iloc[-1] > 1.0
    np.testing.assert_allclose([update.speech_seconds for update in updates], timeline["speech_seconds"].to_numpy(float))


def test_without_silero_vad_one_line_says_how_to_install_it(models, monkeypatch, capsys):
    import importlib.util

    from emolib import speech

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None if name == "silero_vad" else real(name, *args))
    speech._session.cache_clear()
    wav = write_wav(speech_path := (models.parent / "speech.wav"), speechlike(2.0))
    code = main(["predict", "--models", str(models), "--audio", str(wav), "--min-speech", "0.5", "--no-fast"])
    err = capsys.readouterr().err
    speech._session.cache_clear()
    assert code == 2 and err.count("\n") == 1 and "pip install silero-vad" in err and speech_path.exists()


def test_live_stream_from_a_file_prints_one_json_line_per_update(models, twenty_seconds, capsys):
    assert main(["live", "--stream", "--from-file", str(twenty_seconds), "--fast-as-possible", "--json", "--models", str(models), "--no-fast"]) == 0
    captured = capsys.readouterr()
    lines = [json.loads(line) for line in captured.out.splitlines()]
    assert len(lines) == 17 and lines[0]["time"] == 4.0 and set(lines[0]["smoothed"]) == set(lines[0]["raw"])
    assert "17 updates, 0 hops skipped" in captured.err


def test_stream_bench_writes_its_section(tmp_path):
    from emolib.bench.run import run_stream_bench
    from emolib.bench.streaming import END, START

    out = tmp_path / "BENCH.md"
    out.write_text("# Benchmarks\n\nkept\n")
    rows = run_stream_bench(out, work=tmp_path / "work", size="tiny", seconds=6.0)
    assert [row["hop"] for row in rows] == [1.0, 0.5] and rows[0]["updates"] + rows[0]["skipped"] >= 3  # about 6 s: windows end at 4, 5, 6, ...
    assert all(row["p50_ms"] > 0 and 0 < row["cpu_share"] < 4 for row in rows)
    text = out.read_text()
    assert text.startswith("# Benchmarks\n\nkept") and START in text and END in text and "| 0.5 s |" in text
