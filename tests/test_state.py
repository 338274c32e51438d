"""State you can trust: content-keyed caches, run identity on resume, folder locks, fusion lineage,
NaN training, atomic resume files, file modes, and one clean line for every bad argument."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from emolib.cli.main import main
from emolib.data.face_cache import face_index, load_face_crops
from emolib.data.features import cached_features
from emolib.data.datasets import VoiceDataset
from emolib.errors import ModelError
from emolib.infer.predictor import Predictor
from emolib.locks import LOCK_FILE, FolderBusyError, folder_lock
from emolib.models.checkpoint import load_model, save_checkpoint
from emolib.models.nets import FusionConfig, FusionModel
from emolib.train.resume import RESUME_FILE, RunMismatchError
from emolib.train.trainer import Trainer, TrainConfig, TrainingError
from emolib.transforms import FaceSettings

from media import face_frames, write_wav
from test_predict import make_untrained_models, speechlike
from test_training import clusters, fusion_trainer

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- 1. caches keyed by the files, not the clip names


@pytest.fixture(scope="module")
def demo_and_real(tmp_path_factory):
    """Two CREMA-D trees with the same clip names and different media (the demo, then 'real' data)."""
    from emolib.data.synth.corpus import make_synthetic_cremad
    from emolib.train.options import DataOptions, load_manifest_for

    root = tmp_path_factory.mktemp("trees")
    trees = [make_synthetic_cremad(root / name, actors=3, clips_per_emotion=1, seed=seed, workers=0, progress=False)
             for name, seed in (("demo", 0), ("real", 1))]
    for folder in ("AudioWAV", "VideoFlash"):  # the other media under the demo's clip names
        names = [sorted((tree / folder).iterdir()) for tree in trees]
        moves = [(real, real.with_name(demo.name)) for demo, real in zip(*names)]
        for real, target in moves:
            real.rename(real.with_name("tmp-" + target.name))
        for real, target in moves:
            real.with_name("tmp-" + target.name).rename(target)
    return [load_manifest_for(DataOptions(str(tree)), quiet=True) for tree in trees]


def test_demo_then_real_data_never_reuses_the_demo_cache(demo_and_real, tmp_path):
    demo, real = demo_and_real
    assert list(demo["stem"]) == list(real["stem"])
    cache = tmp_path / "cache"
    demo_faces = face_index(demo, cache, FaceSettings(), workers=0, progress=False).set_index("stem")
    real_faces = face_index(real, cache, FaceSettings(), workers=0, progress=False).set_index("stem")
    stem = demo["stem"].iloc[0]
    assert demo_faces.at[stem, "face_path"] != real_faces.at[stem, "face_path"]
    assert not np.array_equal(load_face_crops(demo_faces.at[stem, "face_path"]), load_face_crops(real_faces.at[stem, "face_path"]))

    models = make_untrained_models(tmp_path / "models")
    voice = load_model(models / "voice")
    demo_features, _ = cached_features(voice, VoiceDataset(demo), "voice", cache, progress=False)
    real_features, _ = cached_features(voice, VoiceDataset(real), "voice", cache, progress=False)
    assert not torch.allclose(demo_features, real_features)


def test_a_replaced_wav_is_recomputed(demo_and_real, tmp_path):
    import shutil

    tree = tmp_path / "tree"
    shutil.copytree(Path(demo_and_real[0]["audio_path"].iloc[0]).parent, tree)
    rows = demo_and_real[0].assign(audio_path=[str(tree / Path(path).name) for path in demo_and_real[0]["audio_path"]]).head(4)
    voice = load_model(make_untrained_models(tmp_path / "models") / "voice")
    before, _ = cached_features(voice, VoiceDataset(rows), "voice", tmp_path / "cache", progress=False)
    noise = np.random.default_rng(0).normal(scale=0.3, size=32000).astype(np.float32)
    write_wav(rows["audio_path"].iloc[0], noise)
    after, _ = cached_features(voice, VoiceDataset(rows), "voice", tmp_path / "cache", progress=False)
    assert not torch.allclose(before[0], after[0]) and torch.allclose(before[1:], after[1:])


# ---------------------------------------------------------------- 2. resume only into the same run


def test_resume_refuses_another_run_and_names_the_difference(tmp_path):
    saved = []
    fusion_trainer(tmp_path, epochs=2, saved=saved).fit()
    other = fusion_trainer(tmp_path, epochs=2, saved=[])
    other.fingerprint["data"] = "another data set"
    with pytest.raises(RunMismatchError, match=r"different data .*--restart") as caught:
        other.fit()
    assert "\n" not in str(caught.value)
    lr = fusion_trainer(tmp_path, epochs=2, saved=[])
    lr.config.lr = 1e-2
    lr.fingerprint["training"] = lr.config.identity()
    with pytest.raises(RunMismatchError, match=r"training\.lr"):
        lr.fit()
    same = fusion_trainer(tmp_path, epochs=2, saved=[])
    assert len(same.fit()) == 2  # the same run: finished, nothing retrained


def test_train_into_a_folder_of_another_data_set_is_one_line(demo_and_real, tmp_path, capsys):
    roots = [Path(manifest["audio_path"].iloc[0]).parents[1] for manifest in demo_and_real]
    base = ["train", "face", "--backbone", "tiny", "--epochs", "1", "--out", str(tmp_path / "models"), "--cache", str(tmp_path / "cache"),
            "--workers", "0", "--device", "cpu"]
    assert main(base + ["--data", str(roots[0])]) == 0
    capsys.readouterr()
    assert main(base + ["--data", str(roots[1])]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("emolib")]
    assert len(errors) == 1 and "different data" in errors[0] and "--restart" in errors[0]
    assert main(base + ["--data", str(roots[1]), "--restart"]) == 0


# ---------------------------------------------------------------- 3. one run per folder


def test_a_second_run_into_a_locked_folder_says_who_holds_it(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from emolib.locks import folder_lock
        with folder_lock({str(tmp_path)!r}, "training the voice model"):
            print("locked", flush=True)
            time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(FolderBusyError, match=f"in use by process {holder.pid}.*training the voice model"):
            with folder_lock(tmp_path):
                pass
    finally:
        holder.kill()
        holder.wait()
    with folder_lock(tmp_path) as lock:  # the killed holder's lock is stale: taken over
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert not (tmp_path / LOCK_FILE).exists()


# ---------------------------------------------------------------- 4. a fusion model belongs to its encoders


def test_retrained_voice_beside_old_fusion_is_refused(tmp_path, capsys):
    models = make_untrained_models(tmp_path / "models")
    assert Predictor.from_dir(models, fast=False).notes == []
    config = json.loads((models / "fusion" / "config.json").read_text())
    (models / "fusion" / "config.json").write_text(json.dumps({key: value for key, value in config.items() if not key.endswith("_sha256")}))
    with pytest.raises(ModelError, match="does not record which voice checkpoint"):  # as an older emolib made them
        Predictor.from_dir(models, fast=False)
    record_lineage(models)
    torch.manual_seed(1)
    retrained = load_model(models / "voice")
    with torch.no_grad():
        retrained.head.weight.normal_()
    save_checkpoint(retrained, "voice", models / "voice", retrained.checkpoint["preprocessing"])
    with pytest.raises(ModelError, match="not trained on the voice checkpoint"):
        Predictor.from_dir(models, fast=False)
    wav = write_wav(tmp_path / "speech.wav", speechlike(2.0))
    assert main(["predict", "--models", str(models), "--audio", str(wav), "--no-fast"]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0
    allowed = Predictor.from_dir(models, fast=False, allow_mismatched_fusion=True)
    prediction = allowed.predict(speechlike(2.0), 16000, face_frames(1)[0])
    assert any("not trained on the voice checkpoint" in note for note in prediction.notes)


def record_lineage(models: Path) -> None:
    from emolib.files import file_digest

    config = json.loads((models / "fusion" / "config.json").read_text())
    config.update({f"{kind}_sha256": file_digest(models / kind / "model.safetensors") for kind in ("voice", "face")})
    (models / "fusion" / "config.json").write_text(json.dumps(config))


def test_trained_fusion_records_its_encoders(trained_demo):
    from emolib.files import file_digest

    config = json.loads((trained_demo / "models" / "fusion" / "config.json").read_text())
    for kind in ("voice", "face"):
        assert config[f"{kind}_sha256"] == file_digest(trained_demo / "models" / kind / "model.safetensors")


# ---------------------------------------------------------------- 5. NaN training, strict JSON


def test_nan_loss_stops_training_and_saves_nothing(tmp_path):
    data = clusters()
    data.tensors["voice"][5, 0] = float("nan")
    saved = []
    trainer = Trainer(FusionModel(FusionConfig(8, 4, 32)), data, clusters(n_per_class=5), TrainConfig(epochs=2, batch_size=16, device="cpu"),
                      tmp_path, lambda model, metrics: saved.append(metrics), progress=False)
    with pytest.raises(TrainingError, match="loss became nan at epoch 1") as caught:
        trainer.fit()
    assert "\n" not in str(caught.value) and saved == [] and not (tmp_path / RESUME_FILE).exists()


def test_nan_checkpoint_gives_one_line_not_nan_json(tmp_path, capsys):
    models = make_untrained_models(tmp_path / "models")
    voice = load_model(models / "voice")
    with torch.no_grad():
        voice.head.bias.fill_(float("nan"))
    save_checkpoint(voice, "voice", tmp_path / "nan" / "voice", voice.checkpoint["preprocessing"])
    wav = write_wav(tmp_path / "speech.wav", speechlike(2.0))
    assert main(["predict", "--models", str(tmp_path / "nan"), "--audio", str(wav), "--json", "--no-fast"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "non-finite" in captured.err and captured.err.strip().count("\n") == 0


def test_prediction_json_is_strict():
    from emolib.infer.prediction import Prediction

    prediction = Prediction("ANG", {"ANG": 1.0}, "voice", ["voice"], audio_rms=float("nan"), audio_seconds=float("inf"))
    data = json.loads(prediction.to_json())
    assert data["audio_rms"] is None and data["audio_seconds"] is None


# ---------------------------------------------------------------- losing less, leaking nothing


def test_resume_state_is_one_safetensors_file_without_pickles(tmp_path):
    from safetensors import safe_open

    fusion_trainer(tmp_path, epochs=1, saved=[]).fit()
    with safe_open(str(tmp_path / RESUME_FILE), framework="pt") as file:
        names, metadata = list(file.keys()), file.metadata()
    assert any(name.startswith("model.") for name in names) and any(name.startswith("optimizer.") for name in names)
    assert {"trainer", "param_groups", "fingerprint"} <= set(metadata)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["history.json", RESUME_FILE]


def test_stray_temporaries_are_removed_and_restart_clears_the_folder(tmp_path):
    from emolib.train.fit import clear_run, fit

    out = tmp_path / "fusion"
    out.mkdir()
    (out / ".model.safetensors.abc123.tmp").write_bytes(b"half")
    (out / "config.json").write_text("{}")
    (out / "model.safetensors").write_bytes(b"old")
    model = FusionModel(FusionConfig(8, 4, 32))
    fit(model, "fusion", lambda split, augment: clusters(n_per_class=5), TrainConfig(epochs=1, batch_size=16, device="cpu"), out, {},
        progress=False, data="x", restart=True)
    assert not list(out.glob("*.tmp")) and load_model(out).config == model.config
    clear_run(out)
    assert sorted(path.name for path in out.iterdir()) == []


def test_written_files_are_readable_by_others(trained_demo, tmp_path):
    previous = os.umask(0o022)
    try:
        make_untrained_models(tmp_path / "models")
        from emolib.data.manifest import load_manifest, write_manifest
        write_manifest(load_manifest(trained_demo / "manifest.csv"), tmp_path / "manifest.csv")
        fusion_trainer(tmp_path / "run", epochs=1, saved=[]).fit()
        face_index(load_manifest(trained_demo / "manifest.csv").head(2), tmp_path / "cache", workers=0, progress=False)
    finally:
        os.umask(previous)
    files = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert len(files) >= 10
    assert {oct(path.stat().st_mode & 0o777) for path in files} == {"0o644"}


# ---------------------------------------------------------------- one clean line for every bad argument or file


def broken_checkpoints(root: Path) -> dict:
    """Checkpoint folders that are wrong in one way each."""
    models = make_untrained_models(root / "good")
    cases = {}

    def variant(name, change):
        import shutil

        folder = root / name / "voice"
        shutil.copytree(models / "voice", folder)
        config = json.loads((folder / "config.json").read_text())
        change(config)
        (folder / "config.json").write_text(json.dumps(config))
        cases[name] = folder.parent

    variant("labels", lambda config: config["model"].update(num_labels=7))
    variant("hidden", lambda config: config["model"]["encoder_config"].update(hidden_size=32))
    variant("extra-key", lambda config: config["model"].update(colour="blue"))
    variant("missing-key", lambda config: config.pop("model"))
    variant("no-preprocessing", lambda config: config.pop("preprocessing"))
    variant("window", lambda config: config["preprocessing"]["audio"].update(window_seconds=0))
    variant("format", lambda config: config.update(format=99))
    variant("truncated", lambda config: None)
    weights = cases["truncated"] / "voice" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:4096])
    face = root / "frames" / "face"
    import shutil

    shutil.copytree(models / "face", face)
    config = json.loads((face / "config.json").read_text())
    config["preprocessing"]["face"]["frames"] = 0
    (face / "config.json").write_text(json.dumps(config))
    cases["frames"] = face.parent
    return cases


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    wav = write_wav(root / "speech.wav", speechlike(2.0))
    folder = root / "a-folder"
    folder.mkdir()
    corrupt = root / "1001_DFA_ANG_XX.flv"
    corrupt.write_bytes(b"FLV\x01" + bytes(range(256)) * 8)
    (root / "data" / "AudioWAV").mkdir(parents=True)
    for actor in (1001, 1002, 1003):
        write_wav(root / "data" / "AudioWAV" / f"{actor}_DFA_ANG_XX.wav", speechlike(1.0))
    locked = root / "locked"
    locked.mkdir()
    (root / "empty.csv").write_text("")
    return {"root": root, "wav": wav, "folder": folder, "corrupt": corrupt, "data": root / "data", "locked": locked, "empty": root / "empty.csv",
            "models": make_untrained_models(root / "models"), "broken": broken_checkpoints(root / "broken")}


BAD_ARGUMENTS = [
    ("synth", lambda b: ["synth", str(b["root"] / "s"), "--actors", "0"]),
    ("synth-seed", lambda b: ["synth", str(b["root"] / "s"), "--seed", "-1"]),
    ("index-out-folder", lambda b: ["index", str(b["data"]), "--out", str(b["folder"])]),
    ("index-missing", lambda b: ["index", str(b["root"] / "nowhere")]),
    ("train-batch", lambda b: ["train", "voice", "--data", str(b["data"]), "--batch-size", "0"]),
    ("train-lr-zero", lambda b: ["train", "voice", "--data", str(b["data"]), "--lr", "0"]),
    ("train-lr-nan", lambda b: ["train", "voice", "--data", str(b["data"]), "--lr", "nan"]),
    ("train-epochs", lambda b: ["train", "voice", "--data", str(b["data"]), "--epochs", "0"]),
    ("train-device", lambda b: ["train", "voice", "--data", str(b["data"]), "--backbone", "tiny", "--device", "cuda", "--out", str(b["root"] / "m")]),
    ("train-kind", lambda b: ["train", "ears", "--data", str(b["data"])]),
    ("evaluate-folds", lambda b: ["evaluate", "--data", str(b["data"]), "--folds", "-2"]),
    ("evaluate-models", lambda b: ["evaluate", "--data", str(b["data"]), "--models", str(b["root"] / "nowhere")]),
    ("demo-epochs", lambda b: ["demo", "--epochs", "0"]),
    ("predict-nothing", lambda b: ["predict", "--models", str(b["models"])]),
    ("predict-device", lambda b: ["predict", "--models", str(b["models"]), "--audio", str(b["wav"]), "--device", "cuda"]),
    ("predict-folder-audio", lambda b: ["predict", "--models", str(b["models"]), "--audio", str(b["folder"])]),
    ("predict-corrupt-video", lambda b: ["predict", "--models", str(b["models"]), "--video", str(b["corrupt"]), "--no-fast"]),
    ("timeline-dir", lambda b: ["timeline", str(b["folder"]), "--models", str(b["models"]), "--out", str(b["root"] / "t1")]),
    ("timeline-hop", lambda b: ["timeline", str(b["corrupt"]), "--models", str(b["models"]), "--hop", "0"]),
    ("live-seconds", lambda b: ["live", "--models", str(b["models"]), "--seconds", "-1"]),
    ("bench-runs", lambda b: ["bench", "--runs", "0"]),
    ("index-pattern-without-group", lambda b: ["index", str(b["data"]), "--layout", "folders", "--speaker-pattern", r"^\d+"]),
    ("index-pattern-on-cremad-names", lambda b: ["index", str(b["data"]), "--speaker-pattern", r"^(\d+)_", "--out", str(b["root"] / "m.csv")]),
    ("evaluate-empty-label-map", lambda b: ["evaluate", "--data", str(b["data"]), "--models", str(b["models"]), "--label-map", str(b["empty"])]),
    ("train-init-from-and-backbone", lambda b: ["train", "voice", "--data", str(b["data"]), "--init-from", str(b["models"] / "voice"),
                                                "--backbone", "tiny", "--out", str(b["root"] / "m1")]),
    ("train-init-from-other-kind", lambda b: ["train", "face", "--data", str(b["data"]), "--init-from", str(b["models"] / "voice"),
                                              "--out", str(b["root"] / "m2")]),
    ("annotate-empty-list", lambda b: ["annotate", str(b["empty"]), "--models", str(b["models"]), "--out", str(b["root"] / "a")]),
    ("train-init-from-and-recipe", lambda b: ["train", "voice", "--data", str(b["data"]), "--init-from", str(b["models"] / "voice"),
                                              "--recipe", "best", "--out", str(b["root"] / "m3")]),
    ("train-attentive-on-cached-features", lambda b: ["train", "voice", "--data", str(b["data"]), "--backbone", "tiny", "--freeze", "all",
                                                      "--pooling", "attentive-stats", "--out", str(b["root"] / "m4")]),
    ("train-zero-frames", lambda b: ["train", "face", "--data", str(b["data"]), "--frames", "0", "--out", str(b["root"] / "m5")]),
    ("evaluate-other-recipe", lambda b: ["evaluate", "--data", str(b["data"]), "--models", str(b["models"]), "--recipe", "best"]),
    # options a command would ignore, or cannot honour: refused in one line naming them
    ("evaluate-other-frames", lambda b: ["evaluate", "--data", str(b["data"]), "--models", str(b["models"]), "--frames", "16"]),
    ("evaluate-other-pooling", lambda b: ["evaluate", "--data", str(b["data"]), "--models", str(b["models"]), "--pooling", "stats"]),
    ("evaluate-other-temporal", lambda b: ["evaluate", "--data", str(b["data"]), "--models", str(b["models"]), "--temporal", "attention"]),
    ("evaluate-other-speech-only", lambda b: ["evaluate", "--data", str(b["data"]), "--models", str(b["models"]), "--speech-only"]),
    ("evaluate-training-option", lambda b: ["evaluate", "--data", str(b["data"]), "--models", str(b["models"]), "--epochs", "3"]),
    ("evaluate-option-of-a-missing-model", lambda b: ["evaluate", "--data", str(b["data"]), "--models", str(b["models"] / "voice"),
                                                      "--frames", "3"]),
    ("train-finetune-freeze-all", lambda b: ["train", "fusion", "--data", str(b["data"]), "--finetune", "--freeze", "all", "--out", str(b["models"])]),
    ("train-face-layers", lambda b: ["train", "face", "--data", str(b["data"]), "--layers", "weighted", "--out", str(b["root"] / "m6")]),
    ("train-face-speech-only", lambda b: ["train", "face", "--data", str(b["data"]), "--speech-only", "--out", str(b["root"] / "m6")]),
    ("train-voice-temporal", lambda b: ["train", "voice", "--data", str(b["data"]), "--temporal", "attention", "--out", str(b["root"] / "m6")]),
    ("train-voice-balance", lambda b: ["train", "voice", "--data", str(b["data"]), "--balance", "ogm-ge", "--out", str(b["root"] / "m6")]),
    ("train-fusion-frames", lambda b: ["train", "fusion", "--data", str(b["data"]), "--frames", "16", "--out", str(b["models"])]),
    ("train-voice-lr-without-finetune", lambda b: ["train", "fusion", "--data", str(b["data"]), "--voice-lr", "1e-4", "--out", str(b["models"])]),
    ("train-transformer-one-frame", lambda b: ["train", "face", "--data", str(b["data"]), "--temporal", "transformer", "--frames", "1",
                                               "--out", str(b["root"] / "m6")]),
    ("train-best-one-frame", lambda b: ["train", "face", "--data", str(b["data"]), "--recipe", "best", "--frames", "1", "--out", str(b["root"] / "m6")]),
    ("train-frames-10000", lambda b: ["train", "face", "--data", str(b["data"]), "--frames", "10000", "--out", str(b["root"] / "m6")]),
    ("doctor-frames-0", lambda b: ["doctor", "--frames", "0"]),
    ("doctor-frames-negative", lambda b: ["doctor", "--frames", "-5"]),
    ("doctor-frames-too-many", lambda b: ["doctor", "--frames", "10000"]),
    ("doctor-cache-file", lambda b: ["doctor", "--cache", str(b["wav"])]),
    ("rehearse-three-clips", lambda b: ["rehearse", "--clips", "3", "--device", "cpu", "--work", str(b["root"] / "r")]),
    ("annotate-out-file", lambda b: ["annotate", str(b["folder"]), "--models", str(b["models"]), "--out", str(b["wav"])]),
    ("download-dry-run-to-file", lambda b: ["download", "cremad", "--to", str(b["wav"]), "--dry-run"]),
] + [(f"checkpoint-{name}", (lambda name: lambda b: ["predict", "--models", str(b["broken"][name]), "--audio", str(b["wav"]),
                                                     "--image", str(REPO / "docs" / "live_demo.png"), "--no-fast"])(name))
     for name in ("labels", "hidden", "extra-key", "missing-key", "no-preprocessing", "window", "frames", "format", "truncated")]
SAID = {  # what the line says, for the option cases: the option and why
    "evaluate-other-frames": "trained with --frames 3, not --frames 16", "evaluate-other-pooling": "trained with --pooling mean, not --pooling stats",
    "evaluate-other-temporal": "trained with --temporal mean", "evaluate-other-speech-only": "trained with --no-speech-only, not --speech-only",
    "evaluate-training-option": "--epochs: training options", "evaluate-option-of-a-missing-model": "has no face model",
    "train-finetune-freeze-all": "leave out --freeze all", "train-face-layers": "--layers is for the voice model",
    "train-face-speech-only": "--speech-only is for the voice model", "train-voice-temporal": "--temporal is for the face model",
    "train-voice-balance": "--balance is for the fusion model", "train-fusion-frames": "--frames is for the face model",
    "train-voice-lr-without-finetune": "add --finetune", "train-transformer-one-frame": "--temporal transformer pools over a clip's frames",
    "train-best-one-frame": "(from --recipe best)", "train-frames-10000": "at most 64 frames", "doctor-frames-0": "--frames",
    "doctor-frames-negative": "--frames", "doctor-frames-too-many": "at most 64", "doctor-cache-file": "not a folder",
    "rehearse-three-clips": "at least 24 clips", "annotate-out-file": "not a folder", "download-dry-run-to-file": "not a folder",
}


@pytest.mark.parametrize("name, argv", BAD_ARGUMENTS, ids=[name for name, _ in BAD_ARGUMENTS])
def test_every_bad_argument_is_one_line_and_exit_2(name, argv, bad_inputs, capsys):
    with pytest.raises(SystemExit) as stopped:
        code = main(argv(bad_inputs))
        raise SystemExit(code)
    captured = capsys.readouterr()
    assert stopped.value.code == 2, captured.err
    assert "Traceback" not in captured.err and captured.err.strip().count("\n") == 0, captured.err
    assert captured.err.startswith("emolib"), captured.err
    assert SAID.get(name, "") in captured.err, captured.err
    if name == "timeline-dir":
        assert not (bad_inputs["root"] / "t1").exists()


def test_library_warnings_do_not_reach_the_terminal(bad_inputs):
    """OpenCV and FFmpeg print from C to the process's stderr: only a subprocess sees it."""
    result = subprocess.run([sys.executable, "-m", "emolib", "predict", "--models", str(bad_inputs["models"]), "--video", str(bad_inputs["corrupt"]),
                             "--audio", str(bad_inputs["wav"]), "--no-fast"], capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0, result.stderr


# ---------------------------------------------------------------- media a user has


def test_m4a_audio_and_audio_only_mp4_are_usable_as_audio(bad_inputs, tmp_path, capsys):
    m4a = tmp_path / "speech.m4a"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(bad_inputs["wav"]), "-c:a", "aac", str(m4a)], check=True)
    mp4 = tmp_path / "speech.mp4"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(bad_inputs["wav"]), "-c:a", "aac", str(mp4)], check=True)
    predictor = Predictor.from_dir(bad_inputs["models"], fast=False)
    from_m4a = predictor.predict_files(audio=m4a)
    assert from_m4a.modalities == ["voice"]
    from_mp4 = predictor.predict_files(video=mp4)
    assert from_mp4.modalities == ["voice"] and any("no video stream" in note for note in from_mp4.notes)
    assert main(["timeline", str(mp4), "--models", str(bad_inputs["models"]), "--out", str(tmp_path / "timeline"), "--no-fast"]) == 0


def test_huge_rgba_png_stays_under_a_gigabyte(tmp_path):
    import cv2

    side = 10000
    ramp = np.linspace(0, 255, side, dtype=np.float32)
    image = np.empty((side, side, 4), dtype=np.uint8)
    image[..., 0] = ramp[None, :]
    image[..., 1] = ramp[:, None]
    image[..., 2] = 128
    image[..., 3] = 200
    cv2.imwrite(str(tmp_path / "huge.png"), image, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    del image
    code = ("import sys; from emolib.video import read_image; image = read_image(sys.argv[1]); "  # VmHWM: this process's own peak
            "print(image.shape, next(int(line.split()[1]) for line in open('/proc/self/status') if line.startswith('VmHWM:')))")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "huge.png")], capture_output=True, text=True, check=True)
    shape, peak_kb = result.stdout.rsplit(" ", 1)
    assert shape == "(4096, 4096, 3)" and int(peak_kb) < 1024 * 1024, result.stdout
