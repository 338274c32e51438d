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


# ---------------------------------------------------------------- 6, 7. manifests: Parquet nulls, working-table column names


def manifest_rows(folder_tree: Path) -> pd.DataFrame:
    from emolib.data.manifest import index_dataset

    table = index_dataset(folder_tree, layout="folders", speaker_pattern=r"^(\d+)_").manifest
    return pd.DataFrame({"audio": table["audio_path"], "video": table["video_path"], "label": table["emotion"], "speaker": table["actor"].astype(str)})


@pytest.fixture(scope="module")
def folder_tree(tmp_path_factory) -> Path:
    from emolib.data.synth.layouts import make_synthetic_folders

    return make_synthetic_folders(tmp_path_factory.mktemp("folders") / "mine", speakers=6, labels=["calm", "cheerful"], progress=False)


@pytest.mark.parametrize("case", ["null-speaker", "null-label", "null-stem", "emotion-column", "audio_path-column"])
def test_bad_manifest_cells_and_columns_are_one_line(folder_tree, tmp_path, capsys, case):
    rows = manifest_rows(folder_tree).astype(object)
    rows["stem"] = [f"clip{index}" for index in range(len(rows))]
    if case.startswith("null-"):
        rows.loc[3, case.removeprefix("null-")] = None
    else:
        rows[case.removesuffix("-column")] = "x"
    path = tmp_path / "m.parquet"
    rows.to_parquet(path)
    code, out, err = run(capsys, "train", "voice", "--data", path, "--backbone", "tiny", "--out", tmp_path / "models", "--device", "cpu")
    assert one_line(code, err) and str(path) in err, err
    assert ("row 5" in err) if case.startswith("null-") else (case.removesuffix("-column") in err)
    assert not (tmp_path / "models").exists()


def test_null_media_in_parquet_is_a_one_modality_clip(folder_tree, tmp_path):
    from emolib.data.manifest import load_manifest

    rows = manifest_rows(folder_tree).astype(object)
    rows["stem"] = [f"clip{index}" for index in range(len(rows))]
    rows.loc[0, "video"] = None
    rows.loc[1, "audio"] = None
    rows.to_parquet(tmp_path / "m.parquet")
    manifest = load_manifest(tmp_path / "m.parquet")
    first, second = (manifest.set_index("audio_path").loc[rows.loc[0, "audio"]], manifest.set_index("video_path").loc[rows.loc[1, "video"]])
    assert first["video_path"] == "" and second["audio_path"] == ""
    assert not manifest[["audio_path", "video_path"]].isin(["nan", "None"]).any().any()
    assert manifest["actor"].dtype == np.int64


# ---------------------------------------------------------------- 10. layouts that would silently change the data


def test_layouts_never_change_the_data_silently(folder_tree, trained_demo, tmp_path, capsys):
    import os
    import shutil

    from emolib.data.manifest import index_dataset

    code, out, err = run(capsys, "index", trained_demo / "cremad-synth", "--speaker-pattern", r"^(\d+)_", "--out", tmp_path / "m.csv")
    assert one_line(code, err) and "--layout" in err and not (tmp_path / "m.csv").exists(), err
    code, out, err = run(capsys, "index", folder_tree, "--layout", "folders", "--speaker-pattern", r"^\d+_", "--out", tmp_path / "m.csv")
    assert one_line(code, err) and "capturing group" in err, err
    tree = tmp_path / "tree"
    shutil.copytree(folder_tree, tree)
    before = index_dataset(tree, layout="folders", speaker_pattern=r"^(\d+)_").manifest
    os.symlink(tree / "calm", tree / "zz-linked")  # a second label folder that is the first one
    os.symlink(tree / "calm", tree / "calm" / "loop")  # a link loop
    wav = next((tree / "cheerful").glob("*.wav"))
    shutil.copy(wav, wav.with_suffix(".flac"))
    result = index_dataset(tree, layout="folders", speaker_pattern=r"^(\d+)_")
    assert len(result.manifest) == len(before) and "zz-linked" not in set(result.manifest["emotion"])
    kept = result.manifest.set_index("stem").loc[f"cheerful/{wav.stem}", "audio_path"]
    assert kept == str(wav.with_suffix(".flac")) and result.duplicates == [str(wav.relative_to(tree))]  # the first by name is kept
    assert sorted(result.manifest["stem"]) == sorted(before["stem"])


def test_one_speaker_split_and_untrained_label_are_warned_before_training(folder_tree, tmp_path, capsys):
    rows = manifest_rows(folder_tree)
    rows["stem"] = [f"clip{index}" for index in range(len(rows))]
    speakers = sorted(rows["speaker"].unique())
    rows["split"] = rows["speaker"].map({speakers[0]: "test", speakers[1]: "val"}).fillna("train")
    rows = rows[~((rows["split"] == "train") & (rows["label"] == "cheerful"))]
    rows.to_csv(tmp_path / "m.csv", index=False)
    code, out, err = run(capsys, "train", "voice", "--data", tmp_path / "m.csv", "--backbone", "tiny", "--freeze", "none", "--epochs", "1",
                         "--out", tmp_path / "models", "--cache", tmp_path / "cache", "--device", "cpu")
    assert code == 0, err
    assert "the test split has one speaker" in out and "the val split has one speaker" in out and len(speakers) == 6
    assert "label cheerful has no clip in the train split" in out


# ---------------------------------------------------------------- 11. smaller


def test_init_from_with_a_backbone_or_of_the_wrong_kind_is_one_line(trained_demo, tmp_path, capsys):
    args = ["train", "face", "--data", trained_demo / "cremad-synth", "--out", tmp_path / "models", "--device", "cpu", "--cache", trained_demo / "cache"]
    code, out, err = run(capsys, *args, "--init-from", trained_demo / "models" / "face", "--backbone", "tiny")
    assert one_line(code, err) and "--backbone" in err, err
    code, out, err = run(capsys, *args, "--init-from", trained_demo / "models" / "voice")
    assert one_line(code, err) and "a voice checkpoint" in err, err
    assert not (tmp_path / "models").exists()


def test_checkpoint_problems_are_named_for_what_they_are(tmp_path, capsys):
    import shutil

    from test_predict import make_untrained_models

    models = make_untrained_models(tmp_path / "models")
    wav = tmp_path / "speech.wav"
    from media import write_wav
    from test_predict import speechlike

    write_wav(wav, speechlike(2.0))
    weights = models / "voice" / "model.safetensors"
    whole = weights.read_bytes()
    weights.write_bytes(whole[: len(whole) // 2])
    code, out, err = run(capsys, "predict", "--models", models, "--audio", wav, "--no-fast")
    assert one_line(code, err) and "truncated" in err and str(weights) in err and "fusion" not in err.split(":", 2)[-1], err
    weights.unlink()
    code, out, err = run(capsys, "predict", "--models", models, "--audio", wav, "--no-fast")
    assert one_line(code, err) and "model.safetensors is missing" in err, err
    weights.write_bytes(whole)
    config = models / "voice" / "config.json"
    data = json.loads(config.read_text())
    config.write_text(json.dumps({**data, "format": 99}))
    code, out, err = run(capsys, "predict", "--models", models / "voice", "--audio", wav, "--no-fast")
    assert one_line(code, err) and "format 99" in err, err
    config.write_text(json.dumps(data))


def test_write_errors_name_the_users_file_not_the_temporary_one(tmp_path, monkeypatch):
    import errno
    import os

    from emolib import files

    def full_disk(source, target):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), source)

    monkeypatch.setattr(files.os, "replace", full_disk)
    with pytest.raises(OSError) as raised:
        files.atomic_write(tmp_path / "manifest.csv", "x")
    assert raised.value.filename == str(tmp_path / "manifest.csv") and raised.value.errno == errno.ENOSPC
    assert not list(tmp_path.iterdir())  # and no temporary file is left behind


def test_timeline_without_a_usable_window_fails_and_writes_nothing(tmp_path, capsys):
    import warnings

    from test_predict import make_untrained_models

    models = make_untrained_models(tmp_path / "models")
    from media import write_wav

    silent = write_wav(tmp_path / "silence.wav", np.zeros(16000 * 3, dtype=np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        code, out, err = run(capsys, "timeline", silent, "--models", models, "--out", tmp_path / "t", "--no-fast")
    err = err.strip().splitlines()[-1]  # after the progress bar
    assert one_line(code, err) and "no usable window" in err and not (tmp_path / "t").exists(), err


def test_a_replaced_fast_file_is_rebuilt_not_used(tmp_path):
    from emolib.infer.predictor import Predictor
    from test_predict import make_untrained_models

    models = make_untrained_models(tmp_path / "models")
    Predictor.from_dir(models)
    onnx_file = next((models / "face" / "fast").glob("*.onnx"))
    record = json.loads(onnx_file.with_suffix(".json").read_text())
    assert record["ok"] and len(record["onnx_sha256"]) == 64
    other = next((models / "voice" / "fast").glob("*.onnx")).read_bytes()  # a valid ONNX file, but not the checked one
    onnx_file.write_bytes(other)
    predictor = Predictor.from_dir(models)
    assert predictor.fast.face is not None and onnx_file.read_bytes() != other


# ---------------------------------------------------------------- the benchmark's default path on a fresh cache


def test_bench_default_path_on_a_fresh_cache(tmp_path):
    from emolib.bench.run import run_bench
    from emolib.models.checkpoint import find_models

    results = run_bench(out=tmp_path / "BENCH.md", work=tmp_path / "work", runs=1, clips=4, feature_clips=2, workers=1, progress=False, size="tiny")
    models = tmp_path / "work" / "full-size" / "tiny"
    assert set(find_models(models)) == {"voice", "face", "fusion"}  # its own fusion model is accepted (lineage recorded)
    assert results["live"]["fast"]["n"] == 1 and "| eager fp32" in (tmp_path / "BENCH.md").read_text()
