"""End to end on synthetic CREMA-D: the `make demo` pipeline and the CLI's training paths."""
from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from emolib import load_model
from emolib.cli.main import main
from emolib.data.manifest import load_manifest
from emolib.data.synth.corpus import make_synthetic_cremad

CHANCE = 1 / 6

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def report(trained_demo):
    return json.loads((trained_demo / "reports" / "metrics.json").read_text())


def test_each_single_model_learns(report):
    assert report["split"] == "test"
    for kind in ("voice", "face"):
        assert report["models"][kind]["uar"] > 2 * CHANCE, (kind, report["models"][kind]["uar"])


def test_fusion_beats_the_best_single_model_by_ten_points(report):
    best_single = max(report["models"][kind]["uar"] for kind in ("voice", "face"))
    assert report["models"]["fusion"]["uar"] >= best_single + 0.10


def test_splits_are_actor_disjoint(trained_demo, report):
    manifest = load_manifest(trained_demo / "manifest.csv")
    actors = {split: set(rows["actor"]) for split, rows in manifest.groupby("split")}
    assert set(actors) == {"train", "val", "test"}
    assert not actors["train"] & actors["val"]
    assert not actors["train"] & actors["test"]
    assert not actors["val"] & actors["test"]
    assert set(report["actors"]) == actors["test"]


def test_models_were_selected_on_validation(trained_demo):
    for kind in ("voice", "face", "fusion"):
        config = json.loads((trained_demo / "models" / kind / "config.json").read_text())
        history = json.loads((trained_demo / "models" / kind / "history.json").read_text())
        assert config["val"]["split"] == "val"
        assert config["val"]["uar"] == max(row["val_uar"] for row in history)


def test_report_files(trained_demo, report):
    reports = trained_demo / "reports"
    for name in ("confusion_counts.png", "confusion_normalized.png", "comparison.png"):
        assert (reports / name).stat().st_size > 10_000
    predictions = pd.read_csv(reports / "predictions.csv")
    assert len(predictions) == report["clips"]
    probabilities = predictions[[f"fusion_{emotion}" for emotion in ("ANG", "DIS", "FEA", "HAP", "NEU", "SAD")]]
    assert (probabilities.sum(axis=1) - 1).abs().max() < 1e-4
    assert set(report["models"]["fusion"]["by"]["sex"]) == set(predictions["sex"])
    fusion = report["models"]["fusion"]
    assert sum(map(sum, fusion["confusion"])) == fusion["n"] == report["clips"]


def test_loaded_checkpoints_know_their_preprocessing(trained_demo):
    voice = load_model(trained_demo / "models" / "voice")
    face = load_model(trained_demo / "models" / "face")
    fusion = load_model(trained_demo / "models" / "fusion")
    assert voice.checkpoint["preprocessing"]["audio"] == {"sample_rate": 16000, "window_seconds": 4.0, "normalize": True, "speech_only": False}
    assert face.checkpoint["preprocessing"]["face"]["image_size"] == 224
    assert fusion.config.voice_dim == voice.feature_dim and fusion.config.face_dim == face.feature_dim
    with torch.no_grad():
        assert voice(torch.zeros(1, 64000)).shape == (1, 6)


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    return make_synthetic_cremad(tmp_path_factory.mktemp("small") / "data", actors=6, clips_per_emotion=2, progress=False)


def test_cpu_path_trains_heads_on_cached_features(small_data, tmp_path, capsys):
    args = ["train", "voice", "--data", str(small_data), "--out", str(tmp_path / "models"), "--backbone", "tiny",
            "--freeze", "all", "--epochs", "2", "--cache", str(tmp_path / "cache")]
    assert main(args) == 0
    cached = sorted((tmp_path / "cache" / "features").glob("voice-*.safetensors"))
    assert len(cached) == 2  # train and val embeddings, extracted once
    stamps = [path.stat().st_mtime_ns for path in cached]
    assert main(args + ["--restart"]) == 0
    assert [path.stat().st_mtime_ns for path in cached] == stamps
    assert "best val UAR" in capsys.readouterr().out
    assert load_model(tmp_path / "models" / "voice").config.freeze == "all"


def test_cross_validation_reports_mean_and_std(small_data, tmp_path, capsys):
    args = ["evaluate", "--data", str(small_data), "--models", str(tmp_path / "models"), "--out", str(tmp_path / "reports"),
            "--folds", "3", "--backbone", "tiny", "--freeze", "all", "--epochs", "1", "--cache", str(tmp_path / "cache")]
    assert main(args) == 0
    summary = json.loads((tmp_path / "reports" / "cv_metrics.json").read_text())
    assert summary["folds"] == 3
    fusion = summary["models"]["fusion"]
    assert len(fusion["uar_folds"]) == 3 and fusion["uar_std"] >= 0
    tested = [set(json.loads((tmp_path / "reports" / f"fold{k}" / "metrics.json").read_text())["actors"]) for k in range(3)]
    assert not (tested[0] & tested[1]) and not (tested[1] & tested[2]) and len(set.union(*tested)) == 6
    assert not list((tmp_path / "models").glob("folds/*/*/resume.safetensors"))  # finished folds keep checkpoints and metrics only
    stamps = {path: path.stat().st_mtime_ns for path in (tmp_path / "models").glob("folds/*/*/model.safetensors")}
    capsys.readouterr()
    assert main(args) == 0  # a rerun reads the finished folds back
    assert capsys.readouterr().out.count("done before") == 3
    assert {path: path.stat().st_mtime_ns for path in stamps} == stamps
    assert json.loads((tmp_path / "reports" / "cv_metrics.json").read_text())["models"] == summary["models"]
    from emolib.train.recipes import FOLD_FILE, finished_fold

    fold_out, fold_models = tmp_path / "reports" / "fold0", tmp_path / "models" / "folds" / "fold0"
    run = json.loads((fold_out / FOLD_FILE).read_text())["run"]
    assert finished_fold(fold_out, fold_models, run) is not None
    assert finished_fold(fold_out, fold_models, {**run, "model": {**run["model"], "lr": 0.01}}) is None  # another run: redone
    (fold_models / "voice" / "model.safetensors").write_bytes(b"retrained")
    assert finished_fold(fold_out, fold_models, run) is None  # checkpoints changed since: redone


def test_training_without_data_is_one_line_error(tmp_path, capsys):
    assert main(["train", "voice", "--data", str(tmp_path / "nothing"), "--backbone", "tiny"]) == 2
    error = capsys.readouterr().err.strip()
    assert "nothing" in error and "\n" not in error
