"""The full-size path, offline: a random-init wav2vec2-base folder (``save_pretrained`` of the default
Wav2Vec2Config) and a random-init ResNet-50 state dict file, through fine-tuning, the frozen-feature path,
checkpoints, ``load_model``, the fast-path build and ``predict``. The real weights differ only in values."""
from __future__ import annotations

import json

import pytest
import torch

from emolib.cli.main import main
from emolib.fast.cache import bf16_front_end

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def full_size(tmp_path_factory):
    """(wav2vec2-base folder, ResNet-50 .safetensors file, a 3-actor synthetic CREMA-D tree)."""
    import torchvision
    from safetensors.torch import save_file
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    from emolib.data.synth.corpus import make_synthetic_cremad

    root = tmp_path_factory.mktemp("full")
    torch.manual_seed(0)
    Wav2Vec2Model(Wav2Vec2Config()).save_pretrained(root / "wav2vec2-base")
    resnet = torchvision.models.resnet50(weights=None).state_dict()
    save_file({name: tensor.contiguous() for name, tensor in resnet.items()}, str(root / "resnet50.safetensors"))
    data = make_synthetic_cremad(root / "data", actors=3, clips_per_emotion=1, workers=0, progress=False)
    return root / "wav2vec2-base", root / "resnet50.safetensors", data


def train(kind: str, data, models, cache, *options) -> None:
    argv = ["train", kind, "--data", str(data), "--out", str(models), "--cache", str(cache), "--epochs", "1", "--batch-size", "6",
            "--device", "cpu", "--workers", "0", *options]
    assert main(argv) == 0


def test_full_size_models_train_save_load_and_predict_fast(full_size, tmp_path, capsys):
    from emolib import load_model
    from emolib.infer.predictor import Predictor

    voice_dir, resnet, data = full_size
    models, cache = tmp_path / "models", tmp_path / "cache"
    train("voice", data, models, cache, "--backbone", str(voice_dir), "--freeze", "cnn")  # one step: the CNN frozen, the transformer fine-tuned
    train("face", data, models, cache, "--backbone", "resnet50", "--face-weights", str(resnet), "--freeze", "none")
    train("voice", data, tmp_path / "frozen", cache, "--backbone", str(voice_dir), "--freeze", "all")  # the CPU path: cached embeddings
    train("fusion", data, models, cache)
    voice, face = load_model(models / "voice"), load_model(models / "face")
    assert voice.encoder.config.hidden_size == 768 and voice.encoder.config.num_hidden_layers == 12 and voice.config.freeze == "cnn"
    assert face.feature_dim == 2048 and not any(parameter.requires_grad is False for parameter in face.encoder.parameters())
    assert json.loads((tmp_path / "frozen" / "voice" / "config.json").read_text())["model"]["freeze"] == "all"
    assert list((cache / "features").glob("voice-*.safetensors"))

    predictor = Predictor.from_dir(models)
    # int8 where the export reproduces eager fp32 (checked at build time), else the fp32 export: never eager; the voice's conv
    # front end in bf16 where this CPU has native bf16
    voice_variant = "int8-bf16" if bf16_front_end(voice) else "int8"
    assert predictor.fast is not None and predictor.fast.describe()["voice"] == voice_variant
    assert predictor.fast.describe()["face"] in ("int8", "fp32")
    clip = sorted((data / "VideoFlash").glob("*.flv"))[0]
    prediction = predictor.predict_files(video=clip, audio=data / "AudioWAV" / f"{clip.stem}.wav")
    assert prediction.source == "fusion" and abs(sum(prediction.probabilities.values()) - 1) < 1e-5
    eager = Predictor.from_dir(models, fast=False).predict_files(video=clip, audio=data / "AudioWAV" / f"{clip.stem}.wav")
    assert max(abs(prediction.fusion[e] - eager.fusion[e]) for e in eager.fusion) < 0.05


def test_face_weights_none_trains_resnet50_from_random_init(full_size, tmp_path):
    _, _, data = full_size
    train("face", data, tmp_path / "models", tmp_path / "cache", "--backbone", "resnet50", "--face-weights", "none", "--freeze", "all")
    config = json.loads((tmp_path / "models" / "face" / "config.json").read_text())
    assert config["model"]["weights"] is None and config["model"]["backbone"] == "resnet50"
