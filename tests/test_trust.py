"""Trust, second round: no test on seen speakers, model cards only from the models' own test split, and one clean line
(exit 2, nothing written) for bad manifests, layouts, label maps and checkpoints."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from emolib.cli.main import main


def run(capsys, *args) -> tuple[int, str, str]:
    try:
        code = main([str(arg) for arg in args])
    except SystemExit as stopped:
        code = stopped.code
    out, err = capsys.readouterr()
    return code, out, err


def one_line(code, err) -> bool:
    return code == 2 and err.strip().count("\n") == 0 and "Traceback" not in err and err.startswith("emolib")


# ---------------------------------------------------------------- 1. never test on speakers a model trained on


def test_another_split_seed_is_refused_naming_the_seen_speakers(trained_demo, tmp_path, capsys):
    models = trained_demo / "models"
    card = (models / "README.md").read_text()
    recorded = json.loads((models / "voice" / "config.json").read_text())["data"]["split_speakers"]
    args = ["evaluate", "--data", trained_demo / "cremad-synth", "--models", models, "--cache", trained_demo / "cache", "--device", "cpu"]
    code, out, err = run(capsys, *args, "--out", tmp_path / "seed3", "--split-seed", "3")
    assert one_line(code, err), err
    assert "--allow-seen-speakers" in err and any(str(speaker) in err for speaker in recorded["train"] + recorded["val"])
    assert not (tmp_path / "seed3").exists()
    code, out, err = run(capsys, *args, "--out", tmp_path / "fold", "--fold", "1")
    assert one_line(code, err), err
    code, out, err = run(capsys, *args, "--out", tmp_path / "allowed", "--split-seed", "3", "--allow-seen-speakers")
    assert code == 0, err
    report = json.loads((tmp_path / "allowed" / "metrics.json").read_text())
    seen = set(report["seen_speakers"]["voice"])
    assert seen and seen <= set(recorded["train"] + recorded["val"]) and "not a speaker-independent result" in report["warning"]
    assert "SEEN SPEAKERS" in out and "WARNING" in out and "model card not updated" in out
    assert (models / "README.md").read_text() == card
    code, out, err = run(capsys, *args, "--out", tmp_path / "own")  # the split it was trained with: evaluated, the card written
    assert code == 0 and "seen_speakers" not in json.loads((tmp_path / "own" / "metrics.json").read_text()), err
    assert f"model card: {models / 'README.md'}" in out


# ---------------------------------------------------------------- 5. the card holds the models' own test split only; 8. label maps


def test_cross_corpus_and_empty_or_useless_maps_leave_the_card_alone(trained_demo, tmp_path, capsys):
    from emolib.data.synth.layouts import make_synthetic_ravdess

    models = trained_demo / "models"
    card = (models / "README.md").read_text()
    ravdess = make_synthetic_ravdess(tmp_path / "RAVDESS", actors=3, progress=False)
    args = ["evaluate", "--data", ravdess, "--models", models, "--cache", tmp_path / "cache", "--device", "cpu"]
    code, out, err = run(capsys, *args, "--out", tmp_path / "unmapped")
    assert code == 0, err
    assert "model card not updated" in out and (models / "README.md").read_text() == card and ".nan" not in card
    empty = tmp_path / "empty-map.csv"
    empty.write_text("")
    bom = tmp_path / "bom-map.csv"
    bom.write_bytes("\ufeffneutral,NEU\nhappy,HAP\nangry,ANG\n".encode("utf-8"))
    for name, spec in (("empty", empty), ("nothing-kept", "neutral=,happy=,angry="), ("unknown", "neutral=CALM,happy=JOY"),
                       ("reversed", "NEU=neutral,HAP=happy")):
        code, out, err = run(capsys, *args, "--out", tmp_path / name, "--label-map", spec)
        assert one_line(code, err) and ("empty" in err if name == "empty" else "nothing left to score" in err), (name, err)
        assert not (tmp_path / name).exists()
    code, out, err = run(capsys, *args, "--out", tmp_path / "bom", "--label-map", bom)
    assert code == 0, err
    assert json.loads((tmp_path / "bom" / "metrics.json").read_text())["label_map"]["map"] == {"neutral": "NEU", "happy": "HAP", "angry": "ANG"}
    assert (models / "README.md").read_text() == card
    code, out, err = run(capsys, *args, "--out", tmp_path / "by", "--by", "colour")
    assert one_line(code, err) and "colour" in err, err
