"""The shared training loop: learning happens, best-on-validation selection, resume, checkpoints."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from emolib.models.checkpoint import load_model, save_checkpoint
from emolib.data.datasets import FeatureDataset
from emolib.errors import ModelError
from emolib.models.nets import FaceConfig, FaceModel, FusionConfig, FusionModel, VoiceConfig, VoiceModel
from emolib.train.resume import RESUME_FILE
from emolib.train.trainer import HISTORY_FILE, Trainer, TrainConfig


def clusters(n_per_class=40, seed=0, noise=0.6):
    """Six well separated Gaussian clusters of fusion-shaped features."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(6, 12)) * 2
    labels = np.repeat(np.arange(6), n_per_class)
    points = centres[labels] + rng.normal(scale=noise, size=(len(labels), 12))
    tensors = {"voice": torch.tensor(points[:, :8], dtype=torch.float32), "face": torch.tensor(points[:, 8:], dtype=torch.float32),
               "present": torch.ones(len(labels), 2)}
    return FeatureDataset(tensors, torch.tensor(labels))


def fusion_trainer(out_dir, epochs, saved):
    torch.manual_seed(0)
    model = FusionModel(FusionConfig(voice_dim=8, face_dim=4, hidden_dim=32))
    config = TrainConfig(epochs=epochs, batch_size=16, lr=3e-3, patience=100, device="cpu")
    return Trainer(model, clusters(seed=0), clusters(n_per_class=15, seed=0), config, out_dir,
                   lambda model, metrics: saved.append(metrics), progress=False)


def test_training_learns_and_selects_on_validation(tmp_path):
    saved = []
    history = fusion_trainer(tmp_path, epochs=8, saved=saved).fit()
    assert history[0]["val_uar"] < 0.9 < max(row["val_uar"] for row in history)
    assert history[-1]["train_loss"] < history[0]["train_loss"] / 2
    best_uars = [metrics["uar"] for metrics in saved]
    assert best_uars == sorted(best_uars) and all(metrics["split"] == "val" for metrics in saved)
    assert json.loads((tmp_path / HISTORY_FILE).read_text()) == history


def test_training_resumes_where_it_stopped(tmp_path):
    full = fusion_trainer(tmp_path / "full", epochs=4, saved=[]).fit()
    first = fusion_trainer(tmp_path / "cut", epochs=4, saved=[])
    first.config.epochs = 2  # an interruption after two epochs
    first.fit()
    resumed = fusion_trainer(tmp_path / "cut", epochs=4, saved=[])
    history = resumed.fit()
    assert [row["epoch"] for row in history] == [1, 2, 3, 4]
    assert resumed.state["step"] == fusion_trainer(tmp_path / "x", epochs=4, saved=[]).steps_per_epoch * 4
    assert history[-1]["val_loss"] == pytest.approx(full[-1]["val_loss"], rel=1e-4)
    assert not list((tmp_path / "cut").rglob("*.tmp"))
    assert (tmp_path / "cut" / RESUME_FILE).is_file() and not list((tmp_path / "cut").rglob("*.pt"))


def test_finished_training_is_not_repeated(tmp_path):
    fusion_trainer(tmp_path, epochs=2, saved=[]).fit()
    saved = []
    history = fusion_trainer(tmp_path, epochs=2, saved=saved).fit()
    assert len(history) == 2 and saved == []


def test_early_stopping(tmp_path):
    trainer = fusion_trainer(tmp_path, epochs=30, saved=[])
    trainer.config.patience = 1
    for group in trainer.optimizer.param_groups:
        group["base_lr"] = 0.0  # nothing changes, so nothing improves after the first epoch
    assert len(trainer.fit()) == 2


@pytest.mark.parametrize("kind", ["voice", "face", "fusion"])
def test_checkpoint_round_trip_gives_same_logits(tmp_path, kind):
    torch.manual_seed(0)
    if kind == "voice":
        model, inputs = VoiceModel(VoiceConfig(backbone="tiny")), {"input_values": torch.randn(2, 16000)}
    elif kind == "face":
        model, inputs = FaceModel(FaceConfig(backbone="tiny", weights=None)), {"pixels": torch.randn(2, 3, 3, 96, 96)}
    else:
        model = FusionModel(FusionConfig(voice_dim=8, face_dim=4))
        inputs = {"voice": torch.randn(2, 8), "face": torch.randn(2, 4), "present": torch.tensor([[1.0, 1.0], [1.0, 0.0]])}
    model.eval()
    save_checkpoint(model, kind, tmp_path / kind, {"audio": {"sample_rate": 16000}})
    loaded = load_model(tmp_path / kind)
    with torch.no_grad():
        assert torch.equal(model(**inputs), loaded(**inputs))
    assert loaded.checkpoint["labels"] == ["ANG", "DIS", "FEA", "HAP", "NEU", "SAD"]
    assert loaded.checkpoint["preprocessing"] == {"audio": {"sample_rate": 16000}}


def test_pickles_and_bad_checkpoints_are_refused(tmp_path):
    (tmp_path / "model.pt").write_bytes(b"not really a pickle")
    with pytest.raises(ModelError, match="refusing to load a pickle"):
        load_model(tmp_path / "model.pt")
    with pytest.raises(ModelError, match="no config.json"):
        load_model(tmp_path)
    (tmp_path / "config.json").write_text('{"kind": "voice", "model": {"backbone": "tiny"}}')
    with pytest.raises(ModelError, match="model.safetensors is missing"):
        load_model(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ModelError, match="unreadable"):
        load_model(tmp_path)
