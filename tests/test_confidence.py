"""Confidence you can use: temperatures fitted on validation only and applied everywhere, calibration metrics and reliability
diagrams, abstention ("uncertain"), risk-coverage, and results per group of people."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from emolib.cli.main import main
from emolib.eval.calibration import brier, ece, fit_temperature, risk_coverage, scaled

from test_predict import make_untrained_models, speechlike
from media import write_wav


def softmax(logits):
    weights = np.exp(logits - logits.max(axis=1, keepdims=True))
    return weights / weights.sum(axis=1, keepdims=True)


def test_a_temperature_undoes_overconfidence():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, (4000, 6))
    truth = np.array([rng.choice(6, p=row) for row in softmax(logits)])  # the labels follow softmax(logits): calibrated
    overconfident = softmax(3 * logits)
    fit = fit_temperature(overconfident, truth)
    assert fit["temperature"] == pytest.approx(3.0, rel=0.1) and fit["nll_after"] < fit["nll_before"]
    assert ece(softmax(logits), truth) < 0.03 < ece(overconfident, truth)
    assert ece(scaled(overconfident, fit["temperature"]), truth) < 0.03
    assert np.array_equal(scaled(overconfident, 3.0).argmax(1), overconfident.argmax(1))  # the top emotion never changes
    assert brier(np.eye(6)[truth], truth) == 0.0


def test_risk_coverage_keeps_the_most_confident_first():
    probabilities = np.array([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4], [0.55, 0.45]])
    truth = np.array([0, 0, 1, 0])  # the third, less sure, is wrong
    curve = risk_coverage(probabilities, truth, thresholds=(0.7,))
    assert curve["risk"][:2] == [0.0, 0.0] and curve["risk"][2] == pytest.approx(1 / 3)
    assert curve["at"]["0.7"] == {"coverage": 0.5, "accuracy": 1.0}


def test_the_temperature_is_fitted_on_validation_only(tmp_path):
    from emolib.train.calibrate import calibrate

    from test_egemaps import RAVDESS, ravdess_manifest

    pytest.importorskip("opensmile")
    manifest_path = ravdess_manifest(tmp_path / "m.csv")
    assert main(["train", "voice", "--data", str(manifest_path), "--backbone", "egemaps", "--epochs", "5", "--out", str(tmp_path / "models"),
                 "--device", "cpu"]) == 0
    stored = json.loads((tmp_path / "models" / "voice" / "config.json").read_text())["calibration"]
    assert stored["fitted_on"] == "val" and stored["clips"] == 25 and stored["temperature"] > 0
    from emolib.data.manifest import load_manifest

    manifest = load_manifest(manifest_path)
    with_test = pd.concat([manifest, manifest[manifest["split"] == "train"].assign(split="test", stem=lambda rows: rows["stem"] + "-t")])
    fits = [calibrate(tmp_path / "models", "voice", rows, device="cpu", progress=False)["voice"]["temperature"] for rows in (manifest, with_test)]
    assert fits[0] == fits[1] == pytest.approx(stored["temperature"])


def test_abstention_says_uncertain_and_keeps_the_probabilities(tmp_path, capsys):
    models = make_untrained_models(tmp_path / "models", calibrated=False)
    wav = write_wav(tmp_path / "speech.wav", speechlike(3.0))
    assert main(["predict", "--models", str(models), "--audio", str(wav), "--json", "--no-fast", "--abstain", "0.999"]) == 0
    sure = json.loads(capsys.readouterr().out)
    assert sure["emotion"] == "uncertain" and sure["abstained"] and len(sure["probabilities"]) == 6
    assert any("under --abstain 0.999" in note for note in sure["notes"])
    assert main(["predict", "--models", str(models), "--audio", str(wav), "--json", "--no-fast", "--abstain", "0"]) == 0
    never = json.loads(capsys.readouterr().out)
    assert never["emotion"] in never["probabilities"] and not never["abstained"]
    assert never["probabilities"] == sure["probabilities"]
    assert "predates calibration" in " ".join(never["notes"])  # these checkpoints have no temperature: 1, and said
    assert main(["predict", "--models", str(models), "--audio", str(wav), "--abstain", "1.5"]) == 2


def test_a_stored_temperature_is_what_predict_applies(tmp_path, capsys):
    models = make_untrained_models(tmp_path / "models", calibrated=False)
    wav = write_wav(tmp_path / "speech.wav", speechlike(3.0))
    assert main(["predict", "--models", str(models), "--audio", str(wav), "--json", "--no-fast"]) == 0
    plain = np.array(list(json.loads(capsys.readouterr().out)["probabilities"].values()))
    config = json.loads((models / "voice" / "config.json").read_text())
    config["calibration"] = {"temperature": 0.25, "fitted_on": "val"}
    (models / "voice" / "config.json").write_text(json.dumps(config))
    assert main(["predict", "--models", str(models), "--audio", str(wav), "--json", "--no-fast"]) == 0
    result = json.loads(capsys.readouterr().out)
    np.testing.assert_allclose(list(result["probabilities"].values()), scaled(plain[None], 0.25)[0], atol=1e-5)
    assert not any("predates calibration: its probabilities are uncalibrated (temperature 1)" in note and "voice" in note for note in result["notes"])


def test_evaluate_writes_calibration_fairness_and_the_figures(trained_demo, tmp_path):
    report = json.loads((trained_demo / "reports" / "metrics.json").read_text())
    for kind in ("voice", "face", "fusion", "late"):
        metrics = report["models"][kind]
        block = metrics["calibration"]
        assert {"temperature", "ece", "ece_before", "nll", "brier"} <= set(block) and block["temperature"] > 0
        assert set(metrics["abstention"]["at"]) == {"0.3", "0.5", "0.7", "0.9"}
        sex = metrics["fairness"]["sex"]
        assert sex["gap"] == pytest.approx(sex["best_uar"] - sex["worst_uar"]) and all("clips" in entry for entry in sex["groups"].values())
        assert all(entry["too_small"] == (entry["clips"] < 30) for entry in sex["groups"].values())
    assert all("detection_rate" in entry for entry in report["models"]["face"]["fairness"]["sex"]["groups"].values())
    for name in ("reliability.png", "risk_coverage.png"):
        assert (trained_demo / "reports" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for kind in ("voice", "face", "fusion"):
        assert json.loads((trained_demo / "models" / kind / "config.json").read_text())["calibration"]["fitted_on"] == "val"
    card = (trained_demo / "models" / "README.md").read_text()
    assert "Results per group of people" in card and "| sex |" in card and "### Calibration" in card


def test_cross_validation_reports_each_calibration_metric_over_folds():
    from emolib.train.recipes import summarize_folds

    def fold(temperature, ece_value):
        block = {"temperature": temperature, "ece": ece_value, "ece_before": 0.2, "nll": 1.0, "brier": 0.5}
        return {"models": {"voice": {"accuracy": 0.5, "uar": 0.5, "macro_f1": 0.5, "calibration": block}}}

    summary = summarize_folds([fold(1.0, 0.1), fold(2.0, 0.3)])
    calibration = summary["models"]["voice"]["calibration"]
    assert calibration["temperature"] == {"mean": 1.5, "std": 0.5, "folds": [1.0, 2.0]} and calibration["ece"]["mean"] == pytest.approx(0.2)


def test_results_per_sex_on_real_ravdess_speech(tmp_path):
    from emolib.eval.evaluation import model_report

    from test_egemaps import RAVDESS

    rows = []
    rng = np.random.default_rng(0)
    for index, path in enumerate(RAVDESS):
        actor = int(path.stem.split("-")[-1])
        probabilities = rng.dirichlet(np.ones(6))
        truth, wrong = ("ANG", "SAD") if index % 2 else ("SAD", "ANG")
        rows.append({"stem": path.stem, "actor": actor, "sex": "Male" if actor % 2 else "Female", "emotion": truth, "video_path": "",
                     **{f"voice_{label}": value for label, value in zip(["ANG", "DIS", "FEA", "HAP", "NEU", "SAD"], probabilities)},
                     **{f"raw_voice_{label}": value for label, value in zip(["ANG", "DIS", "FEA", "HAP", "NEU", "SAD"], probabilities)},
                     "voice_pred": truth if actor == 1 else wrong})
    report = model_report(pd.DataFrame(rows), "voice", "intended")
    sex = report["fairness"]["sex"]
    assert sex["groups"]["Male"]["uar"] == 1.0 and sex["groups"]["Female"]["uar"] == 0.0 and sex["gap"] == 1.0 and sex["worst_group"] == "Female"
    assert sex["groups"]["Male"]["too_small"] and sex["groups"]["Male"]["clips"] == 25  # 25 clips: under 30, too small to read
