"""Real people (tests/data/real: CREMA-D's own VP6 FLVs and MP3s, RAVDESS speech, a 48 kHz stereo original): the release's
format decodes, BlazeFace finds the one face, `verify` knows the files, every command runs on them, one file is read one way,
speech detection finds speech in every clip and none in room noise, and its rule holds when the audio shifts."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from emolib.cli.main import main
from emolib.media import input_audio, load_sound, read_audio_track
from emolib.speech import DEFAULT_MIN_SPEECH, speech_seconds
from emolib.video import read_frames, video_info

from test_predict import make_untrained_models

REAL = Path(__file__).parent / "data" / "real"
FLVS = sorted((REAL / "cremad" / "VideoFlash").glob("*.flv"))
MP3S = sorted((REAL / "cremad" / "AudioMP3").glob("*.mp3"))
RAVDESS = sorted((REAL / "ravdess").glob("Actor_*/*.flac"))
STEREO = REAL / "ravdess-original" / "Actor_20" / "03-01-06-01-01-02-20.wav"
TO_CREMAD = "neutral=NEU,happy=HAP,sad=SAD,angry=ANG,fearful=FEA,disgust=DIS,calm=,surprised="

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg (installed by .ci/run)")


def with_rule(models: Path, seconds: float = DEFAULT_MIN_SPEECH) -> Path:
    """``models`` with the no-speech rule a voice model trained on speech stores (``speech.default_rule``)."""
    config = json.loads((models / "voice" / "config.json").read_text())
    config["speech"] = {"min_seconds": seconds, "threshold": 0.3, "clips": 200, "with_speech": 1.0}
    (models / "voice" / "config.json").write_text(json.dumps(config))
    return models


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return with_rule(make_untrained_models(tmp_path_factory.mktemp("real") / "models"))


def test_the_fixture_is_small_and_licensed():
    files = [path for path in REAL.rglob("*") if path.is_file()]
    assert sum(path.stat().st_size for path in files) <= 6_000_000
    assert len(FLVS) == len(MP3S) == 6 and len(RAVDESS) == 50 and STEREO.is_file()
    readme = (REAL / "README.md").read_text()
    assert "licenses/odbl/1.0" in readme and "licenses/dbcl/1.0" in readme and "licenses/by-nc-sa/4.0" in readme


# ---------------------------------------------------------------- the release's format


def test_every_flv_is_vp6_and_gives_frames_and_its_mp3_track():
    import av

    for flv in FLVS:
        with av.open(str(flv)) as container:
            assert container.streams.video[0].codec_context.name == "vp6f" and container.streams.audio[0].codec_context.name.startswith("mp3")
        total, fps = video_info(flv)
        assert fps == pytest.approx(29.97, abs=0.01)
        frames = read_frames(flv, 16)
        assert len(frames) == 16 and frames[0].shape == (360, 480, 3) and len({frame.tobytes() for frame in frames}) > 8
        samples, rate = read_audio_track(flv)
        assert rate == 44100 and abs(len(samples) / rate - total / fps) < 0.15


def test_blazeface_finds_the_one_face_of_every_frame_and_the_crop_is_level():
    from emolib.faces import alignment, detect

    for flv in FLVS:
        for frame in read_frames(flv, 8):
            faces = detect(frame)
            assert len(faces) == 1, flv.name
            eyes = np.hstack([faces[0].keypoints[:2], np.ones((2, 1))]) @ alignment(faces[0].keypoints, 224).T
            assert abs(eyes[0, 1] - eyes[1, 1]) < 0.01 * 224 and eyes[0, 0] < eyes[1, 0]


def test_verify_knows_these_files_as_genuine_and_the_rest_as_missing(tmp_path, capsys):
    tree = tmp_path / "CREMA-D"
    shutil.copytree(REAL / "cremad", tree)
    assert main(["verify", str(tree), "--parts", "video,mp3", "--hash"]) == 1
    out = capsys.readouterr().out
    assert "12 of 14,884 release files match (size and SHA-256)" in out and "missing: 14,872" in out and "sha256 differs" not in out


def test_doctor_decodes_the_release_format():
    from emolib.cli.doctor import Report, release_format

    report = Report()
    release_format(report, None, None, 0)
    assert report.lines == [("ok", "video codec", "CREMA-D's release format (On2 VP6 video, MP3 sound) decodes here")]


# ---------------------------------------------------------------- one file, one reading


def test_an_mp3_is_read_one_way_by_every_path(models):
    from emolib.infer.predictor import Predictor
    from emolib.infer.timeline import timeline_inputs
    from emolib.media import timed_media

    mp3 = MP3S[0]
    wave = load_sound(mp3)
    assert np.array_equal(input_audio(None, mp3)[0], wave) and np.array_equal(timed_media(mp3).wave, wave)
    inputs = timeline_inputs(mp3, window=4.0)
    assert len(inputs.clips) == 1 and np.array_equal(inputs.clips[0], wave)
    predictor = Predictor.from_dir(models, fast=False)
    assert predictor.predict_files(audio=mp3).audio_seconds == pytest.approx(len(wave) / 16000)


@needs_ffmpeg
def test_a_stereo_48_khz_original_is_mixed_down_and_resampled_like_ffmpeg():
    ours = load_sound(STEREO)
    theirs = np.frombuffer(subprocess.run(["ffmpeg", "-v", "error", "-i", str(STEREO), "-af", "pan=mono|c0=0.5*c0+0.5*c1,aresample=16000",
                                           "-f", "f32le", "-"], capture_output=True, check=True).stdout, np.float32)
    assert abs(len(ours) - len(theirs)) <= 1
    length = min(len(ours), len(theirs))
    error = ours[:length] - theirs[:length]
    # two band-limited resamplers (torchaudio's sinc, FFmpeg's swr): within 2 % RMS and 5 % of the peak
    assert np.sqrt(np.mean(error**2)) < 0.02 * np.sqrt(np.mean(ours**2)) and np.abs(error).max() < 0.05 * np.abs(ours).max()


# ---------------------------------------------------------------- corpora and commands


def test_index_reads_the_ravdess_flacs_and_the_cremad_mp3s(tmp_path, capsys):
    assert main(["index", str(REAL / "ravdess"), "--out", str(tmp_path / "ravdess.csv")]) == 0
    ravdess = pd.read_csv(tmp_path / "ravdess.csv", keep_default_na=False)
    assert len(ravdess) == 50 and set(ravdess["speaker"]) == {1, 20} and (ravdess["video"] == "").all() and (ravdess["split"] == "").all()
    assert "no splits" in capsys.readouterr().out
    assert main(["index", str(REAL / "cremad"), "--out", str(tmp_path / "cremad.csv")]) == 0
    cremad = pd.read_csv(tmp_path / "cremad.csv", keep_default_na=False)
    mp3 = cremad[cremad["speaker"] == 1002]
    assert len(cremad) == 12 and len(mp3) == 6 and mp3["audio"].str.endswith(".mp3").all() and (mp3["video"] == "").all()


def test_every_real_clip_holds_speech():
    for path in RAVDESS + MP3S + FLVS:
        wave = input_audio(None, path)[0]
        assert speech_seconds(wave) >= DEFAULT_MIN_SPEECH, path.name


def test_cross_corpus_evaluation_of_real_ravdess_speech(models, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["evaluate", "--data", str(REAL / "ravdess"), "--models", str(models), "--label-map", TO_CREMAD, "--split", "all",
                 "--out", str(out)]) == 0
    said = capsys.readouterr().out
    report = json.loads((out / "metrics.json").read_text())
    assert report["models"]["voice"]["n"] == 48 and report["label_map"]["dropped"] == {"calm": 2}
    assert set(report["not_scored"]) == {"face", "fusion"} and "face: not scored" in said  # no traceback: no video here
    assert "NaN" not in (out / "metrics.json").read_text()


def test_predict_timeline_and_the_stream_run_on_real_files(models, tmp_path, capsys):
    flv, mp3 = FLVS[0], MP3S[0]
    assert main(["predict", "--models", str(models), "--video", str(flv), "--json", "--no-fast"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["modalities"] == ["voice", "face"] and result["face_found"] and result["speech_seconds"] > 1.0
    assert main(["timeline", str(flv), "--models", str(models), "--out", str(tmp_path / "t"), "--no-fast"]) == 0
    table = pd.read_csv(tmp_path / "t" / "timeline.csv")
    assert len(table) == 1 and table["face_found"].all() and table["speech_seconds"].iloc[0] > 1.0
    assert main(["live", "--stream", "--from-file", str(mp3), "--models", str(models), "--fast-as-possible", "--json", "--no-fast"]) == 0
    updates = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert len(updates) == 1 and updates[0]["modalities"] == ["voice"] and not updates[0]["no_speech"]
    # annotate on these files: tests/test_annotate.py (where Ray is already running)


def test_plain_predict_prints_each_note_once(models, tmp_path, capsys):
    assert main(["predict", "--models", str(models), "--audio", str(MP3S[0]), "--no-fast"]) == 0
    captured = capsys.readouterr()
    assert captured.out.count("note: no image: voice only") == 1 and "no image" not in captured.err


# ---------------------------------------------------------------- the end of a file


def test_the_end_of_a_file_gets_a_last_window(models):
    from emolib.infer.predictor import Predictor
    from emolib.infer.timeline import predict_timeline

    table = predict_timeline(Predictor.from_dir(models, fast=False), STEREO, progress=False)  # 4.37 s
    assert list(table["start"]) == [0.0, pytest.approx(0.37, abs=0.01)] and list(table["end"])[-1] == pytest.approx(4.37, abs=0.01)
    assert list(table["tail"]) == [False, True] and "ends at the file's end" in table["notes"].iloc[1]


# ---------------------------------------------------------------- speech detection: on by default, stable


@needs_ffmpeg
def test_room_noise_has_no_voice_by_default_and_real_speech_keeps_it(models, tmp_path):
    from emolib.infer.predictor import Predictor

    predictor = Predictor.from_dir(models, fast=False)
    assert predictor.min_speech == DEFAULT_MIN_SPEECH and predictor.speech_rule_source == "the voice model's default"
    for colour in ("pink", "white"):
        noise = tmp_path / f"{colour}.wav"
        subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", f"anoisesrc=color={colour}:amplitude=0.01:duration=4:sample_rate=16000",
                        str(noise)], check=True)  # about -40 dBFS
        with pytest.raises(Exception, match="no speech"):
            predictor.predict_files(audio=noise)
        assert Predictor.from_dir(models, fast=False, min_speech=0).predict_files(audio=noise).modalities == ["voice"]  # the rule off
    for path in MP3S:
        assert predictor.predict_files(audio=path).modalities == ["voice"]


def test_older_and_synthetic_voice_models_keep_the_rule_off(tmp_path):
    from emolib.infer.predictor import Predictor

    older = make_untrained_models(tmp_path / "older")
    predictor = Predictor.from_dir(older, fast=False)
    assert predictor.min_speech == 0 and predictor.speech_rule_source.startswith("off")
    assert Predictor.from_dir(older, fast=False, min_speech=0.5).min_speech == 0.5


def test_a_shift_of_the_audio_moves_a_windows_speech_by_little():
    """Silero's segments over the whole file, counted per window: a few hundred samples of shift move a clip's speech seconds by at
    most 0.4 s and never across the default rule (the per-window chunk count it replaced moved one of these clips by 1.06 s)."""
    from emolib.speech import speech_chunks

    moved, flipped, old = [], 0, []
    for path in (RAVDESS[::3] + MP3S)[:20]:
        wave = load_sound(path)
        shifted = [np.concatenate([np.zeros(shift, np.float32), wave]) for shift in (0, 160, 320, 480)]
        seconds = [speech_seconds(item) for item in shifted]
        moved.append(max(seconds) - min(seconds))
        flipped += len({value >= DEFAULT_MIN_SPEECH for value in seconds}) > 1
        chunks = [speech_chunks(item).sum() * 0.032 for item in shifted]
        old.append(max(chunks) - min(chunks))
    assert max(moved) <= 0.4 and flipped == 0
    assert max(old) > max(moved)  # what the rule was before


def test_a_voice_model_trained_on_real_speech_stores_the_rule(tmp_path, capsys):
    rows = []
    for path in RAVDESS:
        actor = int(path.stem.split("-")[-1])
        emotion = {"01": "neutral", "02": "calm", "03": "happy", "04": "sad", "05": "angry", "06": "fearful", "07": "disgust"}[path.stem.split("-")[2]]
        rows.append({"stem": path.stem, "speaker": actor, "label": emotion, "audio": str(path), "video": "",
                     "split": "train" if actor == 1 else "val"})
    manifest = tmp_path / "manifest.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    out = tmp_path / "models"
    assert main(["train", "voice", "--data", str(manifest), "--backbone", "tiny", "--freeze", "all", "--epochs", "1", "--out", str(out),
                 "--device", "cpu"]) == 0
    assert "speech detection on by default: 100.0% of 25 training clips hold speech" in capsys.readouterr().out
    rule = json.loads((out / "voice" / "config.json").read_text())["speech"]
    assert rule["min_seconds"] == DEFAULT_MIN_SPEECH and rule["clips"] == 25 and rule["with_speech"] == 1.0


def test_the_synthetic_demo_keeps_speech_detection_off(trained_demo):
    rule = json.loads((trained_demo / "models" / "voice" / "config.json").read_text()).get("speech", {})
    from emolib.speech import SPEECH_SHARE

    assert rule.get("min_seconds") == 0.0 and rule.get("with_speech", 1.0) < SPEECH_SHARE
