"""Bring your own corpus: RAVDESS and folder-per-label layouts, general manifests, label sets from the data and
the checkpoints, fine-tuning onto new labels, cross-corpus evaluation, model cards and models by name."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from emolib.cli.main import main
from emolib.errors import DataError, ModelError

RAVDESS_LABELS = ["neutral", "happy", "angry"]
FOLDER_LABELS = ["calm", "cheerful", "irritated"]
TRAIN = ["--backbone", "tiny", "--freeze", "none", "--device", "cpu"]
EPOCHS = {"voice": "10", "face": "10", "fusion": "30"}
RAVDESS_ACTORS = 12  # 8 to train on: enough for the tiny models to learn the synthetic cues


def run(capsys, *args) -> tuple[int, str, str]:
    code = main([str(arg) for arg in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def ravdess_tree(tmp_path_factory) -> Path:
    from emolib.data.synth.layouts import make_synthetic_ravdess

    return make_synthetic_ravdess(tmp_path_factory.mktemp("ravdess") / "RAVDESS", actors=RAVDESS_ACTORS, progress=False)


@pytest.fixture(scope="module")
def folder_tree(tmp_path_factory) -> Path:
    from emolib.data.synth.layouts import make_synthetic_folders

    return make_synthetic_folders(tmp_path_factory.mktemp("folders") / "mine", speakers=6, labels=FOLDER_LABELS, progress=False)


# ---------------------------------------------------------------- names, layouts, manifests


def test_ravdess_names():
    from emolib.ravdess import parse_ravdess_name, ravdess_file_name

    name = parse_ravdess_name("03-01-06-01-02-01-12.wav")
    assert (name.modality, name.channel, name.emotion, name.intensity, name.actor, name.sex) == (
        "audio-only", "speech", "fearful", "normal", 12, "Female")
    video = parse_ravdess_name("01-02-06-01-02-01-12")
    assert video.stem == name.stem.replace("01-06", "02-06", 1) and parse_ravdess_name("01-01-06-01-02-01-12").stem == name.stem
    assert ravdess_file_name(name, "audio-video", ".mp4") == "01-01-06-01-02-01-12.mp4"
    assert parse_ravdess_name("03-01-06-01-02-01-11").sex == "Male"
    for bad, reason in (("03-01-09-01-02-01-12", "emotion"), ("04-01-06-01-02-01-12", "modality"), ("03-01-06-01-02-01-25", "actor"),
                        ("1001_DFA_ANG_XX", "not a RAVDESS name")):
        with pytest.raises(DataError, match=reason):
            parse_ravdess_name(bad)


def test_index_ravdess_pairs_wavs_with_mp4s_speech_and_song(ravdess_tree):
    from emolib.data.manifest import index_dataset, label_set

    result = index_dataset(ravdess_tree)
    manifest = result.manifest
    assert result.roots["layout"] == "ravdess" and label_set(manifest) == tuple(RAVDESS_LABELS)  # RAVDESS's own order
    assert manifest["actor"].dtype == "int64" and sorted(manifest["actor"].unique()) == list(range(1, RAVDESS_ACTORS + 1))
    speech = manifest[manifest["channel"] == "speech"]
    song = manifest[manifest["channel"] == "song"]
    assert len(speech) == RAVDESS_ACTORS * 3 * 4 and len(song) == RAVDESS_ACTORS * 3
    assert speech["audio_path"].str.endswith(".wav").all() and speech["video_path"].str.endswith(".mp4").all()
    paired = speech.iloc[0]
    assert Path(paired["audio_path"]).name[3:-4] == Path(paired["video_path"]).name[3:-4] == paired["stem"]
    assert (song["audio_path"] == song["video_path"]).all()  # no WAV: the full-AV MP4 carries the sound
    assert (manifest["sex"] == np.where(manifest["actor"] % 2 == 1, "Male", "Female")).all()
    assert manifest.groupby("actor")["split"].nunique().max() == 1 and set(manifest["split"]) == {"train", "val", "test"}
    assert not result.foreign and not result.unpaired_audio
    from emolib.eval.explore import clip_lengths

    lengths = clip_lengths(song).set_index("stem")["seconds"]  # read from the MP4s' sound tracks
    assert lengths.between(2.0, 3.0).all()


def test_index_folders_takes_the_speaker_from_the_name(folder_tree, tmp_path, capsys):
    from emolib.data.manifest import index_dataset, label_set

    with pytest.raises(DataError, match="--speaker-pattern"):
        index_dataset(folder_tree, layout="folders")
    (folder_tree / "calm" / "notes.wav").write_bytes((folder_tree / "calm" / "01_0.wav").read_bytes())
    try:
        result = index_dataset(folder_tree, speaker_pattern=r"^(\d+)_")
    finally:
        (folder_tree / "calm" / "notes.wav").unlink()
    manifest = result.manifest
    assert result.roots["layout"] == "folders" and label_set(manifest) == tuple(FOLDER_LABELS)
    assert result.foreign == ["calm/notes.wav"]  # no speaker in its name: left out and listed
    assert manifest.loc[0, "stem"] == "calm/01_0" and manifest.loc[0, "actor"] == 1
    assert manifest["audio_path"].str.endswith(".wav").all() and manifest["video_path"].str.endswith(".mp4").all()
    named = index_dataset(folder_tree, speaker_pattern=r"^(?P<speaker>\d+)_(\d+)").manifest
    assert named["actor"].tolist() == manifest["actor"].tolist()
    code, _, err = run(capsys, "index", folder_tree, "--layout", "folders", "--speaker-pattern", "([", "--out", tmp_path / "m.csv")
    assert code == 2 and "not a regular expression" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_manifest_round_trip_in_the_general_format(ravdess_tree, tmp_path, capsys, suffix):
    from emolib.data.manifest import index_dataset, load_manifest

    path = tmp_path / f"manifest{suffix}"
    code, out, _ = run(capsys, "index", ravdess_tree, "--out", path)
    per_label = RAVDESS_ACTORS * 5
    assert code == 0 and "layout: ravdess" in out and f"labels: neutral {per_label}, happy {per_label}, angry {per_label}" in out
    table = pd.read_parquet(path) if suffix == ".parquet" else pd.read_csv(path, dtype=str, keep_default_na=False)
    assert list(table.columns[:6]) == ["stem", "speaker", "label", "audio", "video", "split"]
    assert {"channel", "intensity", "statement", "repetition", "sex"} <= set(table.columns) and set(table["label"]) == set(RAVDESS_LABELS)
    back = load_manifest(path)
    pd.testing.assert_frame_equal(back, index_dataset(ravdess_tree).manifest, check_dtype=False)


def test_a_hand_written_manifest_with_relative_paths_and_extra_columns(folder_tree, tmp_path):
    from emolib.data.manifest import load_manifest

    rows = [{"audio": f"clips/{speaker}_{index}.wav", "video": "" if index else f"clips/{speaker}_{index}.mp4", "label": label,
             "speaker": f"spk{speaker}", "room": "A" if speaker < 3 else "B"}
            for speaker in range(1, 5) for index, label in enumerate(["yes", "no"])]
    (tmp_path / "clips").mkdir()
    pd.DataFrame(rows).to_csv(tmp_path / "mine.csv", index=False)
    manifest = load_manifest(tmp_path / "mine.csv")
    assert manifest["audio_path"].iloc[0] == str(tmp_path / "clips" / "1_0.wav") and manifest["video_path"].iloc[1] == ""
    assert manifest["actor"].iloc[0] == "spk1" and (manifest["split"] == "").all() and "room" in manifest
    assert manifest.set_index("stem").loc["clips/1_1", "label"] == 0  # sorted label set: no, yes
    assert list(load_manifest(tmp_path / "mine.csv", labels="yes,no").sort_values("stem")["label"])[:2] == [0, 1]


@pytest.mark.parametrize("change, message", [
    (lambda t: t.drop(columns="speaker"), "missing columns speaker"),
    (lambda t: t.assign(audio="", video=""), "row 2: neither audio nor video"),
    (lambda t: t.assign(split=["train", "test"] * 4), "in more than one split"),
    (lambda t: t.assign(split="dev"), "unknown split 'dev'"),
    (lambda t: t.assign(stem="same"), "appears twice"),
    (lambda t: t.assign(label="only"), "at least 2 labels"),
])
def test_bad_manifests_are_one_line_naming_the_file(tmp_path, capsys, change, message):
    rows = [{"audio": f"{speaker}_{index}.wav", "video": "", "label": ["a", "b"][index], "speaker": speaker}
            for speaker in range(4) for index in range(2)]
    path = tmp_path / "bad.csv"
    change(pd.DataFrame(rows)).to_csv(path, index=False)
    code, _, err = run(capsys, "train", "voice", "--data", path, *TRAIN, "--out", tmp_path / "models")
    assert code == 2 and message in err and str(path) in err and len(err.strip().splitlines()) == 1


def test_label_sets_and_maps():
    from emolib.labels import check_labels, label_order, map_labels, parse_label_map

    assert label_order(["SAD", "ANG", "NEU"]) == ("ANG", "NEU", "SAD")
    assert label_order(["surprised", "calm", "neutral"]) == ("neutral", "calm", "surprised")
    assert label_order(["b", "c", "a"]) == ("a", "b", "c") and label_order(["b", "a"], "b,a") == ("b", "a")
    with pytest.raises(DataError, match="leaves out: c"):
        label_order(["a", "b", "c"], ["a", "b"])
    for bad in (["a", "a"], ["pred", "x"], [" a", "b"], ["a"]):
        with pytest.raises(DataError):
            check_labels(bad)
    mapping = parse_label_map("calm=NEU, surprised=")
    assert mapping == {"calm": "NEU", "surprised": ""}
    frame = pd.DataFrame({"stem": list("abcde"), "emotion": ["calm", "surprised", "angry", "NEU", "calm"]})
    kept, dropped = map_labels(frame, mapping, ("ANG", "NEU"))
    assert list(kept["emotion"]) == ["NEU", "NEU", "NEU"] and list(kept["label"]) == [1, 1, 1]
    assert dropped == {"angry": 1, "surprised": 1}
    with pytest.raises(DataError, match="malformed"):
        parse_label_map("calm=NEU\n=x")


# ---------------------------------------------------------------- end to end on the two layouts


def train_all(capsys, data, models, cache, *extra) -> None:
    for kind in ("voice", "face", "fusion"):
        args = ["train", kind, "--data", data, "--out", models, "--cache", cache, "--epochs", EPOCHS[kind], "--device", "cpu", *extra]
        if kind != "fusion":
            args += ["--backbone", "tiny", "--freeze", "none"]
        code, _, err = run(capsys, *args)
        assert code == 0, err


@pytest.fixture(scope="module")
def ravdess_models(ravdess_tree, tmp_path_factory):
    """Tiny voice, face and fusion models trained on the synthetic RAVDESS tree through the CLI."""
    root = tmp_path_factory.mktemp("ravdess-run")
    for kind in ("voice", "face", "fusion"):
        args = ["train", kind, "--data", str(ravdess_tree), "--out", str(root / "models"), "--cache", str(root / "cache"), "--epochs",
                EPOCHS[kind], "--device", "cpu"] + (["--backbone", "tiny", "--freeze", "none"] if kind != "fusion" else [])
        assert main(args) == 0
    return root


def test_ravdess_end_to_end_reports_its_own_labels(ravdess_tree, ravdess_models, capsys):
    root = ravdess_models
    for kind in ("voice", "face", "fusion"):
        config = json.loads((root / "models" / kind / "config.json").read_text())
        assert config["labels"] == RAVDESS_LABELS and config["model"]["num_labels"] == 3
        assert config["data"]["layout"] == "ravdess" and config["data"]["split_speakers"]["test"]
    code, out, err = run(capsys, "evaluate", "--data", ravdess_tree, "--models", root / "models", "--out", root / "reports", "--cache",
                         root / "cache", "--device", "cpu", "--by", "channel")
    assert code == 0, err
    report = json.loads((root / "reports" / "metrics.json").read_text())
    for kind, metrics in report["models"].items():
        assert metrics["labels"] == RAVDESS_LABELS and np.array(metrics["confusion"]).shape == (3, 3)
        assert set(metrics["recall"]) == set(RAVDESS_LABELS) and set(metrics["by"]["channel"]) == {"speech", "song"}
        assert np.array(metrics["confusion"]).sum() == metrics["n"] > 0
    assert report["models"]["fusion"]["uar"] > 0.5  # three labels, chance 1/3: the models learned the synthetic cues
    predictions = pd.read_csv(root / "reports" / "predictions.csv")
    assert {f"voice_{label}" for label in RAVDESS_LABELS} <= set(predictions.columns) and set(predictions["fusion_pred"]) <= set(RAVDESS_LABELS)
    assert (root / "reports" / "confusion_normalized.png").stat().st_size > 10_000
    card = (root / "models" / "README.md").read_text()
    front = card.split("---")[1]
    assert "library_name: emolib" in front and "labels:\n- neutral\n- happy\n- angry" in front and "split: test" in front
    assert f"value: {round(report['models']['fusion']['uar'], 4)}" in front
    assert "## Results on the test split" in card and f"test speakers ({len(report['actors'])})" in card
    video = sorted((ravdess_tree / f"Actor_{report['actors'][0]:02d}").glob("01-01-*.mp4"))[0]
    code, out, err = run(capsys, "predict", "--models", root / "models", "--video", video, "--json")
    assert code == 0, err
    prediction = json.loads(out)
    assert list(prediction["probabilities"]) == RAVDESS_LABELS and prediction["emotion"] in RAVDESS_LABELS
    assert prediction["emotion_name"] == prediction["emotion"]
    code, out, _ = run(capsys, "predict", "--models", root / "models", "--video", video)
    assert "neutral   happy   angry" in out


def test_folder_layout_end_to_end_through_a_parquet_manifest(folder_tree, tmp_path, capsys):
    manifest = tmp_path / "mine.parquet"
    code, _, err = run(capsys, "index", folder_tree, "--speaker-pattern", r"^(\d+)_", "--out", manifest)
    assert code == 0, err
    train_all(capsys, manifest, tmp_path / "models", tmp_path / "cache", "--label-order", "irritated,calm,cheerful")
    config = json.loads((tmp_path / "models" / "fusion" / "config.json").read_text())
    assert config["labels"] == ["irritated", "calm", "cheerful"] and config["data"]["layout"] == "manifest"
    code, out, err = run(capsys, "evaluate", "--data", manifest, "--models", tmp_path / "models", "--out", tmp_path / "reports",
                         "--cache", tmp_path / "cache", "--device", "cpu")
    assert code == 0, err
    report = json.loads((tmp_path / "reports" / "metrics.json").read_text())
    assert report["models"]["voice"]["labels"] == ["irritated", "calm", "cheerful"] and report["models"]["fusion"]["n"] == 12
    from emolib.eval.plots import plot_confusions

    figure = plot_confusions(report)
    assert [tick.get_text() for tick in figure.axes[0].get_xticklabels()] == ["irritated", "calm", "cheerful"]
    from emolib.infer.predictor import Predictor
    from emolib.infer.timeline import predict_timeline

    code, out, err = run(capsys, "predict", "--models", tmp_path / "models", "--audio", folder_tree / "calm" / "01_0.wav", "--json")
    assert code == 0, err
    assert list(json.loads(out)["probabilities"]) == ["irritated", "calm", "cheerful"] and json.loads(out)["source"] == "voice"
    predictor = Predictor.from_pretrained(str(tmp_path / "models"))
    assert predictor.labels == ("irritated", "calm", "cheerful")
    table = predict_timeline(predictor, folder_tree / "calm" / "01_0.mp4", audio=folder_tree / "calm" / "01_0.wav", hop=1.0, progress=False)
    assert {"prob_irritated", "prob_calm", "prob_cheerful"} <= set(table.columns) and set(table["label"]) <= set(FOLDER_LABELS)


# ---------------------------------------------------------------- moving between corpora


def test_init_from_keeps_the_encoder_and_makes_a_new_head(trained_demo, tmp_path):
    import torch

    from emolib.models.checkpoint import init_from, load_model

    source = load_model(trained_demo / "models" / "voice")
    model = init_from(trained_demo / "models" / "voice", "voice", FOLDER_LABELS)
    assert model.head.out_features == 3 and source.head.out_features == 6
    for name, value in source.encoder.state_dict().items():
        assert torch.equal(model.encoder.state_dict()[name], value), name
    with pytest.raises(ModelError, match="a voice checkpoint; --init-from for face"):
        init_from(trained_demo / "models" / "voice", "face", FOLDER_LABELS)


def test_fine_tune_a_cremad_model_onto_three_labels(trained_demo, folder_tree, tmp_path, capsys):
    from emolib.files import file_digest

    code, out, err = run(capsys, "train", "voice", "--data", folder_tree, "--speaker-pattern", r"^(\d+)_", "--init-from",
                         trained_demo / "models" / "voice", "--freeze", "none", "--epochs", "2", "--out", tmp_path / "models",
                         "--cache", tmp_path / "cache", "--device", "cpu")
    assert code == 0, err
    config = json.loads((tmp_path / "models" / "voice" / "config.json").read_text())
    source = json.loads((trained_demo / "models" / "voice" / "config.json").read_text())
    assert config["labels"] == FOLDER_LABELS and config["model"]["num_labels"] == 3
    assert config["model"]["encoder_config"] == source["model"]["encoder_config"] and config["preprocessing"] == source["preprocessing"]
    assert config["init_sha256"] == file_digest(trained_demo / "models" / "voice" / "model.safetensors")
    assert "fine-tuned from" in (tmp_path / "models" / "README.md").read_text() and config["init_from"] in (tmp_path / "models" / "README.md").read_text()
    code, _, err = run(capsys, "train", "fusion", "--data", folder_tree, "--speaker-pattern", r"^(\d+)_", "--init-from",
                       trained_demo / "models", "--out", tmp_path / "models", "--device", "cpu")
    assert code == 2 and "voice and face" in err


def test_cross_corpus_evaluation_with_a_label_map(trained_demo, ravdess_tree, tmp_path, capsys):
    from emolib.data.manifest import index_dataset

    test = index_dataset(ravdess_tree).manifest.query("split == 'test'")
    per_label = len(test) // 3
    args = ["evaluate", "--data", ravdess_tree, "--models", trained_demo / "models", "--cache", tmp_path / "cache", "--device", "cpu"]
    code, out, err = run(capsys, *args, "--out", tmp_path / "mapped", "--label-map", "neutral=NEU,happy=HAP,angry=")
    assert code == 0, err
    report = json.loads((tmp_path / "mapped" / "metrics.json").read_text())
    assert report["label_map"] == {"map": {"neutral": "NEU", "happy": "HAP", "angry": ""}, "dropped": {"angry": per_label}}
    assert f"dropped by the label map: {{'angry': {per_label}}}" in out
    voice = report["models"]["voice"]
    assert voice["labels"] == ["ANG", "DIS", "FEA", "HAP", "NEU", "SAD"] and voice["n"] == 2 * per_label and voice["outside_label_set"] == {}
    assert voice["recall"]["NEU"] is not None and voice["recall"]["ANG"] is None
    card = (trained_demo / "models" / "README.md").read_text()
    assert "RAVDESS" not in card  # a cross-corpus run does not rewrite the models' card
    code, out, err = run(capsys, *args, "--out", tmp_path / "unmapped")
    assert code == 0, err
    unmapped = json.loads((tmp_path / "unmapped" / "metrics.json").read_text())
    assert unmapped["models"]["voice"]["n"] == 0
    assert unmapped["models"]["voice"]["outside_label_set"] == {"angry": per_label, "happy": per_label, "neutral": per_label}
    assert "not scored, labels outside its label set" in out


# ---------------------------------------------------------------- sharing models


def test_models_by_hub_name_from_the_local_cache_and_offline(trained_demo, tmp_path, monkeypatch, capsys):
    from emolib.infer.predictor import Predictor

    cache = tmp_path / "hub"
    snapshot = cache / "models--someone--emotions" / "snapshots" / ("0" * 40)
    for kind in ("voice", "face", "fusion"):
        shutil.copytree(trained_demo / "models" / kind, snapshot / kind, ignore=shutil.ignore_patterns("resume*", "fast", "*.json.tmp"))
    (cache / "models--someone--emotions" / "refs").mkdir()
    (cache / "models--someone--emotions" / "refs" / "main").write_text("0" * 40)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    predictor = Predictor.from_pretrained("someone/emotions", fast=False)
    assert predictor.kinds == ["voice", "face", "fusion"] and Path(predictor.models_dir).is_relative_to(cache)
    single = cache / "models--someone--voice" / "snapshots" / ("1" * 40)  # a repository holding one checkpoint
    shutil.copytree(trained_demo / "models" / "voice", single, ignore=shutil.ignore_patterns("resume*", "fast", "*.json.tmp"))
    (cache / "models--someone--voice" / "refs").mkdir()
    (cache / "models--someone--voice" / "refs" / "main").write_text("1" * 40)
    assert Predictor.from_pretrained("someone/voice", fast=False).kinds == ["voice"]
    with pytest.raises(ModelError, match="huggingface-cli download someone/absent --local-dir DIR"):
        Predictor.from_pretrained("someone/absent")
    wav = sorted((trained_demo / "cremad-synth" / "AudioWAV").glob("*.wav"))[0]
    code, _, err = run(capsys, "predict", "--models", "someone/absent", "--audio", wav)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "pass the folder DIR instead" in err
    code, _, err = run(capsys, "predict", "--models", tmp_path / "no-such-folder", "--audio", wav)
    assert code == 2 and "no such models folder" in err


def test_the_card_never_replaces_a_readme_of_the_users(trained_demo, tmp_path):
    from emolib.eval.card import write_model_card

    models = tmp_path / "models"
    shutil.copytree(trained_demo / "models" / "voice", models / "voice", ignore=shutil.ignore_patterns("resume*", "fast"))
    assert write_model_card(tmp_path / "empty") is None
    (models / "README.md").write_text("my notes\n")
    with pytest.warns(UserWarning, match="not an emolib model card"):
        spare = write_model_card(models)
    assert spare.name == "MODEL_CARD.md" and (models / "README.md").read_text() == "my notes\n"
    (models / "README.md").unlink()
    assert write_model_card(models).name == "README.md" and write_model_card(models).name == "README.md"  # its own card is rewritten


def test_the_widget_shows_a_custom_label_set(tmp_path):
    from emolib.infer.predictor import Predictor
    from emolib.live.widget import LiveDemo

    from media import face_image
    from test_capture import jpeg
    from test_predict import make_untrained_models, speechlike

    models = make_untrained_models(tmp_path / "models", labels=FOLDER_LABELS)
    demo = LiveDemo(Predictor.from_dir(models, fast=False), "browser")
    assert demo.labels == FOLDER_LABELS
    with demo.hold_trait_notifications():
        demo.audio = speechlike(4.0, 16000).astype("<f4").tobytes()
        demo.sample_rate = 16000
        demo.frame = jpeg(face_image())
        demo.captures += 1
    assert demo.status == "done", demo.error
    assert list(demo.result["probabilities"]) == FOLDER_LABELS and demo.result["emotion"] in FOLDER_LABELS
    assert demo.result_text.split(" ")[0] in FOLDER_LABELS and demo.message == f"done: {demo.result['emotion']}"


def test_the_notebooks_serve_a_ravdess_corpus(ravdess_tree, ravdess_models, tmp_path):
    """Notebook 01 indexes the RAVDESS tree and notebook 05 evaluates the models trained on it: their own labels throughout."""
    import nbformat
    from nbclient import NotebookClient

    from test_browser import set_parameters

    repo = Path(__file__).resolve().parents[1]
    for name in ("01_data_exploration.ipynb", "05_evaluation.ipynb"):
        set_parameters(repo / "notebooks" / name, tmp_path / name, data=str(ravdess_tree), out=str(ravdess_models), device="cpu")
        notebook = nbformat.read(tmp_path / name, as_version=4)
        NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
        outputs = "\n".join(output.get("text", "") + str(output.get("data", {}).get("text/plain", ""))
                            for cell in notebook.cells if cell.cell_type == "code" for output in cell.get("outputs", []))
        assert "Traceback" not in outputs
        if name.startswith("01"):
            assert "layout: ravdess" in outputs and "labels: neutral" in outputs
    manifest = pd.read_csv(ravdess_models / "manifest.csv")
    assert set(manifest["label"]) == set(RAVDESS_LABELS) and "channel" in manifest
    report = json.loads((ravdess_models / "reports" / "metrics.json").read_text())
    assert all(metrics["labels"] == RAVDESS_LABELS for metrics in report["models"].values())
    assert "## Results on the test split" in (ravdess_models / "models" / "README.md").read_text()


def test_models_with_different_label_sets_are_not_combined(tmp_path):
    from emolib.infer.predictor import Predictor

    from test_predict import make_untrained_models

    mixed = tmp_path / "mixed"
    shutil.copytree(make_untrained_models(tmp_path / "a", labels=FOLDER_LABELS) / "voice", mixed / "voice")
    shutil.copytree(make_untrained_models(tmp_path / "b", labels=RAVDESS_LABELS) / "face", mixed / "face")
    with pytest.raises(ModelError, match="the face model's labels .* differ from the voice model's"):
        Predictor.from_dir(mixed, fast=False)
    assert Predictor.from_dir(mixed / "voice", fast=False).labels == tuple(FOLDER_LABELS)


def test_synth_command_layouts_and_labels(tmp_path, capsys):
    code, _, err = run(capsys, "synth", tmp_path / "c", "--labels", "a,b")
    assert code == 2 and "always has its six emotions" in err
    code, _, err = run(capsys, "synth", tmp_path / "r", "--layout", "ravdess", "--labels", "happy,bored", "--actors", "2")
    assert code == 2 and "'bored' is not a RAVDESS emotion" in err
    code, out, err = run(capsys, "synth", tmp_path / "f", "--layout", "folders", "--labels", "yes,no", "--actors", "2")
    assert code == 0, err
    assert sorted(path.name for path in (tmp_path / "f").iterdir()) == ["README.txt", "no", "yes"]
    assert len(list((tmp_path / "f" / "yes").glob("*.wav"))) == 2 * 4


def test_perceived_labels_are_refused_outside_cremad(folder_tree, tmp_path, capsys):
    code, _, err = run(capsys, "train", "voice", "--data", folder_tree, "--speaker-pattern", r"^(\d+)_", "--labels", "perceived",
                       *TRAIN, "--out", tmp_path / "models")
    assert code == 2 and "rater votes exist for CREMA-D clips only" in err
