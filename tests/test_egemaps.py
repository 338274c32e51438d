"""The eGeMAPS voice model (`--backbone egemaps`) on real speech: openSMILE's functionals, per-speaker standardisation in
training, evaluation, the stream, the timeline and annotate lists with a speaker column, and every output saying which."""
from __future__ import annotations

import builtins
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from emolib.cli.main import main
from emolib.egemaps import MIN_CLIPS, SpeakerStats, by_speaker, functionals

REAL = Path(__file__).parent / "data" / "real"
RAVDESS = sorted((REAL / "ravdess").glob("Actor_*/*.flac"))
TO_CREMAD = "neutral=NEU,happy=HAP,sad=SAD,angry=ANG,fearful=FEA,disgust=DIS,calm=,surprised="
WORDS = {"01": "neutral", "02": "calm", "03": "happy", "04": "sad", "05": "angry", "06": "fearful", "07": "disgust"}


def ravdess_manifest(path: Path) -> Path:
    """The fixture's two RAVDESS actors as a manifest: actor 1 trains, actor 20 validates (and is the test split too)."""
    rows = [{"stem": item.stem, "speaker": int(item.stem.split("-")[-1]), "label": WORDS[item.stem.split("-")[2]], "audio": str(item),
             "video": "", "split": "train" if item.stem.endswith("-01") else "val"} for item in RAVDESS]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def egemaps_models(tmp_path_factory):
    pytest.importorskip("opensmile")
    folder = tmp_path_factory.mktemp("egemaps")
    manifest = ravdess_manifest(folder / "manifest.csv")
    assert main(["train", "voice", "--data", str(manifest), "--backbone", "egemaps", "--label-map", TO_CREMAD, "--epochs", "20",
                 "--out", str(folder / "models"), "--device", "cpu"]) == 0
    return folder / "models"


def test_the_model_trains_on_real_speech_and_records_its_features(egemaps_models):
    import opensmile

    config = json.loads((egemaps_models / "voice" / "config.json").read_text())
    assert config["model"]["backbone"] == "egemaps" and config["model"]["feature_set"] == "eGeMAPSv02"
    assert config["model"]["opensmile_version"] == opensmile.__version__ and config["model"]["speaker_norm"] is True
    assert config["labels"] == ["ANG", "DIS", "FEA", "HAP", "NEU", "SAD"]  # RAVDESS on CREMA-D's six codes, calm left out
    assert config["preprocessing"]["audio"]["normalize"] is False and config["val"]["uar"] > 1 / 6


def test_predict_on_one_file_uses_the_corpus_statistics_and_says_so(egemaps_models, capsys):
    clip = REAL / "cremad" / "AudioMP3" / "1002_DFA_ANG_XX.mp3"
    assert main(["predict", "--models", str(egemaps_models), "--audio", str(clip), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["modalities"] == ["voice"] and result["speaker_norm"] == "the corpus statistics (the speaker is not known)"
    assert "speaker normalisation: the corpus statistics" in " ".join(result["notes"])


def test_speaker_normalisation_standardises_each_speaker_by_their_own_clips():
    rng = np.random.default_rng(0)
    loud, quiet = rng.normal(5, 2, (8, 88)), rng.normal(-1, 0.5, (MIN_CLIPS - 1, 88))
    values = np.concatenate([loud, quiet])
    corpus_mean, corpus_std = np.full(88, 2.0), np.full(88, 3.0)
    out, report = by_speaker(values, ["a"] * 8 + ["b"] * (MIN_CLIPS - 1), corpus_mean, corpus_std)
    np.testing.assert_allclose(out[:8], (loud - loud.mean(0)) / loud.std(0, ddof=1), atol=1e-5)  # speaker a: their own statistics
    np.testing.assert_allclose(out[8:], (quiet - 2.0) / 3.0, atol=1e-5)  # speaker b has too few clips: the corpus's
    assert report == {"speakers": 2, "by_corpus": ["b"]}
    running = SpeakerStats()
    for row in loud:
        running.add(row)
    np.testing.assert_allclose(running.mean, loud.mean(0)) and np.testing.assert_allclose(running.std, loud.std(0, ddof=1))


def test_functionals_are_88_finite_values_even_for_a_very_short_clip():
    pytest.importorskip("opensmile")
    from emolib.media import load_sound

    assert functionals(load_sound(RAVDESS[0])).shape == (88,)
    short = functionals(np.zeros(100, dtype=np.float32))
    assert short.shape == (88,) and np.isfinite(short).all()


def test_evaluation_knows_each_speaker_and_says_which_normalisation(egemaps_models, tmp_path):
    manifest = ravdess_manifest(tmp_path / "m.csv")
    table = pd.read_csv(manifest)
    table.loc[table["speaker"] == 20, "split"] = "test"
    table.to_csv(manifest, index=False)
    reports = {}
    for setting in ("on", "off"):
        out = tmp_path / setting
        assert main(["evaluate", "--data", str(manifest), "--models", str(egemaps_models), "--label-map", TO_CREMAD, "--out", str(out),
                     "--speaker-norm", setting, "--allow-seen-speakers"]) == 0
        reports[setting] = json.loads((out / "metrics.json").read_text())
    assert reports["on"]["speaker_norm"].startswith("per speaker") and reports["off"]["speaker_norm"].startswith("off")
    on, off = (pd.read_csv(tmp_path / setting / "predictions.csv") for setting in ("on", "off"))
    assert not np.allclose(on["voice_ANG"], off["voice_ANG"])  # the features differ, so do the probabilities


def test_a_stream_standardises_by_the_session_once_it_has_heard_enough(egemaps_models, tmp_path):
    from emolib.infer.predictor import Predictor
    from emolib.infer.timeline import main_rows, predict_timeline
    from emolib.live.stream import StreamEngine, stream_file
    from emolib.media import load_sound

    from media import write_wav

    speech = np.concatenate([load_sound(path) for path in RAVDESS[:4]])  # one speaker, about 14 s
    session = write_wav(tmp_path / "session.wav", speech)
    predictor = Predictor.from_dir(egemaps_models, min_speech=0)
    timeline = main_rows(predict_timeline(predictor, session, progress=False))
    notes = list(timeline["notes"])
    assert "until 5 speech windows of this speaker (1 so far)" in notes[0] and "per speaker: 5 windows" in notes[4]
    updates = stream_file(StreamEngine(predictor, hop=1.0, smoothing=0.0), session, realtime=False)
    labels = predictor.labels
    np.testing.assert_allclose([[update.raw[label] for label in labels] for update in updates],
                               timeline[[f"prob_{label}" for label in labels]].to_numpy(float), atol=1e-4)
    off = Predictor.from_dir(egemaps_models, min_speech=0, speaker_norm=False)
    assert "speaker normalisation: off" in main_rows(predict_timeline(off, session, progress=False))["notes"].iloc[-1]


def test_wav2vec2_options_and_a_missing_opensmile_are_one_line(tmp_path, capsys, monkeypatch):
    manifest = ravdess_manifest(tmp_path / "m.csv")
    for extra, said in ((["--layers", "weighted"], "--backbone egemaps (openSMILE's functionals and a small head) has no --layers"),
                        (["--backbone", "tiny", "--speaker-norm", "off"], "--speaker-norm is for --backbone egemaps")):
        argv = ["train", "voice", "--data", str(manifest), "--out", str(tmp_path / "m")] + (["--backbone", "egemaps"] if "tiny" not in extra else [])
        assert main(argv + extra) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and said in err
    real_import = builtins.__import__

    def no_opensmile(name, *args, **kwargs):
        if name == "opensmile":
            raise ImportError("No module named 'opensmile'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_opensmile)
    assert main(["train", "voice", "--data", str(manifest), "--backbone", "egemaps", "--out", str(tmp_path / "m2")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'emolib[egemaps]'" in err
