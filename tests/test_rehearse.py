"""``emolib rehearse`` on the CPU: the tiny version of the GPU dress rehearsal, end to end through the CLI."""
from __future__ import annotations

import json
import subprocess

import soundfile

from emolib.cli.main import main
from emolib.models.checkpoint import read_checkpoint_config


def test_rehearse_runs_the_kaggle_path_on_realistic_synthetic_data(tmp_path, capsys):
    assert main(["rehearse", "--device", "cpu", "--clips", "30", "--work", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    report = json.loads((tmp_path / "rehearsal.json").read_text())
    assert report["size"] == "tiny" and report["recipe"] == "best" and report["clips"] == 30 and report["actors"] >= 25
    assert "no GPU" in report["machine"] and "Projected full 5-fold HiCMAE run" in printed and "| voice |" in printed
    for kind in ("voice", "face", "fusion"):
        row = report["models"][kind]
        assert row["epoch_s"] >= row["train_s"] > 0 and 0 <= row["data_wait_share"] <= 1 and row["train_clips"] > 0
    assert report["models"]["face"]["loader_clips_per_s"] > 0 and report["projected_hours"] > 0
    assert report["decoding_ms"]["vp6"] > 0 and report["decoding_ms"]["flv1"] > 0 and "the release's VP6 FLV" in printed
    data = tmp_path / "cremad-30"
    durations = [soundfile.info(path).duration for path in (data / "AudioWAV").glob("*.wav")]
    assert len(durations) == 30 and 1.3 <= min(durations) and max(durations) <= 5.01
    video = next((data / "VideoFlash").glob("*.flv"))
    streams = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=codec_name,width,height", "-of", "csv=p=0", str(video)],
                             capture_output=True, text=True, check=True).stdout.split()
    assert sorted(streams) == ["flv1,480,360", "mp3"]
    voice, face = (read_checkpoint_config(tmp_path / "models" / kind)[1] for kind in ("voice", "face"))
    assert voice["recipe"] == face["recipe"] == "best" and face["preprocessing"]["face"]["frames"] == 16
    assert voice["model"]["layers"] == "weighted" and voice["preprocessing"]["audio"]["speech_only"] is True
