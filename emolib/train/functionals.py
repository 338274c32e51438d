"""Training the eGeMAPS voice model (``--backbone egemaps``): openSMILE's functionals of every clip, computed once and cached,
standardised per speaker (or by the corpus), then the small head on the shared training loop. Seconds on a CPU.

The corpus statistics (the training clips' mean and standard deviation) are stored in the model: they stand in where a
speaker's own are not known (one ``predict`` on one file). Each training and validation speaker is standardised by their
own clips, as evaluation standardises each test speaker by theirs (``egemaps.by_speaker``).
"""
from __future__ import annotations

from dataclasses import asdict, replace

import torch

from ..data.datasets import FeatureDataset, VoiceDataset, data_identity, select_split, training_record
from ..data.features import cached_features
from ..egemaps import by_speaker, opensmile_version
from ..models.egemaps import EgemapsConfig, EgemapsModel
from ..transforms import AudioSettings
from .distributed import is_main_process
from .fit import _labelled, fit, speech_rule
from .trainer import TrainConfig

SPLITS = ("train", "val")


def train_egemaps(manifest, out_dir, config: EgemapsConfig, train: TrainConfig, cache_dir=None, progress: bool = True, restart: bool = False,
                  labels=None, about: dict | None = None, recipe: str = "seed"):
    """Train the eGeMAPS voice model on the manifest's train split, selecting on val; returns the history."""
    version = opensmile_version()
    manifest, labels = _labelled(manifest, labels)
    torch.manual_seed(train.seed)
    model = EgemapsModel(replace(config, num_labels=len(labels), opensmile_version=version))
    audio = AudioSettings(normalize=False)  # loudness is one of the parameters: the window keeps its level
    sets = {split: VoiceDataset(select_split(manifest, split), audio) for split in SPLITS}
    raw = {split: cached_features(model, sets[split], "voice", cache_dir, {"audio": asdict(audio)}, "cpu", progress) for split in SPLITS}
    model.set_corpus_statistics(raw["train"][0])
    standardised = {}
    for split in SPLITS:
        features, _ = raw[split]
        if model.speaker_norm:
            values, report = by_speaker(features.numpy(), list(sets[split].rows["actor"]), model.mean.numpy(), model.std.numpy())
            if report["by_corpus"] and is_main_process():
                print(f"voice: {split} speakers with fewer than 5 clips standardised by the corpus: {', '.join(report['by_corpus'])}")
            standardised[split] = torch.from_numpy(values)
        else:
            standardised[split] = model.standardise(features)

    def make_dataset(split, augment):
        return FeatureDataset({"features": standardised[split]}, raw[split][1])

    extra = {"recipe": recipe, "speech": speech_rule(manifest)}
    return fit(model, "voice", make_dataset, train, out_dir, {"audio": asdict(audio)}, cache_dir, extra, progress, data_identity(manifest),
               restart, labels, training_record(manifest, about))
