"""Models: shapes, masked pooling, freezing, fusion with a missing modality, weights loading."""
from __future__ import annotations

import pytest
import torch

from emolib.models.backbones import build_face_encoder, tiny_resnet
from emolib.errors import ModelError
from emolib.models.nets import FaceConfig, FaceModel, FusionConfig, FusionModel, VoiceConfig, VoiceModel, drop_one_modality, masked_mean


def tiny_voice(**kwargs):
    torch.manual_seed(0)
    return VoiceModel(VoiceConfig(backbone="tiny", **kwargs)).eval()


def tiny_face(**kwargs):
    torch.manual_seed(0)
    return FaceModel(FaceConfig(backbone="tiny", weights=None, **kwargs)).eval()


def test_voice_model_shapes():
    model = tiny_voice()
    waves = torch.randn(3, 16000)
    assert model(waves).shape == (3, 6)
    assert model.features(waves).shape == (3, model.feature_dim)


def test_masked_mean_ignores_padding_frames():
    hidden = torch.randn(2, 5, 4)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    pooled = masked_mean(hidden, mask)
    assert torch.allclose(pooled[0], hidden[0, :3].mean(0))
    assert torch.allclose(pooled[1], hidden[1].mean(0))
    hidden[0, 3:] = 1e6
    assert torch.allclose(masked_mean(hidden, mask)[0], pooled[0])


def test_voice_features_use_the_attention_mask():
    model = tiny_voice()
    waves = torch.randn(1, 32000)
    full = torch.ones(1, 32000, dtype=torch.long)
    half = full.clone()
    half[:, 16000:] = 0
    with torch.no_grad():
        assert not torch.allclose(model.features(waves, full), model.features(waves, half))


def test_freeze_modes():
    assert all(not p.requires_grad for p in tiny_voice(freeze="all").encoder.parameters())
    cnn = tiny_voice(freeze="cnn")
    assert all(not p.requires_grad for p in cnn.encoder.feature_extractor.parameters())
    assert any(p.requires_grad for p in cnn.encoder.encoder.parameters())
    assert all(p.requires_grad for p in tiny_voice(freeze="none").parameters())
    frozen_face = tiny_face(freeze="all").train()
    assert not frozen_face.encoder.training and frozen_face.head.weight.requires_grad
    with pytest.raises(ModelError, match="freeze"):
        tiny_voice(freeze="some")


def test_face_model_averages_frames():
    model = tiny_face()
    clip = torch.randn(2, 3, 3, 224, 224)
    with torch.no_grad():
        per_clip = model.features(clip)
        per_frame = torch.stack([model.features(clip[:, index]) for index in range(3)], 1).mean(1)
    assert per_clip.shape == (2, model.feature_dim)
    assert torch.allclose(per_clip, per_frame, atol=1e-5)
    assert model(clip[:, 0]).shape == (2, 6)


def test_fusion_ignores_a_missing_modality():
    torch.manual_seed(0)
    model = FusionModel(FusionConfig(voice_dim=8, face_dim=4)).eval()
    voice, face = torch.randn(2, 8), torch.randn(2, 4)
    voice_only = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    with torch.no_grad():
        a = model(voice, face, voice_only)
        b = model(voice, torch.randn(2, 4) * 100, voice_only)
        both = model(voice, face)
    assert torch.allclose(a, b)
    assert not torch.allclose(a, both)


def test_modality_dropout_never_drops_both():
    torch.manual_seed(0)
    present = torch.ones(1000, 2)
    dropped = drop_one_modality(present, 0.5)
    assert (dropped.sum(1) >= 1).all()
    assert 0.35 < (dropped.sum(1) == 1).float().mean() < 0.65


def test_voice_backbone_from_local_directory(tmp_path):
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    from emolib.models.backbones import TINY_VOICE_CONFIG

    torch.manual_seed(1)
    saved = Wav2Vec2Model(Wav2Vec2Config(**TINY_VOICE_CONFIG))
    saved.save_pretrained(tmp_path / "w2v2")
    model = VoiceModel(VoiceConfig(backbone=str(tmp_path / "w2v2")), pretrained=True)
    for name, tensor in saved.state_dict().items():
        assert torch.equal(model.encoder.state_dict()[name], tensor), name
    assert model.config.encoder_config["hidden_size"] == TINY_VOICE_CONFIG["hidden_size"]


def test_offline_hub_name_fails_with_instructions():
    with pytest.raises(ModelError) as error:
        VoiceModel(VoiceConfig(backbone="facebook/wav2vec2-base"), pretrained=True)
    message = str(error.value)
    assert "--backbone" in message and "facebook/wav2vec2-base" in message and "\n" not in message


def test_offline_imagenet_weights_fail_with_instructions(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(ModelError, match="--face-weights"):
        build_face_encoder("resnet18", "IMAGENET1K_V1")


def test_face_weights_from_local_file(tmp_path):
    import torchvision
    from safetensors.torch import save_file

    torch.manual_seed(2)
    reference = torchvision.models.resnet18(weights=None)
    save_file(reference.state_dict(), str(tmp_path / "r18.safetensors"))
    torch.save(reference.state_dict(), tmp_path / "r18.pth")
    for name in ("r18.safetensors", "r18.pth"):
        encoder, dim = build_face_encoder("resnet18", str(tmp_path / name))
        assert dim == 512
        assert torch.equal(encoder.conv1.weight, reference.conv1.weight)


def test_face_weights_that_do_not_fit(tmp_path):
    from safetensors.torch import save_file

    save_file(tiny_resnet().state_dict(), str(tmp_path / "tiny.safetensors"))
    with pytest.raises(ModelError, match="do not fit"):
        build_face_encoder("resnet18", str(tmp_path / "tiny.safetensors"))
