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
