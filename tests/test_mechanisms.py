"""Synthetic mechanism checks of the recipe (docs/recipe.md): they show the mechanisms work, not what they do on CREMA-D.

1. Face: on the synthetic generator's temporal mode (the expression rises and falls, its apex in a minority of the
   frames), 16 frames with attention pooling beat 3 frames with mean pooling (trained the seed's way, one random
   frame per clip) by a clear margin on held-out actors.
2. Voice: with an encoder whose last layer carries nothing (its final LayerNorm zeroed: every clip gives the same
   last-layer states) and the emotion cue in the middle layers, a head on the last layer stays at chance while the
   learned layer weights (trained on the frozen cache of per-layer pooled states) find the cue.

Labels are the synthetic corpus's three cue groups of each modality (data.synth.emotions: FACE_PAIRS, VOICE_PAIRS),
which each modality can tell apart; chance is 1/3.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import Dataset

from emolib.cremad import parse_name
from emolib.data.datasets import FeatureDataset, VoiceDataset
from emolib.data.features import cached_features
from emolib.data.synth.corpus import make_actor, make_synthetic_cremad, plan_clips, synthesize_clip
from emolib.data.synth.emotions import FACE_PAIRS, VOICE_PAIRS
from emolib.data.synth.face import head_box
from emolib.models.nets import FaceConfig, FaceModel, VoiceConfig, VoiceModel
from emolib.train.fit import HeadOnly
from emolib.train.trainer import Trainer, TrainConfig
from emolib.transforms import AudioSettings, FaceSettings, face_pixels
from emolib.video import frame_indices

TRAIN_ACTORS, TEST_ACTORS = 10, 4
CROP = 40
CHANCE = 1 / 3


def group_of(stem: str, pairs) -> int:
    emotion = parse_name(stem).emotion
    return next(index for index, pair in enumerate(pairs) if emotion in pair)


class ClipFrames(Dataset):
    """Face crops (by the drawn head's known box) of each clip's evenly spaced frames -> pixels; when ``one_frame``
    (the seed's training), one random jittered frame per item, as emolib's FaceDataset does for a mean-pooling model."""

    def __init__(self, clips: list[tuple[np.ndarray, int]], settings: FaceSettings, one_frame: bool = False):
        self.clips, self.settings, self.one_frame = clips, settings, one_frame

    def __len__(self):
        return len(self.clips)

    def __getitem__(self, index):
        crops, label = self.clips[index]
        rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,)))) if self.one_frame else None
        if rng is not None:
            crops = crops[[rng.integers(len(crops))]]
        return {"pixels": face_pixels(crops, self.settings, rng), "label": torch.tensor(label)}


def face_clips(actors, frames: int) -> list[tuple[np.ndarray, int]]:
    import cv2

    clips = []
    for stem in plan_clips(actors, seed=0, clips_per_emotion=3):
        clip = synthesize_clip(stem, seed=0, temporal=True)
        x0, y0, width, height = head_box(make_actor(parse_name(stem).actor, 0).face)
        crops = [cv2.resize(clip.frames[index][y0 : y0 + height, x0 : x0 + width, ::-1], (CROP, CROP), interpolation=cv2.INTER_AREA)
                 for index in frame_indices(len(clip.frames), frames)]
        clips.append((np.stack(crops), group_of(stem, FACE_PAIRS)))
    return clips


def train_and_test(model, train_set, test_set, epochs: int, tmp_path, lr: float = 3e-3) -> float:
    config = TrainConfig(epochs=epochs, batch_size=16, lr=lr, encoder_lr=lr, patience=epochs, device="cpu")
    trainer = Trainer(model, train_set, test_set, config, tmp_path, lambda *_: None, progress=False)
    trainer.fit()
    return trainer.evaluate(test_set)["uar"]


def test_sixteen_frames_with_attention_beat_three_frames_mean_on_a_rising_and_falling_expression(tmp_path):
    train_actors = list(range(1001, 1001 + TRAIN_ACTORS))
    test_actors = list(range(1001 + TRAIN_ACTORS, 1001 + TRAIN_ACTORS + TEST_ACTORS))
    settings = FaceSettings(image_size=CROP)
    results = {}
    for frames, temporal in ((3, "mean"), (16, "attention")):
        torch.manual_seed(0)
        model = FaceModel(FaceConfig(backbone="tiny", weights=None, freeze="none", num_labels=3, temporal=temporal))
        train = ClipFrames(face_clips(train_actors, frames), settings, one_frame=temporal == "mean")
        test = ClipFrames(face_clips(test_actors, frames), settings)
        results[(frames, temporal)] = train_and_test(model, train, test, epochs=6, tmp_path=tmp_path / temporal)
    seed, best = results[(3, "mean")], results[(16, "attention")]
    print(f"face mechanism: 3 frames + mean UAR {seed:.3f}, 16 frames + attention UAR {best:.3f} (chance {CHANCE:.3f})")
    assert best >= seed + 0.15, results
    assert best >= 0.75, results


def test_weighted_layers_find_a_cue_the_last_layer_does_not_carry(tmp_path):
    data = make_synthetic_cremad(tmp_path / "voices", actors=TRAIN_ACTORS + TEST_ACTORS, clips_per_emotion=3, video=False, progress=False)
    stems = sorted(path.stem for path in (data / "AudioWAV").glob("*.wav"))
    rows = pd.DataFrame({"stem": stems, "audio_path": [str(data / "AudioWAV" / f"{stem}.wav") for stem in stems],
                         "label": [group_of(stem, VOICE_PAIRS) for stem in stems],
                         "actor": [parse_name(stem).actor for stem in stems]})
    test_rows = rows["actor"] > 1000 + TRAIN_ACTORS
    results = {}
    for layers in ("last", "weighted"):
        torch.manual_seed(0)
        model = VoiceModel(VoiceConfig(backbone="tiny", freeze="all", num_labels=3, layers=layers)).eval()
        blank = model.encoder.encoder.layers[-1].final_layer_norm
        with torch.no_grad():
            blank.weight.zero_()  # the last layer's output is its LayerNorm bias: the same for every clip
        model.checkpoint = {"preprocessing": {"audio": {}}}
        sets = []
        for part in (rows[~test_rows], rows[test_rows]):
            frozen, labels = cached_features(model, VoiceDataset(part.reset_index(drop=True), AudioSettings()), "voice", tmp_path / "cache",
                                             device="cpu", progress=False)
            sets.append(FeatureDataset({"features": frozen}, labels))
        assert sets[0].tensors["features"].dim() == (3 if layers == "weighted" else 2)  # weighted: per-layer pooled states are cached
        results[layers] = train_and_test(HeadOnly(model), sets[0], sets[1], epochs=30, tmp_path=tmp_path / layers, lr=1e-2)
    print(f"voice mechanism: last layer UAR {results['last']:.3f}, weighted layers UAR {results['weighted']:.3f}")
    assert results["last"] <= CHANCE + 0.05, results
    assert results["weighted"] >= CHANCE + 0.25, results
    weights = model.layer_weights.weights().detach()
    assert weights[-1] < weights[:-1].max(), weights  # the learned weights moved away from the empty layer
