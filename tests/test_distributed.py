"""The one Trainer under two processes (torchrun, gloo on the CPU, through Accelerate): the same validation
UAR as one process, and a run killed mid-training resumes under two processes where it stopped."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
EPOCHS = 20


def encoders(trained_demo, folder: Path) -> Path:
    """A models folder holding the demo's voice and face checkpoints (no fusion yet)."""
    for kind in ("voice", "face"):
        shutil.copytree(trained_demo / "models" / kind, folder / kind, ignore=shutil.ignore_patterns("fast", "resume*"))
    return folder


def train_fusion(trained_demo, models: Path, processes: int) -> subprocess.Popen:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes), "-m"] if processes > 1 else [sys.executable, "-m"]
    command = launcher + ["emolib", "train", "fusion", "--data", str(trained_demo / "cremad-synth"), "--out", str(models),
                          "--cache", str(trained_demo / "cache"), "--epochs", str(EPOCHS), "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)


def history(models: Path) -> list[dict]:
    return json.loads((models / "fusion" / "history.json").read_text())


def finish(process: subprocess.Popen) -> None:
    _, err = process.communicate(timeout=300)
    assert process.returncode == 0, err[-3000:]


def test_two_processes_match_one_and_resume_after_a_kill(trained_demo, tmp_path):
    one, two, cut = (encoders(trained_demo, tmp_path / name) for name in ("one", "two", "cut"))
    finish(train_fusion(trained_demo, one, 1))
    finish(train_fusion(trained_demo, two, 2))
    best_one, best_two = (max(row["val_uar"] for row in history(models)) for models in (one, two))
    assert best_two == pytest.approx(best_one, abs=0.03)
    assert len({row["val_loss"] for row in history(two)}) > 1

    killed = train_fusion(trained_demo, cut, 2)
    deadline = time.time() + 240
    while time.time() < deadline and not ((cut / "fusion" / "history.json").exists() and len(history(cut)) >= 3):
        time.sleep(0.05)
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait()
    stopped_at = len(history(cut))
    assert 3 <= stopped_at < len(history(two)), "the run finished before it could be killed"
    finish(train_fusion(trained_demo, cut, 2))
    resumed, uninterrupted = history(cut), history(two)
    assert [row["epoch"] for row in resumed] == [row["epoch"] for row in uninterrupted]
    for ours, theirs in zip(resumed, uninterrupted):
        assert ours["val_loss"] == pytest.approx(theirs["val_loss"], rel=1e-4) and ours["val_uar"] == theirs["val_uar"]
    assert not list((cut / "fusion").glob(".*.tmp")) and not (cut / "fusion" / ".emolib.lock").exists()


NOTEBOOK_CELL = """
import json, sys
from emolib.data.manifest import load_manifest
from emolib.train.options import train_config
from emolib.train.recipes import train_model_on_gpus
demo, models = sys.argv[1], sys.argv[2]
history = train_model_on_gpus("fusion", load_manifest(demo + "/manifest.csv"), models, train=train_config("fusion", epochs=3, device="cpu"),
                              cache_dir=demo + "/cache", progress=False, processes=2)
print(json.dumps([row["epoch"] for row in history]))
"""


def test_notebook_launcher_path_trains_on_two_processes(trained_demo, tmp_path):
    """What the training notebooks run on Kaggle's two T4s, here with two CPU processes: accelerate.notebook_launcher
    forks the calling process, so it runs in a fresh interpreter, as in a notebook kernel."""
    models = encoders(trained_demo, tmp_path / "models")
    result = subprocess.run([sys.executable, "-c", NOTEBOOK_CELL, str(trained_demo), str(models)], capture_output=True, text=True,
                            timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Launching training on 2" in result.stdout + result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == [1, 2, 3] and (models / "fusion" / "model.safetensors").is_file()
