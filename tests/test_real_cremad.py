"""Real CREMA-D, first time right: the release's known defects, the hicmae protocol, and CREMA-D's own
media format (Sorenson flv1 video + MP3 audio in one FLV, audio taken from it when AudioWAV/ is absent)."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from emolib.cli.main import main
from emolib.cremad import load_demographics
from emolib.data.defects import HICMAE_LEFT_OUT, load_defects
from emolib.data.splits import hicmae_actors, hicmae_test_actors
from emolib.train.options import DataOptions, load_manifest_for

from test_manifest import real_tree  # noqa: F401  the 7,442 real names as empty files

VIDEO_DEFECTS = {("1076_MTI_NEU_XX", "video"), ("1076_MTI_SAD_XX", "video"), ("1064_TIE_SAD_XX", "video"), ("1064_IEO_DIS_MD", "video")}


def test_defect_list_is_complete():
    defects = load_defects()
    assert {(row.stem, row.modality) for row in defects.itertuples() if row.modality == "video"} == VIDEO_DEFECTS
    assert set(defects.loc[defects["modality"] == "audio", "stem"]) == {"1076_MTI_SAD_XX"}
    assert (defects["modality"] == "video_audio").sum() == 28 and (defects["reason"] != "").all()


def test_index_reports_the_defective_clips_by_name_and_reason(real_tree, tmp_path, capsys):  # noqa: F811
    assert main(["index", str(real_tree), "--out", str(tmp_path / "manifest.csv")]) == 0
    out = capsys.readouterr().out
    assert "known CREMA-D release defects here: 5" in out
    for stem, modality in VIDEO_DEFECTS | {("1076_MTI_SAD_XX", "audio")}:
        assert any(line.strip().startswith(f"{stem} {modality}:") for line in out.splitlines()), (stem, modality)
    assert "1005_IWW_DIS_XX" not in out  # its FLV's missing audio track does not matter: the WAV is used


def test_defective_modalities_are_left_out_unless_asked(real_tree):  # noqa: F811
    manifest = load_manifest_for(DataOptions(str(real_tree)), quiet=True).set_index("stem")
    assert manifest.at["1076_MTI_NEU_XX", "video_path"] == "" and manifest.at["1076_MTI_NEU_XX", "audio_path"] != ""
    assert manifest.at["1076_MTI_SAD_XX", "video_path"] == manifest.at["1076_MTI_SAD_XX", "audio_path"] == ""
    assert "very short" in manifest.at["1076_MTI_NEU_XX", "excluded"]
    assert (manifest["excluded"] != "").sum() == 4
    kept = load_manifest_for(DataOptions(str(real_tree), include_defective=True), quiet=True).set_index("stem")
    assert kept.at["1076_MTI_NEU_XX", "video_path"] != ""


def test_hicmae_partition_is_the_published_one():
    expected = [list(range(1001 + 18 * k, 1001 + 18 * (k + 1))) for k in range(5)]
    expected[4].append(1091)
    assert [hicmae_test_actors(fold) for fold in range(5)] == expected
    assert sorted(sum(expected, [])) == list(range(1001, 1092))
    actors = load_demographics()["sex"]
    for fold in range(5):
        split = hicmae_actors(actors, fold)
        assert sorted(actor for actor, name in split.items() if name == "test") == expected[fold]
        val = [actor for actor, name in split.items() if name == "val"]
        assert 10 <= len(val) <= 14 and not set(val) & set(expected[fold])
        assert len(split) == 91


def test_hicmae_leaves_out_the_four_defective_clips(real_tree):  # noqa: F811
    manifest = load_manifest_for(DataOptions(str(real_tree), protocol="hicmae", fold=4, include_defective=True), quiet=True)
    left = manifest[manifest["stem"].isin(HICMAE_LEFT_OUT)]
    assert len(left) == 4 and (left["audio_path"] == "").all() and (left["video_path"] == "").all()
    assert left["excluded"].str.contains("hicmae").all()
    assert set(manifest.loc[manifest["split"] == "test", "actor"]) == set(range(1073, 1091)) | {1091}


@pytest.mark.slow
def test_evaluate_protocol_hicmae_on_synthetic_data(tmp_path):
    from emolib.data.synth.corpus import make_synthetic_cremad

    data = make_synthetic_cremad(tmp_path / "data", actors=20, clips_per_emotion=1, workers=0, progress=False)
    args = ["evaluate", "--protocol", "hicmae", "--data", str(data), "--models", str(tmp_path / "models"), "--out", str(tmp_path / "reports"),
            "--backbone", "tiny", "--freeze", "all", "--epochs", "1", "--cache", str(tmp_path / "cache"), "--device", "cpu"]
    assert main(args) == 0
    summary = json.loads((tmp_path / "reports" / "cv_metrics.json").read_text())
    assert summary["protocol"] == "hicmae" and summary["folds"] == 2 and [fold["fold"] for fold in summary["skipped_folds"]] == [2, 3, 4]
    first = json.loads((tmp_path / "reports" / "fold0" / "metrics.json").read_text())
    assert first["protocol"] == "hicmae" and first["paper_fold"] == 1 and first["fold"] == 0
    assert first["split_actors"]["test"] == list(range(1001, 1019)) and first["actors"] == list(range(1001, 1019))
    assert set(first["split_actors"]["train"]) | set(first["split_actors"]["val"]) == {1019, 1020}
    assert "training actors" in first["validation"] and first["label_source"].startswith("intended")


# ---------------------------------------------------------------- CREMA-D's own format: flv1 video + MP3 audio


def to_cremad_flv(video: Path, audio: Path, target: Path) -> Path:
    """Re-encode as CREMA-D's VideoFlash files are: Sorenson H.263 (flv1) 480x360 at 30 fps with an MP3 track."""
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(video), "-i", str(audio), "-map", "0:v", "-map", "1:a",
                    "-c:v", "flv1", "-s", "480x360", "-r", "30", "-q:v", "3", "-c:a", "libmp3lame", "-ar", "44100", "-b:a", "64k",
                    str(target)], check=True)
    return target


@pytest.fixture(scope="module")
def flv_tree(tmp_path_factory):
    """A VideoFlash-only tree (no AudioWAV/) of flv1+MP3 files made from the synthetic clips; one of them is named
    after a clip whose FLV lacked audio in old releases."""
    from emolib.data.synth.corpus import make_synthetic_cremad

    root = tmp_path_factory.mktemp("flv")
    synth = make_synthetic_cremad(root / "synth", actors=3, clips_per_emotion=1, workers=0, progress=False)
    tree = root / "cremad" / "VideoFlash"
    tree.mkdir(parents=True)
    for video in sorted((synth / "VideoFlash").glob("*.flv")):
        to_cremad_flv(video, synth / "AudioWAV" / f"{video.stem}.wav", tree / video.name)
    shutil.copy(synth / "VideoDemographics.csv", tree.parent)
    return tree.parent, synth


def test_flv1_mp3_files_give_frames_and_audio(flv_tree):
    import av

    from emolib.audio import load_audio
    from emolib.media import read_audio_track, to_model_rate
    from emolib.video import read_frames

    tree, synth = flv_tree
    flv = sorted((tree / "VideoFlash").glob("*.flv"))[0]
    with av.open(str(flv)) as container:
        video, audio = container.streams.video[0].codec_context.codec, container.streams.audio[0].codec_context.codec
        assert "Sorenson" in video.long_name and audio.name.startswith("mp3")
        assert (container.streams.video[0].width, container.streams.video[0].height) == (480, 360)
    frames = read_frames(flv, 3)
    assert len(frames) == 3 and frames[0].shape == (360, 480, 3) and frames[0].std() > 10
    track = to_model_rate(*read_audio_track(flv), name=str(flv))
    wav = load_audio(synth / "AudioWAV" / f"{flv.stem}.wav")
    assert abs(len(track) - len(wav)) < 0.15 * 16000  # MP3 adds encoder padding
    assert np.sqrt(np.mean(track**2)) == pytest.approx(np.sqrt(np.mean(wav**2)), rel=0.2)


def test_audio_comes_from_the_flv_when_audiowav_is_absent(flv_tree, tmp_path):
    from emolib.data.datasets import VoiceDataset
    from emolib.infer.predictor import Predictor

    from test_predict import make_untrained_models

    tree, _ = flv_tree
    manifest = load_manifest_for(DataOptions(str(tree)), quiet=True)
    assert (manifest["audio_path"] == manifest["video_path"]).all() and manifest["audio_path"].str.endswith(".flv").all()
    dataset = VoiceDataset(manifest)
    assert len(dataset) == len(manifest) and dataset.skipped == []
    assert dataset[0]["attention_mask"].sum() > 16000
    prediction = Predictor.from_dir(make_untrained_models(tmp_path / "models"), fast=False).predict_files(video=manifest["video_path"].iloc[0])
    assert prediction.modalities == ["voice", "face"]


def test_an_flv_without_its_audio_track_is_left_out_as_audio(flv_tree, tmp_path):
    tree, _ = flv_tree
    copy = tmp_path / "old-release"
    shutil.copytree(tree, copy)
    source = sorted((copy / "VideoFlash").glob("1001_*.flv"))[0]
    source.rename(source.with_name("1005_IWW_DIS_XX.flv"))  # one of the 28 FLVs that lacked audio before December 2020
    manifest = load_manifest_for(DataOptions(str(copy)), quiet=True).set_index("stem")
    assert manifest.at["1005_IWW_DIS_XX", "audio_path"] == "" and manifest.at["1005_IWW_DIS_XX", "video_path"] != ""
    assert "audio taken from the FLV" in manifest.at["1005_IWW_DIS_XX", "excluded"]
    kept = load_manifest_for(DataOptions(str(copy), include_defective=True), quiet=True).set_index("stem")
    assert kept.at["1005_IWW_DIS_XX", "audio_path"] == kept.at["1005_IWW_DIS_XX", "video_path"]


# ---------------------------------------------------------------- intended or perceived labels


def test_perceived_labels_follow_each_modality_and_drop_ties():
    from emolib.data.perceived import perceived_emotions, with_labels

    stems = ["1001_DFA_DIS_XX", "1001_DFA_HAP_XX", "1001_IEO_ANG_MD"]
    assert perceived_emotions(stems, "voice") == ["DIS", "NEU", ""]  # the last: voice raters tied ANG/DIS
    assert perceived_emotions(stems[:2], "face") == ["ANG", "HAP"]
    assert perceived_emotions(stems[:2], "fusion") == ["DIS", "HAP"]
    manifest = pd.DataFrame({"stem": stems, "emotion": ["DIS", "HAP", "ANG"], "label": [1, 3, 0]})
    voice, dropped = with_labels(manifest, "voice", "perceived")
    assert dropped == 1 and list(voice["emotion"]) == ["DIS", "NEU"] and list(voice["label"]) == [1, 4]
    assert with_labels(manifest, "face", "intended") == (manifest, 0)


def test_training_on_perceived_labels_uses_the_models_own_votes(monkeypatch, tmp_path):
    import emolib.train.recipes as recipes

    seen = {}
    monkeypatch.setattr(recipes, "train_model", lambda kind, manifest, *args: seen.setdefault(kind, manifest))
    manifest = pd.DataFrame({"stem": ["1001_DFA_DIS_XX", "1001_DFA_HAP_XX"], "emotion": ["DIS", "HAP"], "label": [1, 3]})
    for kind in ("voice", "face", "fusion"):
        recipes.train_with(kind, manifest, tmp_path / "models", recipes.ModelOptions(), labels="perceived")
    assert [list(seen[kind]["emotion"]) for kind in ("voice", "face", "fusion")] == [["DIS", "NEU"], ["ANG", "HAP"], ["DIS", "HAP"]]


def test_evaluate_reports_intended_and_perceived_side_by_side(trained_demo, tmp_path, capsys):
    args = ["evaluate", "--data", str(trained_demo / "cremad-synth"), "--models", str(trained_demo / "models"), "--out", str(tmp_path),
            "--cache", str(trained_demo / "cache"), "--labels", "both", "--device", "cpu"]
    assert main(args) == 0
    assert "uar_perceived" in capsys.readouterr().out
    report = json.loads((tmp_path / "metrics.json").read_text())
    assert report["labels"] == "both" and report["label_source"].startswith("both")
    for kind in ("voice", "face", "fusion"):
        perceived = report["models"][kind]["perceived"]
        assert perceived["n"] + perceived["dropped_no_majority"] == report["models"][kind]["n"]
        assert 0 <= perceived["uar"] <= 1


# ---------------------------------------------------------------- real faces


def test_detector_finds_faces_that_fill_the_image_and_small_crops():
    import skimage.data

    from emolib.bench.faces import ASTRONAUT_FACE, FRONTAL_ONLY
    from emolib.faces import HAAR, Detector, detect_faces

    astronaut = skimage.data.astronaut()
    x, y, w, h = ASTRONAUT_FACE
    tight = astronaut[y + 10 : y + h - 10, x + 10 : x + w - 10]  # the face fills the whole image
    assert detect_faces(tight, FRONTAL_ONLY) == [] and detect_faces(tight, HAAR) != []  # (BlazeFace wants some surroundings: --whole-image)
    best = detect_faces(astronaut, HAAR)[0]  # the face, not the larger false positive on the shuttle
    assert abs(best[0] - x) < 10 and abs(best[1] - y) < 10
    assert len(detect_faces(astronaut, Detector())) == 1  # BlazeFace: no false positive at all
    lfw = (skimage.data.lfw_subset() * 255).astype(np.uint8)
    for detector, least, most in ((HAAR, 90, 5), (Detector(), 95, 2)):
        found = sum(bool(detect_faces(face, detector)) for face in lfw[:100])
        false = sum(bool(detect_faces(face, detector)) for face in lfw[100:])
        assert found >= least and false <= most, (detector.kind, found, false)
    assert sum(bool(detect_faces(face, FRONTAL_ONLY)) for face in lfw[:20]) == 0


def test_whole_image_treats_the_image_as_a_face(tmp_path, capsys):
    import cv2

    from test_predict import make_untrained_models

    from media import no_face_image

    image = tmp_path / "wall.png"
    cv2.imwrite(str(image), no_face_image())
    models = make_untrained_models(tmp_path / "models")
    assert main(["predict", "--models", str(models), "--image", str(image), "--no-fast"]) == 2
    assert "no face found" in capsys.readouterr().err
    assert main(["predict", "--models", str(models), "--image", str(image), "--whole-image", "--no-fast", "--json"]) == 0
    prediction = json.loads(capsys.readouterr().out)
    assert prediction["modalities"] == ["face"] and prediction["face_box"] == [0, 0, 480, 360]


def test_face_bench_writes_its_section_and_keeps_the_rest(tmp_path):
    from emolib.bench.faces import END, START, markdown, update_section

    path = tmp_path / "BENCHMARKS.md"
    path.write_text("# Benchmarks\n\nlatency table\n")
    rows = [{"set": "s", "images": 1, "faces": True, "frontal_only": 0, "haar": 1, "blazeface_auto": 1, "blazeface": 2, "frontal_only_ms": 1.0,
             "haar_ms": 2.0, "blazeface_auto_ms": 0.5, "blazeface_ms": 0.9}]
    text = update_section(path, markdown(rows, "emolib bench --faces"))
    assert text.startswith("# Benchmarks\n\nlatency table") and START in text and "| s | 1 | 0 | 1 | 1 | 2 | 1.0 | 2.0 | 0.5 | 0.9 |" in text
    assert "found: BlazeFace auto | found: BlazeFace both" in text
    path.write_text(text)
    again = update_section(path, markdown(rows, "emolib bench --faces"))
    assert again.count(START) == again.count(END) == 1


# ---------------------------------------------------------------- preflight


def test_doctor_says_what_a_long_run_needs(tmp_path, capsys, monkeypatch):
    from emolib.data.synth.corpus import make_synthetic_cremad

    from test_predict import make_untrained_models  # noqa: F401  (conftest forces offline mode for the hub)

    data = make_synthetic_cremad(tmp_path / "data", actors=3, clips_per_emotion=1, workers=0, progress=False)
    (data / "AudioWAV" / sorted(p.name for p in (data / "AudioWAV").iterdir())[0]).write_bytes(b"RIFF....WAVEjunk")
    code = main(["doctor", "--data", str(data), "--cache", str(tmp_path / "cache")])
    lines = capsys.readouterr().out.splitlines()
    by_name = {line[6:20].strip(): line for line in lines if line[:4].strip() in ("ok", "warn", "FAIL")}
    assert {"versions", "GPUs", "voice backbone", "face backbone", "data", "unreadable", "video codec", "disk", "estimate"} <= set(by_name)
    assert code == 1 and by_name["voice backbone"].startswith("FAIL") and "--backbone DIR" in by_name["voice backbone"]
    assert "18 clips of 3 speakers" in by_name["data"] and by_name["unreadable"].startswith("warn  unreadable     1 of 36 files")
    assert "GFLOP/s" in by_name["estimate"] and lines[-1].startswith("a long run would fail")

    voice = tmp_path / "wav2vec2"
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    from emolib.models.backbones import TINY_VOICE_CONFIG

    Wav2Vec2Model(Wav2Vec2Config(**TINY_VOICE_CONFIG)).save_pretrained(voice)
    weights = tmp_path / "resnet50.safetensors"
    weights.write_bytes(b"x")
    assert main(["doctor", "--data", str(data), "--backbone", str(voice), "--face-weights", str(weights), "--cache", str(tmp_path / "cache")]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "ready for a long run"


def test_doctor_sizes_the_crops_by_frames_and_keeps_them_out_of_kaggles_20_gb():
    from emolib.cli.doctor import Report, disk

    report = Report()
    disk(report, "/kaggle/working/emolib/cache", 7442, 16)
    disk(report, "/kaggle/temp/emolib-cache", 7442, 16)
    disk(report, "/kaggle/working/emolib/cache", 7442, 3)
    lines = [" ".join(map(str, line)) for line in report.lines]
    needed = [float(line.split("need about ")[1].split(" GiB")[0]) for line in lines if "need about" in line]
    assert "16 frames per clip" in lines[0] and needed[0] > 16 > 4 > needed[-1]  # 7,442 clips x 16 crops of 224 px: over 16 GiB; 3 frames: ~3.7
    assert [("keeps 20 GB" in line) for line in lines] == [False, True, False, False]  # only the 16-frame cache in /kaggle/working
