"""`emolib annotate`: a folder of videos on Ray Data with two model actors on this machine's two cores ->
one Parquet dataset whose rows equal `emolib timeline` per file; a second run skips everything; a corrupt
file lands in the errors table."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from emolib.cli.main import main
from emolib.errors import EmolibError
from emolib.infer.annotate import ERRORS_DIR, list_inputs, read_windows

from media import face_frames
from test_predict import make_untrained_models, speechlike, write_av_clip

pytestmark = pytest.mark.slow
PROBABILITIES = [f"{kind}_{emotion}" for kind in ("prob", "voice", "face", "fusion") for emotion in ("ANG", "DIS", "FEA", "HAP", "NEU", "SAD")]


@pytest.fixture(scope="module", autouse=True)
def ray_once():
    """One local Ray for the module: annotate joins a running Ray and leaves it running, so each run saves Ray's start-up."""
    import ray

    from emolib.infer.annotate import quiet_ray

    quiet_ray()
    ray.init(ignore_reinit_error=True, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    root = tmp_path_factory.mktemp("archive")
    (root / "videos" / "day2").mkdir(parents=True)
    for name, seconds in (("interview.mp4", 6.0), ("day2/lecture.mp4", 4.5)):
        write_av_clip(root / "videos" / name, face_frames(int(seconds * 30), index_patch=False), speechlike(seconds, seed=len(name)))
    (root / "videos" / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video")
    return root, make_untrained_models(root / "models")


def test_annotate_a_folder_twice(archive, tmp_path, capsys):
    from emolib.infer.predictor import Predictor
    from emolib.infer.timeline import predict_timeline

    root, models = archive
    out = tmp_path / "annotations"
    assert main(["annotate", str(root / "videos"), "--models", str(models), "--out", str(out), "--workers", "2"]) == 0
    assert "3 files: 2 annotated" in capsys.readouterr().out
    windows = read_windows(out)
    assert set(windows["file"].map(lambda path: Path(path).name)) == {"interview.mp4", "lecture.mp4"}
    assert {"start", "end", "label", "modalities", "face_found", "audio_rms", "models", "key"} <= set(windows.columns)
    predictor = Predictor.from_dir(models)
    for path, rows in windows.groupby("file"):
        timeline = predict_timeline(predictor, path, progress=False)
        rows = rows.sort_values("start").reset_index(drop=True)
        assert list(rows["label"]) == list(timeline["label"]) and list(rows["start"]) == list(timeline["start"])
        np.testing.assert_allclose(rows[PROBABILITIES].to_numpy(float), timeline[PROBABILITIES].to_numpy(float), atol=1e-4)
    errors = pd.concat(pd.read_parquet(path) for path in (out / ERRORS_DIR).glob("*.parquet"))
    assert list(errors["file"].map(lambda path: Path(path).name)) == ["corrupt.mp4"] and errors["error"].str.contains("corrupt.mp4").all()

    assert main(["annotate", str(root / "videos"), "--models", str(models), "--out", str(out), "--workers", "2"]) == 0
    second = capsys.readouterr().out
    assert "0 annotated" in second and "3 already done" in second
    assert len(read_windows(out)) == len(windows)


def test_inputs_from_a_list_a_glob_or_nothing(archive, tmp_path):
    root, _ = archive
    listing = tmp_path / "list.csv"
    pd.DataFrame({"path": [str(root / "videos" / "interview.mp4"), "../archive-relative.mp4"]}).to_csv(listing, index=False)
    assert {path.name for path in list_inputs(listing)} == {"archive-relative.mp4", "interview.mp4"}
    assert {path.name for path in list_inputs(str(root / "videos" / "**" / "*.mp4"))} == {"corrupt.mp4", "lecture.mp4", "interview.mp4"}
    with pytest.raises(EmolibError, match="no media files"):
        list_inputs(tmp_path / "empty-*.mp4")


# ---------------------------------------------------------------- trust: complete, readable, keyed by everything that changes the rows


def test_other_settings_are_recomputed_not_reused(archive, tmp_path, capsys):
    root, models = archive
    out = tmp_path / "annotations"
    source = root / "videos" / "interview.mp4"
    assert main(["annotate", str(source), "--models", str(models), "--out", str(out), "--workers", "1"]) == 0
    default = read_windows(out)
    assert (default["end"] - default["start"]).max() == pytest.approx(4.0)
    capsys.readouterr()
    assert main(["annotate", str(source), "--models", str(models), "--out", str(out), "--workers", "1", "--window", "2", "--hop", "2"]) == 0
    said = capsys.readouterr().out
    assert "1 annotated" in said and "0 already done" in said and "replacing 1" in said
    short = read_windows(out)
    assert (short["end"] - short["start"]).max() == pytest.approx(2.0) and list(short["start"]) == [0.0, 2.0, 4.0]
    assert short["settings"].nunique() == 1 and short["settings"].iloc[0] != default["settings"].iloc[0]


def test_copies_and_empty_files_each_end_with_their_own_result(archive, tmp_path, capsys):
    import duckdb
    import pyarrow.dataset

    from emolib.infer.annotate import read_errors

    root, models = archive
    folder = tmp_path / "inputs"
    (folder / "copy").mkdir(parents=True)
    for target in (folder / "a.mp4", folder / "copy" / "b.mp4"):
        target.write_bytes((root / "videos" / "interview.mp4").read_bytes())
    (folder / "empty1.wav").write_bytes(b"")
    (folder / "empty2.wav").write_bytes(b"")
    silent = folder / "silent.mp4"  # frames but no sound track: audio_rms is null in every row of this file
    write_av_clip(silent, face_frames(60, index_patch=False), None)
    out = tmp_path / "annotations"
    assert main(["annotate", str(folder), "--models", str(models), "--out", str(out), "--workers", "1"]) == 0
    said = capsys.readouterr().out
    assert "5 files: 3 annotated" in said and "2 failed" in said, said
    windows = read_windows(out)
    names = windows.groupby(windows["file"].map(lambda path: Path(path).name)).size()
    assert set(names.index) == {"a.mp4", "b.mp4", "silent.mp4"} and names["a.mp4"] == names["b.mp4"]
    errors = read_errors(out)
    assert sorted(errors["file"].map(lambda path: Path(path).name)) == ["empty1.wav", "empty2.wav"]
    # the whole folder reads back with pandas, pyarrow and DuckDB, nulls typed
    assert windows.loc[windows["file"].str.endswith("silent.mp4"), "audio_rms"].isna().all()
    dataset = pyarrow.dataset.dataset(out / "windows")
    assert dataset.to_table().num_rows == len(windows) and str(dataset.schema.field("audio_rms").type) == "double"
    count = duckdb.sql(f"select count(*), count(distinct file) from read_parquet('{out}/windows/*.parquet')").fetchall()[0]
    assert count == (len(windows), 3)


def test_list_files_bad_or_naming_missing_files(archive, tmp_path, capsys):
    root, models = archive
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    header_only = tmp_path / "header.csv"
    header_only.write_text("path\n")
    not_parquet = tmp_path / "list.parquet"
    not_parquet.write_text("path\nvideo.mp4\n")
    for listing in (empty, header_only, not_parquet):
        with pytest.raises(SystemExit) as stopped:
            raise SystemExit(main(["annotate", str(listing), "--models", str(models), "--out", str(tmp_path / "none")]))
        err = capsys.readouterr().err
        assert stopped.value.code == 2 and err.strip().count("\n") == 0 and str(listing) in err and "Traceback" not in err, err
    listing = tmp_path / "list.csv"
    pd.DataFrame({"path": [str(root / "videos" / "interview.mp4"), str(tmp_path / "gone.mp4")]}).to_csv(listing, index=False)
    out = tmp_path / "annotations"
    assert main(["annotate", str(listing), "--models", str(models), "--out", str(out), "--workers", "1"]) == 0
    assert "2 files: 1 annotated" in capsys.readouterr().out
    from emolib.infer.annotate import read_errors

    errors = read_errors(out)
    assert list(errors["file"].map(lambda path: Path(path).name)) == ["gone.mp4"] and errors["error"].str.contains("gone.mp4").all()


def test_broken_symlinks_in_a_folder_each_end_in_an_error_row(archive, tmp_path, capsys):
    from emolib.infer.annotate import read_errors

    _, models = archive
    folder = tmp_path / "links"
    folder.mkdir()
    (folder / "dangling.mp4").symlink_to(tmp_path / "moved-away.mp4")
    (folder / "loop.mp4").symlink_to(folder / "loop.mp4")
    assert {path.name for path in list_inputs(folder)} == {"dangling.mp4", "loop.mp4"}
    assert {path.name for path in list_inputs(str(folder / "*.mp4"))} == {"dangling.mp4", "loop.mp4"}
    out = tmp_path / "annotations"
    assert main(["annotate", str(folder), "--models", str(models), "--out", str(out)]) == 0
    assert "2 files: 0 annotated" in capsys.readouterr().out
    errors = read_errors(out).sort_values("file")
    assert list(errors["file"].map(lambda path: Path(path).name)) == ["dangling.mp4", "loop.mp4"]
    assert errors["error"].str.contains("cannot read the file").all()


def test_an_output_that_is_a_file_is_refused_before_any_work(archive, tmp_path, capsys):
    import time

    root, models = archive
    taken = tmp_path / "annotations.parquet"
    taken.write_text("a file")
    started = time.monotonic()
    assert main(["annotate", str(root / "videos"), "--models", str(models), "--out", str(taken)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--out {taken}: not a folder" in err and time.monotonic() - started < 5


def test_annotate_real_cremad_files(archive, tmp_path, capsys):
    """The release's own VP6 FLV and MP3 (tests/data/real) through Ray Data."""
    import shutil

    _, models = archive
    real = Path(__file__).parent / "data" / "real" / "cremad"
    folder = tmp_path / "real"
    folder.mkdir()
    for path in (real / "VideoFlash" / "1001_DFA_ANG_XX.flv", real / "AudioMP3" / "1002_DFA_ANG_XX.mp3"):
        shutil.copy(path, folder)
    assert main(["annotate", str(folder), "--models", str(models), "--out", str(tmp_path / "a"), "--workers", "1"]) == 0
    assert "2 files: 2 annotated" in capsys.readouterr().out
    windows = read_windows(tmp_path / "a")
    flv = windows[windows["file"].str.endswith(".flv")]
    assert flv["face_found"].all() and flv["modalities"].eq("voice+face").all()


def test_a_list_with_a_speaker_column_standardises_each_speaker_by_all_of_their_files(tmp_path, capsys):
    """The starter's eGeMAPS voice model (speaker normalisation) on real RAVDESS files: each speaker's statistics come from all of
    their files' windows, measured first, so every window is standardised by them from the first file on."""
    pytest.importorskip("opensmile")
    ravdess = sorted((Path(__file__).parent / "data" / "real" / "ravdess").glob("Actor_*/*.flac"))
    listing = tmp_path / "list.csv"
    files = ravdess[:6] + ravdess[-2:]
    pd.DataFrame({"path": [str(path) for path in files], "speaker": ["one"] * 6 + ["twenty"] * 2}).to_csv(listing, index=False)
    out = tmp_path / "annotations"
    assert main(["annotate", str(listing), "--models", "starter", "--out", str(out), "--workers", "1", "--min-speech", "0"]) == 0
    assert "8 files: 8 annotated" in capsys.readouterr().out
    windows = read_windows(out)
    one, twenty = windows[windows["speaker"] == "one"], windows[windows["speaker"] == "twenty"]
    assert len(one) == 6 and len(twenty) == 2  # one window a file (3-4 s)
    assert one["notes"].str.contains("per speaker: 6 windows").all()  # all six files' windows, from the first one on
    assert twenty["notes"].str.contains("the corpus statistics until 5").all()  # two windows are too few
