"""The recipe options on tiny models: voice layers and pooling (wav2vec2 and WavLM), speech-only pooling, face temporal
pooling, OGM-GE, the late-fusion baseline, and the seed / best presets."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import WavLMConfig

from emolib.errors import EmolibError, ModelError
from emolib.models.backbones import TINY_VOICE_CONFIG
from emolib.models.nets import FaceConfig, FaceModel, FusionConfig, FusionModel, VoiceConfig, VoiceModel, speech_frames
from emolib.models.pooling import MAX_FACE_FRAMES, masked_mean
from emolib.train.balance import ALPHA, GradientBalancer
from emolib.train.late import fit_late_fusion
from emolib.train.options import ModelOptions
from emolib.train.presets import PRESETS, apply_recipe
from emolib.train.trainer import ConfigError, TrainConfig
from emolib.transforms import AudioSettings, voice_inputs

WAVLM_TINY = WavLMConfig(**{**TINY_VOICE_CONFIG, "num_buckets": 32, "max_bucket_distance": 64}).to_dict()


def voice(**kwargs):
    torch.manual_seed(0)
    return VoiceModel(VoiceConfig(backbone="tiny", **kwargs))


@pytest.mark.parametrize("encoder", ["wav2vec2", "wavlm"])
@pytest.mark.parametrize("layers", ["last", "weighted"])
@pytest.mark.parametrize("pooling", ["mean", "stats", "attentive-stats"])
def test_every_voice_layers_and_pooling_option_trains(encoder, layers, pooling):
    model = voice(layers=layers, pooling=pooling, freeze="none", encoder_config=WAVLM_TINY if encoder == "wavlm" else {}).train()
    assert type(model.encoder).__name__.lower().startswith(encoder)
    waves, mask = torch.randn(2, 8000), torch.ones(2, 8000, dtype=torch.long)
    mask[1, 5000:] = 0
    features = model.features(waves, mask)
    assert features.shape == (2, model.feature_dim) == (2, 64 if pooling == "mean" else 128)
    torch.nn.functional.cross_entropy(model(waves, mask), torch.tensor([0, 1])).backward()
    learned = [model.layer_weights.logits] if layers == "weighted" else []
    learned += list(model.attentive.parameters()) if pooling == "attentive-stats" else []
    assert all(parameter.grad is not None and parameter.grad.abs().sum() > 0 for parameter in learned)
    model.eval()
    assert torch.allclose(model.from_frozen(model.frozen_features(waves, mask)), model.features(waves, mask), atol=1e-5)


def test_the_seed_voice_model_is_the_plain_mean_of_the_last_layer():
    model = voice().eval()  # a config without the recipe fields (an earlier checkpoint) reads as last + mean
    waves = torch.randn(1, 8000)
    with torch.no_grad():
        expected = model.encoder(waves).last_hidden_state.mean(dim=1)
        assert torch.allclose(model.features(waves), expected, atol=1e-6)
    assert VoiceConfig().layers == "last" and VoiceConfig().pooling == "mean" and FaceConfig().temporal == "mean"
    assert AudioSettings().speech_only is False and PRESETS["seed"].frames == 3


def test_weighted_layers_turn_off_layerdrop_so_every_layer_is_there_in_training():
    model = voice(layers="weighted", freeze="none").train()
    model.encoder.config.layerdrop = 0.0
    assert voice(layers="weighted").encoder.config.layerdrop == 0.0
    for _ in range(5):
        model.features(torch.randn(2, 4000))  # with layerdrop a skipped layer would leave the stack short


def test_speech_only_pools_over_the_speech_frames_alone():
    model = voice().eval()
    waves, valid = torch.randn(1, 16000), torch.ones(1, 16000, dtype=torch.long)
    speech = torch.zeros(1, 16000, dtype=torch.long)
    speech[:, 4000:9000] = 1
    with torch.no_grad():
        hidden, mask = model.frame_states(waves, valid, speech)
        kept = speech_frames(speech, hidden.shape[2], model.frame_stride())
        assert 0 < int(mask.sum()) == int(kept.sum()) < hidden.shape[2]
        assert torch.allclose(model.features(waves, valid, speech), masked_mean(hidden[:, 0], kept), atol=1e-6)
        assert not torch.allclose(model.features(waves, valid, speech), model.features(waves, valid))


def test_voice_inputs_mark_the_speech_and_fall_back_to_all_audio_without_any():
    from emolib.data.synth.corpus import synthesize_clip

    speech = synthesize_clip("1001_IEO_ANG_HI", video=False).audio
    wave = np.concatenate([np.zeros(16000, np.float32), speech]).astype(np.float32)
    inputs = voice_inputs(wave, AudioSettings(speech_only=True))
    window_speech = inputs["speech_mask"].numpy()
    assert window_speech.sum() < inputs["attention_mask"].numpy().sum()
    assert window_speech[:8000].sum() == 0  # the silent second (its first half is inside the centre-cropped window)
    silent = voice_inputs(np.zeros(24000, np.float32), AudioSettings(speech_only=True))
    assert torch.equal(silent["speech_mask"], silent["attention_mask"])
    assert "speech_mask" not in voice_inputs(wave, AudioSettings())


@pytest.mark.parametrize("temporal", ["mean", "attention", "transformer"])
def test_every_face_temporal_option_trains(temporal):
    torch.manual_seed(0)
    model = FaceModel(FaceConfig(backbone="tiny", weights=None, temporal=temporal)).train()
    pixels = torch.randn(2, 5, 3, 32, 32)
    assert model.features(pixels).shape == (2, model.feature_dim)
    torch.nn.functional.cross_entropy(model(pixels), torch.tensor([0, 1])).backward()
    assert all(parameter.grad is not None for parameter in model.temporal.parameters())
    model.eval()
    frozen = model.frozen_features(pixels)
    assert frozen.shape == (2, 5, 128)  # the frozen cache keeps every frame
    assert torch.allclose(model.from_frozen(frozen), model.features(pixels), atol=1e-5)


def test_attention_over_frames_can_pick_one_frame_and_the_transformer_refuses_too_many():
    torch.manual_seed(0)
    model = FaceModel(FaceConfig(backbone="tiny", weights=None, temporal="attention")).eval()
    frames = torch.zeros(1, 4, 128)
    frames[0, 2] = 5.0
    with torch.no_grad():
        model.temporal.score[2].bias.zero_()
        model.temporal.score[2].weight.fill_(1.0)
        model.temporal.score[0].weight.copy_(torch.eye(128, 128)[: model.temporal.score[0].out_features] * 10)
        assert torch.allclose(model.from_frozen(frames), frames[:, 2], atol=1e-3)
    transformer = FaceModel(FaceConfig(backbone="tiny", weights=None, temporal="transformer"))
    with pytest.raises(ModelError, match="at most"):
        transformer.frozen_features(torch.zeros(1, MAX_FACE_FRAMES + 1, 3, 16, 16))


def test_ogm_ge_slows_the_dominant_modality_and_reports_it():
    torch.manual_seed(0)
    model = FusionModel(FusionConfig(voice_dim=4, face_dim=3, hidden_dim=8, num_labels=2))
    batch = {"voice": torch.randn(6, 4), "face": torch.randn(6, 3), "present": torch.ones(6, 2)}
    labels = torch.tensor([0, 1, 0, 1, 0, 1])
    torch.nn.functional.cross_entropy(model(**batch), labels).backward()
    before = model.mlp[0].weight.grad.clone()
    balancer = GradientBalancer(model, noise=False)  # OGM alone: the scaling, exactly
    balancer._scores = lambda *_: {"voice": 3.0, "face": 1.0}  # voice three times as sure as face
    coefficients = balancer.step(batch, labels)
    assert coefficients == {"voice": pytest.approx(1 - np.tanh(ALPHA * 3)), "face": 1.0}
    after = model.mlp[0].weight.grad
    assert torch.allclose(after[:, :4], before[:, :4] * coefficients["voice"]) and torch.equal(after[:, 4:], before[:, 4:])
    assert balancer.epoch_summary() == {"balance_ratio": 3.0, "dominant": "voice"}
    noisy = GradientBalancer(model)  # OGM-GE: noise of each gradient's own spread on both modalities
    noisy._scores = lambda *_: {"voice": 1.0, "face": 4.0}
    kept = model.mlp[0].weight.grad.clone()
    assert noisy.step(batch, labels)["face"] == pytest.approx(1 - np.tanh(ALPHA * 4))
    assert not torch.allclose(model.mlp[0].weight.grad[:, :4], kept[:, :4]) and torch.equal(model.mlp[0].weight.grad[:, 7:], kept[:, 7:])
    real = GradientBalancer(model)._scores(batch, labels)
    assert set(real) == {"voice", "face"} and all(0 < value <= 6 for value in real.values())


def test_ogm_ge_is_for_the_fusion_model_only(tmp_path):
    from emolib.data.datasets import FeatureDataset
    from emolib.train.trainer import Trainer

    data = FeatureDataset({"pixels": torch.randn(4, 3, 16, 16)}, torch.tensor([0, 1, 0, 1]))
    face = FaceModel(FaceConfig(backbone="tiny", weights=None))
    with pytest.raises(ConfigError, match="fusion"):
        Trainer(face, data, data, TrainConfig(balance="ogm-ge", device="cpu"), tmp_path, lambda *_: None)
    with pytest.raises(ConfigError, match="balance"):
        TrainConfig(balance="loud")


def test_late_fusion_weighs_the_informative_modality_and_beats_each_alone():
    rng = np.random.default_rng(0)
    labels = torch.from_numpy(rng.integers(0, 3, 300))
    onehot = torch.nn.functional.one_hot(labels, 3).float()
    voice = torch.from_numpy(rng.normal(size=(300, 3))).float() + 0.8 * onehot
    face = torch.from_numpy(rng.normal(size=(300, 3))).float() + 2.0 * onehot
    present = torch.ones(300, 2)
    late = fit_late_fusion(voice, face, present, labels)
    assert late["weights"][1] > late["weights"][0] > 0 and late["fitted_on"] == "val" and late["clips"] == 300
    from emolib.models.pooling import late_fusion_logits

    fused = late_fusion_logits(voice, face, present, torch.tensor(late["weights"]), torch.tensor(late["bias"])).argmax(1)
    accuracy = {name: float((logits.argmax(1) == labels).float().mean()) for name, logits in (("voice", voice), ("face", face))}
    assert float((fused == labels).float().mean()) > max(accuracy.values())


def test_presets_fill_only_what_the_user_left_unset():
    best = apply_recipe(ModelOptions(recipe="best"))
    assert (best.layers, best.pooling, best.speech_only, best.frames, best.temporal, best.balance) == (
        "weighted", "attentive-stats", True, 16, "attention", "none")
    assert apply_recipe(ModelOptions(recipe="best", frames=8, speech_only=False)).frames == 8
    assert apply_recipe(ModelOptions(recipe="best", speech_only=False)).speech_only is False
    assert apply_recipe(ModelOptions()).recipe == "seed" and apply_recipe(ModelOptions()).pooling == "mean"
    assert apply_recipe(ModelOptions(recipe="best", freeze="all")).pooling == "stats"  # attention over frames needs the frames
    with pytest.raises(EmolibError, match="unknown recipe"):
        apply_recipe(ModelOptions(recipe="fastest"))


def test_attentive_pooling_on_cached_features_is_refused_in_one_line(tmp_path):
    from emolib.train.recipes import train_model

    with pytest.raises(ModelError, match="--freeze all") as error:
        train_model("voice", None, tmp_path, "tiny", freeze="all", recipe=ModelOptions(pooling="attentive-stats"))
    assert "\n" not in str(error.value)


def test_joint_fine_tuning_saves_its_encoders_which_then_serve_the_folder(trained_demo, tmp_path, capsys):
    import shutil

    from emolib.cli.main import main
    from emolib.files import file_digest
    from emolib.infer.predictor import Predictor
    from emolib.models.checkpoint import find_models, read_checkpoint_config

    models = tmp_path / "models"
    for kind in ("voice", "face"):
        shutil.copytree(trained_demo / "models" / kind, models / kind)
    assert main(["train", "voice", "--finetune", "--data", str(trained_demo / "cremad-synth"), "--out", str(models)]) == 2
    assert "apply to `emolib train fusion`" in capsys.readouterr().err
    code = main(["train", "fusion", "--finetune", "--balance", "ogm-ge", "--epochs", "1", "--data", str(trained_demo / "cremad-synth"),
                 "--out", str(models), "--cache", str(trained_demo / "cache"), "--voice-lr", "1e-3", "--face-lr", "2e-3"])
    assert code == 0
    config = read_checkpoint_config(models / "fusion")[1]
    assert config["finetuned"] and (config["voice_lr"], config["face_lr"]) == (1e-3, 2e-3) and config["recipe"] == "seed"
    found = find_models(models)
    assert found["voice"] == (models / "fusion" / "voice").resolve() and found["face"] == (models / "fusion" / "face").resolve()
    for kind in ("voice", "face"):  # the encoders moved; the originals are untouched
        assert file_digest(models / "fusion" / kind / "model.safetensors") != file_digest(models / kind / "model.safetensors")
        assert file_digest(models / kind / "model.safetensors") == file_digest(trained_demo / "models" / kind / "model.safetensors")
    history = json.loads((models / "fusion" / "history.json").read_text())
    assert history[0]["dominant"] in ("voice", "face") and history[0]["train_seconds"] > 0
    predictor = Predictor.from_dir(models)
    assert predictor.voice.checkpoint_dir == (models / "fusion" / "voice").resolve()
    # the late-fusion baseline, fitted after training on the fine-tuned encoders' validation logits, and reported beside the fusion model
    late = config["late_fusion"]
    assert late["fitted_on"] == "val" and late["clips"] > 0 and len(late["weights"]) == 2 and late["weights"] != [1.0, 1.0]
    reports = tmp_path / "reports"
    assert main(["evaluate", "--data", str(trained_demo / "cremad-synth"), "--models", str(models), "--out", str(reports),
                 "--cache", str(trained_demo / "cache")]) == 0
    predictions = pd.read_csv(reports / "predictions.csv")
    assert predictions["late_pred"].notna().sum() == predictions["fusion_pred"].notna().sum() > 0


def test_frozen_face_attention_learns_on_cached_per_frame_embeddings_and_evaluate_checks_the_recipe(trained_demo, tmp_path, capsys):
    from safetensors.torch import load_file

    from emolib.cli.main import main

    data, cache, models = trained_demo / "cremad-synth", tmp_path / "cache", tmp_path / "models"
    shutil.copytree(trained_demo / "cache" / "faces", cache / "faces")  # the demo's 3-frame crops
    args = ["train", "face", "--data", str(data), "--out", str(models), "--backbone", "tiny", "--freeze", "all", "--temporal", "attention",
            "--epochs", "2", "--cache", str(cache), "--device", "cpu"]
    assert main(args) == 0
    cached = [load_file(str(path))["features"] for path in (cache / "features").glob("face-*.safetensors")]
    assert cached and all(features.dim() == 3 and features.shape[1:] == (3, 128) for features in cached)  # per-frame embeddings
    config = json.loads((models / "face" / "config.json").read_text())
    assert config["model"]["temporal"] == "attention" and config["recipe"] == "seed"
    assert "| seed (3 frames, attention over frames) |" in (models / "README.md").read_text()  # the model card names the recipe
    capsys.readouterr()
    evaluate = ["evaluate", "--data", str(data), "--models", str(models / "face"), "--out", str(tmp_path / "reports"), "--cache", str(cache)]
    assert main([*evaluate, "--recipe", "best"]) == 2
    assert "trained with the seed recipe, not best" in capsys.readouterr().err
    assert main(evaluate) == 0


def test_whole_clip_face_training_keeps_to_64_crops_a_step_unless_the_batch_was_chosen():
    from emolib.train.options import DEFAULTS, whole_clip_batches

    train = whole_clip_batches(DEFAULTS["face"], 16)
    assert (train.batch_size, train.accumulation) == (4, 8)  # 32 clips per optimizer step, 64 crops per forward pass
    chosen = TrainConfig(batch_size=16)
    assert whole_clip_batches(chosen, 16) == chosen and whole_clip_batches(DEFAULTS["face"], 1) == DEFAULTS["face"]
