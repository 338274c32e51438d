"""The benchmark's inputs: full-size random-init checkpoints, live inputs (synthetic speech + a frame), a small synthetic data set."""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..audio import SAMPLE_RATE, WINDOW_SECONDS
from ..files import cache_root
from ..train.presets import PRESETS, SEED, check_recipe, recipe_of

LIVE_STEMS = (("1001_DFA_ANG_HI", "1001_IEO_HAP_HI"), ("1002_TIE_SAD_MD", "1002_ITS_NEU_XX"),
              ("1003_WSI_FEA_HI", "1003_MTI_DIS_LO"), ("1004_IWL_HAP_MD", "1004_TSI_ANG_XX"))
WARMUP = 2


def default_work() -> Path:
    return cache_root() / "bench"


# ---------------------------------------------------------------- inputs and models


def full_size_models(root, size: str = "full", recipe: str = SEED) -> Path:
    """Random-init wav2vec2-base + ResNet-50 + fusion checkpoints in ``root`` built as ``recipe`` (``train.presets``) makes
    them: its voice layers and pooling, speech-only setting, face frames and temporal pooling. Written once, then reused
    while the fusion model's recorded encoders are the ones beside it and the voice and face settings and the recipe are
    today's. ``size="tiny"``: the same path with tiny encoders, for tests."""
    import torch
    from transformers import Wav2Vec2Config

    from ..models.backbones import DEFAULT_VOICE_BACKBONE, TINY
    from ..models.checkpoint import CONFIG_FILE, MODEL_KINDS, encoder_lineage, fusion_lineage, save_checkpoint
    from ..models.nets import FaceConfig, FaceModel, FusionConfig, FusionModel, VoiceConfig, VoiceModel
    from ..transforms import AudioSettings, FaceSettings

    options = PRESETS[check_recipe(recipe)]
    root = Path(root) / size if size != "full" else Path(root)
    audio = {"audio": asdict(AudioSettings(speech_only=options.speech_only))}
    faces = {"face": asdict(FaceSettings(frames=options.frames))}
    voice_options = {"layers": options.layers, "pooling": options.pooling}
    if all((root / kind / CONFIG_FILE).is_file() for kind in MODEL_KINDS) and not fusion_lineage({kind: root / kind for kind in MODEL_KINDS}):
        configs = {kind: json.loads((root / kind / CONFIG_FILE).read_text()) for kind in ("voice", "face")}
        if configs["voice"]["preprocessing"] == audio and configs["face"]["preprocessing"] == faces \
                and all(recipe_of(config) == recipe for config in configs.values()):  # made with today's settings
            return root
    torch.manual_seed(0)
    if size == "full":
        voice = VoiceModel(VoiceConfig(backbone=DEFAULT_VOICE_BACKBONE, encoder_config=Wav2Vec2Config().to_dict(), freeze="none",
                                       **voice_options))
        face = FaceModel(FaceConfig(backbone="resnet50", weights=None, temporal=options.temporal))
    else:
        voice = VoiceModel(VoiceConfig(backbone=TINY, freeze="none", **voice_options))
        face = FaceModel(FaceConfig(backbone=TINY, weights=None, temporal=options.temporal))
    fusion = FusionModel(FusionConfig(voice.feature_dim, face.feature_dim))
    named = {"recipe": recipe}
    save_checkpoint(voice, "voice", root / "voice", audio, named)
    save_checkpoint(face, "face", root / "face", faces, named)
    save_checkpoint(fusion, "fusion", root / "fusion", {**audio, **faces},
                    {"voice_checkpoint": "../voice", "face_checkpoint": "../face", **encoder_lineage(root / "voice", root / "face"), **named})
    return root


def live_inputs(index: int, seconds: float = WINDOW_SECONDS):
    """(audio: ``seconds`` of 16 kHz synthetic speech, frame: a 480x360 RGB camera-like frame with a face)."""
    import cv2

    from ..data.synth.corpus import synthesize_clip

    first, second = (synthesize_clip(stem) for stem in LIVE_STEMS[index % len(LIVE_STEMS)])
    samples = int(seconds * SAMPLE_RATE)
    audio = np.concatenate([first.audio, second.audio, first.audio])[:samples].astype(np.float32)
    frame = cv2.cvtColor(first.frames[len(first.frames) // 2], cv2.COLOR_BGR2RGB)
    return audio, frame


def synthetic_data(work: Path, actors: int = 4) -> Path:
    from ..data.synth.corpus import make_synthetic_cremad

    root = work / "cremad-synth"
    if not (root / "README.txt").is_file():
        make_synthetic_cremad(root, actors=actors, progress=False)
    return root


# ---------------------------------------------------------------- measurements


