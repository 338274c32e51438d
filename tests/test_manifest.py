"""Indexing CREMA-D trees into manifests (emolib.data.manifest) and the `emolib index` command."""
import time
from pathlib import Path

import pandas as pd
import pytest

from emolib.data import cremad_tree
from emolib.cli.main import main
from emolib.cremad import asset_path, parse_name, try_parse_name
from emolib.errors import DataError
from emolib.data.manifest import (
    MANIFEST_COLUMNS,
    index_dataset,
    load_manifest,
    summarize,
    write_manifest,
)

CREMAD_EXTRAS = ["sentence", "level", "age", "sex", "race", "ethnicity"]
STEMS = ["1001_DFA_ANG_XX", "1002_IEO_HAP_HI", "1003_TIE_SAD_LO", "1004_WSI_NEU_XX", "1005_ITS_FEA_MD"]


def touch(folder: Path, names) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"")
    return folder


@pytest.fixture(scope="module")
def real_tree(tmp_path_factory):
    """All 7,442 real CREMA-D clip names as empty AudioWAV/*.wav and VideoFlash/*.flv files."""
    root = tmp_path_factory.mktemp("cremad")
    names = pd.read_csv(asset_path("SentenceFilenames.csv"))["Filename"]
    touch(root / "AudioWAV", (f"{name}.wav" for name in names))
    touch(root / "VideoFlash", (f"{name}.flv" for name in names))
    return root


def test_parse_name_accepts_stems_and_file_names():
    clip = parse_name("1091_WSI_DIS_XX.wav")
    assert (clip.stem, clip.actor, clip.sentence, clip.emotion, clip.level, clip.label) == (
        "1091_WSI_DIS_XX", 1091, "WSI", "DIS", "XX", 1,
    )
    assert parse_name("1001_IEO_HAP_LO").label == 3


@pytest.mark.parametrize(
    "name", ["readme.wav", "1001_DFA_ANG.wav", "1001_DFA_CAL_XX.wav", "1001_DFA_ANG_ZZ", "101_DFA_ANG_XX", "1001_dfa_ANG_XX"]
)
def test_foreign_names_are_not_clips(name):
    assert try_parse_name(name) is None
    with pytest.raises(DataError, match=name.split(".")[0]):
        parse_name(name)


def test_real_names_index_fast_and_complete(real_tree):
    start = time.perf_counter()
    result = index_dataset(real_tree)
    elapsed = time.perf_counter() - start
    df = result.manifest
    assert elapsed < 30
    assert list(df.columns) == MANIFEST_COLUMNS + CREMAD_EXTRAS and len(df) == 7442
    assert df["actor"].nunique() == 91
    assert df["emotion"].value_counts().to_dict() == {
        "ANG": 1271, "DIS": 1271, "FEA": 1271, "HAP": 1271, "SAD": 1271, "NEU": 1087,
    }
    assert not result.unpaired_audio and not result.unpaired_video and not result.foreign
    assert df["sex"].isin(["Male", "Female"]).all() and df["age"].notna().all()
    assert df["stem"].is_monotonic_increasing
    assert (df["label"] == df["emotion"].map(["ANG", "DIS", "FEA", "HAP", "NEU", "SAD"].index)).all()
    assert all(Path(path).is_absolute() and Path(path).name == stem + ".wav" for path, stem in zip(df["audio_path"], df["stem"]))
    assert df.groupby("actor")["split"].nunique().eq(1).all()
    assert set(df["split"]) == {"train", "val", "test"}
    text = summarize(result)
    assert "7442" in text and "NEU 1087" in text and "0 audio-only, 0 video-only" in text


def test_audio_and_video_in_separate_roots_with_unpaired_clips(tmp_path):
    audio = touch(tmp_path / "cremad" / "AudioWAV", [f"{stem}.wav" for stem in STEMS[:4]])
    video = touch(tmp_path / "cremad-video" / "VideoFlash", [f"{stem}.flv" for stem in STEMS[1:]])
    result = index_dataset(audio, video_dir=video)
    df = result.manifest.set_index("stem")
    assert list(df.index) == sorted(STEMS)
    assert result.unpaired_audio == ["1001_DFA_ANG_XX"] and result.unpaired_video == ["1005_ITS_FEA_MD"]
    assert df.loc["1001_DFA_ANG_XX", "video_path"] == "" and df.loc["1005_ITS_FEA_MD", "audio_path"] == ""
    assert df.loc["1002_IEO_HAP_HI", "video_path"] == str(video / "1002_IEO_HAP_HI.flv")
    assert "1 audio-only, 1 video-only" in summarize(result)


def test_audio_folder_as_data_finds_sibling_videos_and_demographics(tmp_path):
    audio = touch(tmp_path / "AudioWAV", [f"{stem}.wav" for stem in STEMS])
    touch(tmp_path / "VideoFlash", [f"{stem}.mp4" for stem in STEMS])
    pd.DataFrame({"ActorID": [1001], "Age": [33], "Sex": ["Female"], "Race": ["Asian"], "Ethnicity": ["Hispanic"]}).to_csv(
        tmp_path / "VideoDemographics.csv", index=False
    )
    result = index_dataset(audio)
    assert not result.unpaired_audio and not result.unpaired_video
    assert result.manifest["sex"].tolist() == ["Female", "unknown", "unknown", "unknown", "unknown"]


def test_too_few_actors_to_split_are_indexed_and_named_where_a_split_is_needed(tmp_path):
    from emolib.data.manifest import summarize
    from emolib.train.options import DataOptions, load_manifest_for

    folder = touch(tmp_path / "two-actors", ["1001_DFA_ANG_XX.wav", "1002_DFA_ANG_XX.wav", "1001_DFA_SAD_XX.wav", "1002_DFA_SAD_XX.wav"])
    result = index_dataset(folder)  # a manifest needs no split
    assert len(result.manifest) == 4 and (result.manifest["split"] == "").all()
    assert "no splits (train/val/test splits need at least 3 actors, got 2)" in summarize(result)
    with pytest.raises(DataError, match="two-actors: .*at least 3 actors, got 2.*--split all"):
        load_manifest_for(DataOptions(str(folder)), quiet=True)
    assert (load_manifest_for(DataOptions(str(folder)), quiet=True, splits=False)["split"] == "all").all()
    with pytest.raises(DataError, match="at least 3 actors"):  # a fold that was asked for still needs its speakers
        index_dataset(folder, fold=0, folds=3)


def test_kaggle_flat_and_nested_audio_folders(tmp_path):
    flat = touch(tmp_path / "flat", [f"{stem}.wav" for stem in STEMS])
    nested = touch(tmp_path / "nested" / "AudioWAV" / "AudioWAV", [f"{stem}.wav" for stem in STEMS])
    for data in (flat, tmp_path / "nested", tmp_path / "nested" / "AudioWAV"):
        result = index_dataset(data)
        assert list(result.manifest["stem"]) == STEMS
        assert (result.manifest["video_path"] == "").all()
        assert result.unpaired_audio == STEMS and not result.unpaired_video
    assert result.manifest["audio_path"].iloc[0] == str(nested / "1001_DFA_ANG_XX.wav")


def test_audio_only_tree_and_duplicates_prefer_shallowest_wav(tmp_path):
    touch(tmp_path / "AudioWAV", [f"{stem}.wav" for stem in STEMS] + ["1001_DFA_ANG_XX.flac"])
    touch(tmp_path / "AudioWAV" / "copy", ["1002_IEO_HAP_HI.wav"])
    result = index_dataset(tmp_path)
    assert len(result.manifest) == 5
    assert result.manifest["audio_path"].str.endswith(".wav").all()
    assert "copy" not in "".join(result.manifest["audio_path"])
    assert sorted(Path(path).name for path in result.duplicates) == ["1001_DFA_ANG_XX.flac", "1002_IEO_HAP_HI.wav"]


def test_foreign_names_are_reported_and_never_labels(tmp_path):
    foreign = ["readme.wav", "1001_DFA_CAL_XX.wav", "noise.flac", "1001_DFA_ANG_XX.old.wav"]
    touch(tmp_path / "AudioWAV", [f"{stem}.wav" for stem in STEMS] + foreign + ["notes.txt", ".hidden.wav"])
    touch(tmp_path / "VideoFlash", ["clip.mp4"])
    result = index_dataset(tmp_path)
    assert list(result.manifest["stem"]) == STEMS
    assert sorted(result.foreign) == sorted(foreign + ["clip.mp4"])
    assert set(result.manifest["emotion"]) <= {"ANG", "DIS", "FEA", "HAP", "NEU", "SAD"}
    assert "foreign names ignored: 5 (e.g. " in summarize(result)


def test_folder_without_cremad_names_is_a_data_error_naming_it(tmp_path):
    folder = touch(tmp_path / "speech", ["hello.wav", "world.wav", "a.mp3"])
    with pytest.raises(DataError, match="speech: no CREMA-D clips found.*expected.*1001_DFA_ANG_XX.*hello.wav"):
        index_dataset(folder)


def test_missing_folders_are_data_errors(tmp_path):
    with pytest.raises(DataError, match="nowhere: folder not found"):
        index_dataset(tmp_path / "nowhere")
    audio = touch(tmp_path / "AudioWAV", [f"{stem}.wav" for stem in STEMS])
    with pytest.raises(DataError, match="no-videos: folder not found"):
        index_dataset(audio, video_dir=tmp_path / "no-videos")
    with pytest.raises(DataError, match="empty: no CREMA-D videos"):
        index_dataset(audio, video_dir=touch(tmp_path / "empty", []))


def test_kaggle_auto_detect(tmp_path, monkeypatch):
    monkeypatch.setattr(cremad_tree, "KAGGLE_INPUT", tmp_path)
    with pytest.raises(DataError, match="pass DATA"):
        index_dataset()
    touch(tmp_path / "other-dataset", ["train.csv"])
    touch(tmp_path / "cremad" / "AudioWAV", [f"{stem}.wav" for stem in STEMS])
    touch(tmp_path / "cremad-videos" / "data" / "VideoFlash", [f"{stem}.flv" for stem in STEMS[:2]])
    result = index_dataset()
    assert result.roots["audio"] == str(tmp_path / "cremad" / "AudioWAV")
    assert result.roots["video"] == str(tmp_path / "cremad-videos" / "data" / "VideoFlash")
    assert (result.manifest["video_path"] != "").sum() == 2


def test_kaggle_auto_detect_any_dataset_name(tmp_path, monkeypatch):
    monkeypatch.setattr(cremad_tree, "KAGGLE_INPUT", tmp_path)
    touch(tmp_path / "my-crema-copy" / "AudioWAV", [f"{stem}.wav" for stem in STEMS])
    assert len(index_dataset().manifest) == len(STEMS)


def test_demographics_from_data_folder_and_override(tmp_path):
    touch(tmp_path / "AudioWAV", [f"{stem}.wav" for stem in STEMS] + ["9999_DFA_ANG_XX.wav"])
    pd.DataFrame({
        "ActorID": [1001, 1002, 1003, 1004, 1005], "Age": [30, 40, 50, 60, 70],
        "Sex": ["Female", "Male", "Female", "Male", None], "Race": ["Asian"] * 5, "Ethnicity": ["Hispanic"] * 5,
    }).to_csv(tmp_path / "VideoDemographics.csv", index=False)
    df = index_dataset(tmp_path).manifest.set_index("stem")
    assert df.loc["1001_DFA_ANG_XX", "age"] == 30 and df.loc["1001_DFA_ANG_XX", "sex"] == "Female"
    assert pd.isna(df.loc["9999_DFA_ANG_XX", "age"]) and df.loc["9999_DFA_ANG_XX", "sex"] == "unknown"
    assert df.loc["1005_ITS_FEA_MD", "sex"] == "unknown"
    packaged = index_dataset(tmp_path, demographics=asset_path("VideoDemographics.csv")).manifest.set_index("stem")
    assert packaged.loc["1001_DFA_ANG_XX", "age"] == 51 and packaged.loc["1001_DFA_ANG_XX", "sex"] == "Male"


def test_fold_selects_kfold_split(real_tree):
    tested = set()
    for fold in range(3):
        df = index_dataset(real_tree, fold=fold, folds=3, seed=1).manifest
        tested |= set(df.loc[df["split"] == "test", "actor"])
    assert len(tested) == 91


def test_write_and_load_manifest_round_trip(tmp_path):
    touch(tmp_path / "data" / "AudioWAV", [f"{stem}.wav" for stem in STEMS])
    touch(tmp_path / "data" / "VideoFlash", [f"{stem}.flv" for stem in STEMS[:2]])
    (tmp_path / "data" / "AudioWAV" / "9999_DFA_ANG_XX.wav").write_bytes(b"")
    df = index_dataset(tmp_path / "data").manifest
    path = write_manifest(df, tmp_path / "deep" / "dir" / "manifest.csv")
    assert sorted(p.name for p in path.parent.iterdir()) == ["manifest.csv"]
    back = load_manifest(path)
    pd.testing.assert_frame_equal(back, df, check_dtype=False)
    assert back["actor"].dtype == "int64" and back["label"].dtype == "int64" and back["age"].dtype == "float64"
    assert (back["video_path"] == "").sum() == 4 and not back["video_path"].isna().any()
    assert back.loc[back["actor"] == 9999, "age"].isna().all()


def test_manifests_of_earlier_emolib_versions_still_load(tmp_path):
    touch(tmp_path / "data" / "AudioWAV", [f"{stem}.wav" for stem in STEMS])
    df = index_dataset(tmp_path / "data").manifest
    df.to_csv(tmp_path / "old.csv", index=False)  # the working table's own columns: how emolib 0.2 wrote manifests
    pd.testing.assert_frame_equal(load_manifest(tmp_path / "old.csv"), df, check_dtype=False)


def test_load_manifest_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match="absent.csv: manifest not found"):
        load_manifest(tmp_path / "absent.csv")
    pd.DataFrame({"stem": ["1001_DFA_ANG_XX"], "actor": [1001]}).to_csv(tmp_path / "thin.csv", index=False)
    with pytest.raises(DataError, match="thin.csv: not a manifest, missing columns audio, video, label, speaker"):
        load_manifest(tmp_path / "thin.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match="empty.csv"):
        load_manifest(tmp_path / "empty.csv")


def test_cli_index_writes_manifest_and_summary(tmp_path, capsys):
    touch(tmp_path / "AudioWAV", [f"{stem}.wav" for stem in STEMS])
    out = tmp_path / "out" / "m.csv"
    assert main(["index", str(tmp_path), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "clips: 5" in printed and "splits: train" in printed and str(out) in printed
    assert list(pd.read_csv(out).columns) == ["stem", "speaker", "label", "audio", "video", "split"] + CREMAD_EXTRAS
    assert set(pd.read_csv(out)["label"]) == {"ANG", "HAP", "SAD", "NEU", "FEA"}


def test_cli_index_bad_folder_is_one_line_exit_2(tmp_path, capsys):
    touch(tmp_path / "junk", ["a.wav"])
    assert main(["index", str(tmp_path / "junk"), "--out", str(tmp_path / "m.csv")]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "junk" in lines[0] and "no CREMA-D clips" in lines[0]
    assert not (tmp_path / "m.csv").exists()
