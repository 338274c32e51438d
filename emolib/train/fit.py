"""Training the voice, face and fusion models with the one Trainer.

Two paths: fine-tuning (``freeze`` none or cnn; the GPU path) and frozen encoders whose
embeddings are extracted once and cached (``freeze="all"``; the CPU path). The fusion model
always trains on cached embeddings of the trained voice and face models.
"""
from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import asdict, replace
from pathlib import Path

import torch
import torch.nn as nn

from ..cremad import EMOTIONS
from ..data.datasets import FaceDataset, FeatureDataset, PairedDataset, VoiceDataset, data_identity, select_split, speech_sample, training_record
from ..data.face_cache import face_index
from ..data.features import SETTINGS_KEYS, cached_features, paired_features
from ..errors import DataError, ModelError
from ..fast.features import feature_extractor
from ..files import file_digest, remove_stale_temporaries
from ..locks import folder_lock
from ..labels import encode_labels, label_order
from ..models.checkpoint import CONFIG_FILE, WEIGHTS_FILE, checkpoint_labels, encoder_lineage, init_from, load_model, save_checkpoint
from ..models.joint import JointFusion
from ..models.nets import FaceConfig, FaceModel, FusionConfig, FusionModel, VoiceConfig, VoiceModel
from ..speech import CHECK_CLIPS, default_rule
from ..transforms import AudioSettings, FaceSettings
from .distributed import is_main_process
from .late import fit_on_validation, record_after_finetuning
from .options import train_config
from .presets import recipe_of
from .resume import RESUME_FILE
from .trainer import HISTORY_FILE, Trainer, TrainConfig

RUN_FILES = (RESUME_FILE, WEIGHTS_FILE, CONFIG_FILE, HISTORY_FILE)
SEED_MODEL = {"layers": "last", "pooling": "mean", "temporal": "mean"}
SEED_PREPROCESSING = {"speech_only": False}
NOT_IN_FINGERPRINT = ("recipe", "late_fusion", "speech")  # recorded, but not what identifies a run: the recipe's options are in the model config and
# preprocessing, the late-fusion weights follow from the data and the encoders (so runs of earlier versions still resume)
FAST_FOLDER = "fast"


class HeadOnly(nn.Module):
    """Wraps a model whose encoder is frozen so that it trains on its cached ``frozen_features``: the layer weights or
    temporal pooling (``from_frozen``) and the head learn."""

    def __init__(self, model, standardised: bool = False):
        super().__init__()
        self.model, self.standardised = model, standardised

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        embed = self.model.from_standardised if self.standardised else self.model.from_frozen
        return self.model.classify(embed(features))


def fit(model, kind: str, make_dataset, train: TrainConfig, out_dir, preprocessing: dict, cache_dir=None, extra: dict | None = None,
        progress: bool = True, data: str = "", restart: bool = False, labels=EMOTIONS, record: dict | None = None, save=None):
    """Train ``model`` with the shared loop; ``make_dataset(split, augment)`` builds its datasets.

    ``labels`` is the label set of the model's outputs and ``record`` what the training data was
    (``datasets.training_record``); both are saved in its checkpoint. Holds ``out_dir``'s lock for the whole run (a second run into it stops with one line). ``data``
    (``datasets.data_identity``) with the model config, preprocessing and ``extra`` identify the
    run: a saved state of another run is refused, not resumed. ``restart`` first deletes the
    folder's checkpoint, history and resume state. Returns the per-epoch history; the best model
    (by validation UAR) is saved in ``out_dir`` (``save(metrics)`` writes it instead, when given).
    """
    out_dir = Path(out_dir)
    main = is_main_process()  # under a launcher, rank 0 holds the lock and cleans up for all processes
    with folder_lock(out_dir, f"training the {kind} model") if main else contextlib.nullcontext():
        if main:
            remove_stale_temporaries(out_dir)
        if restart and main:
            clear_run(out_dir)

        def save_best(trained, metrics):
            if save is not None:
                return save(metrics)
            save_checkpoint(model, kind, out_dir, preprocessing, {"val": metrics, "training": asdict(train), **(extra or {}), "data": record or {}},
                            labels)

        if hasattr(model, "from_standardised"):  # the eGeMAPS voice model: its caller made the standardised functionals
            trainable = HeadOnly(model, standardised=True)
            sets = [make_dataset("train", True), make_dataset("val", False)]
        elif getattr(model.config, "freeze", None) == "all":
            trainable = HeadOnly(model)
            sets = [_feature_dataset(model, make_dataset(split, False), kind, cache_dir, preprocessing, train.device, progress) for split in ("train", "val")]
        else:
            trainable = model
            sets = [make_dataset("train", True), make_dataset("val", False)]
        for name, dataset in zip(("train", "val"), sets):
            if len(dataset) == 0:
                raise DataError(f"the {name} split has no usable {kind} clips; check the manifest and the data folders")
        recorded = {name: value for name, value in (extra or {}).items() if name not in NOT_IN_FINGERPRINT}
        fingerprint = {"kind": kind, "data": data, "model": _without_seed_defaults(asdict(model.config), SEED_MODEL),
                       "preprocessing": {key: _without_seed_defaults(value, SEED_PREPROCESSING) for key, value in preprocessing.items()}, "extra": recorded}
        if tuple(labels) != EMOTIONS:  # runs of earlier emolib versions (CREMA-D's labels) keep their fingerprint
            fingerprint["labels"] = list(labels)
        return Trainer(trainable, sets[0], sets[1], train, out_dir, save_best, progress=progress, fingerprint=fingerprint).fit()


def _without_seed_defaults(values, defaults: dict):
    """``values`` without the recipe options at their seed value: a run of a version before the recipe options keeps its fingerprint."""
    if not isinstance(values, dict):
        return values
    return {name: value for name, value in values.items() if not (name in defaults and value == defaults[name])}


def clear_run(out_dir) -> None:
    """Delete a model folder's checkpoint, history, resume state and fast files (``--restart``)."""
    out_dir = Path(out_dir)
    for name in RUN_FILES:
        (out_dir / name).unlink(missing_ok=True)
    shutil.rmtree(out_dir / FAST_FOLDER, ignore_errors=True)
    shutil.rmtree(out_dir / "resume", ignore_errors=True)  # the resume folder of emolib before 0.2


def _feature_dataset(model, dataset, kind, cache_dir, preprocessing, device, progress):
    features, labels = cached_features(model, dataset, kind, cache_dir, preprocessing, device, progress, feature_extractor(device))
    return FeatureDataset({"features": features}, labels)


def train_voice(manifest, out_dir, config: VoiceConfig, train: TrainConfig, audio: AudioSettings | None = None, cache_dir=None, progress: bool = True,
                restart: bool = False, labels=None, init=None, about: dict | None = None, recipe: str = "seed"):
    """Train the wav2vec2 voice model on the manifest's train split, selecting on val.

    ``labels``: the label set (default: the manifest's, ``labels.label_order``); ``init``: a voice
    checkpoint whose encoder (and audio settings) to start from, with a new head (``--init-from``);
    ``about``: the data's name, layout and protocol, for the checkpoint's record; ``recipe``: the preset the options came
    from (``presets``), recorded in the checkpoint.
    """
    if config.freeze == "all" and config.pooling == "attentive-stats":
        raise ModelError("--pooling attentive-stats learns over the encoder's frames, which --freeze all does not keep "
                         "(it trains on cached pooled features); use --pooling stats, or fine-tune (--freeze cnn)")
    torch.manual_seed(train.seed)
    manifest, labels = _labelled(manifest, labels)
    model, source = _new_or_fine_tuned("voice", VoiceModel, config, labels, init)
    audio = AudioSettings.of(source) if source else audio or AudioSettings()

    def make_dataset(split, augment):
        return VoiceDataset(select_split(manifest, split), audio, train=augment)

    recipe = recipe_of(source.checkpoint) if source is not None else recipe  # a fine-tuned checkpoint keeps its source's architecture
    return fit(model, "voice", make_dataset, train, out_dir, {"audio": asdict(audio)}, cache_dir,
               {**_extra(init, out_dir, recipe), "speech": speech_rule(manifest)}, progress, data_identity(manifest), restart, labels,
               training_record(manifest, about))


def speech_rule(manifest) -> dict:
    """The no-speech rule a new voice model stores (``speech.default_rule`` on a sample of its training clips); the training log
    says which and why."""
    rule, why = default_rule(speech_sample(manifest, CHECK_CLIPS))
    if is_main_process():
        print(f"voice: {why}")
    return rule


def train_face(manifest, out_dir, config: FaceConfig, train: TrainConfig, face: FaceSettings | None = None, cache_dir=None, workers: int | None = None,
               progress: bool = True, restart: bool = False, labels=None, init=None, about: dict | None = None, recipe: str = "seed"):
    """Train the ResNet face model on cached face crops of the train split, selecting on val.

    ``face`` (crop size, frames, margin, detector) is stored in the checkpoint; every inference path reads it back.
    ``labels``, ``init``, ``about`` and ``recipe`` as in ``train_voice`` (with ``init``, the face settings are the init checkpoint's).
    A model with temporal attention trains on whole clips (every frame, each jittered); a mean-pooling one on one random frame.
    """
    torch.manual_seed(train.seed)
    manifest, labels = _labelled(manifest, labels)
    model, source = _new_or_fine_tuned("face", FaceModel, config, labels, init)
    face = FaceSettings.of(source) if source else face or FaceSettings()
    faces = face_index(manifest, cache_dir, face, workers, progress)

    def make_dataset(split, augment):
        return FaceDataset(select_split(manifest, split), faces, face, train=augment, whole_clips=model.config.temporal != "mean")

    recipe = recipe_of(source.checkpoint) if source is not None else recipe
    return fit(model, "face", make_dataset, train, out_dir, {"face": asdict(face)}, cache_dir, _extra(init, out_dir, recipe), progress,
               data_identity(manifest), restart, labels, training_record(manifest, about))


def _new_or_fine_tuned(kind: str, model_class, config, labels, init):
    """A new ``kind`` model over ``labels`` and None; or, with a checkpoint folder ``init``, that checkpoint's encoder
    under a new head (``checkpoint.init_from``) and the loaded checkpoint, whose preprocessing settings the new model keeps."""
    if not init:
        return model_class(replace(config, num_labels=len(labels)), pretrained=True), None
    source = load_model(init)
    return init_from(source, kind, labels, freeze=config.freeze), source


def _labelled(manifest, labels):
    """``manifest`` encoded against ``labels`` (default: its own label set) and that label set."""
    labels = label_order(manifest["emotion"], labels, "training data")
    return encode_labels(manifest, labels, "training data"), labels


def _extra(init, out_dir, recipe: str) -> dict:
    """What a voice or face checkpoint records beside its config: its recipe and the checkpoint it started from."""
    return {"recipe": recipe, **_init_record(init, out_dir)}


def _init_record(init, out_dir) -> dict:
    """What a checkpoint records about the checkpoint it was fine-tuned from."""
    if not init:
        return {}
    weights = Path(init) / WEIGHTS_FILE
    return {"init_from": os.path.relpath(Path(init).absolute(), Path(out_dir).absolute()), "init_sha256": file_digest(weights)}


def train_fusion(manifest, out_dir, voice_dir, face_dir, train: TrainConfig, hidden_dim: int = 256, cache_dir=None, workers: int | None = None,
                 progress: bool = True, restart: bool = False, about: dict | None = None, recipe: str = "seed", finetune: bool = False,
                 voice_lr: float | None = None, face_lr: float | None = None):
    """Train the fusion MLP on the trained voice and face models' embeddings of paired clips (``train.balance``:
    OGM-GE gradient balancing), and fit the late-fusion baseline (``train.late``) on the validation clips; its
    weights are recorded in the fusion checkpoint (``late_fusion``) and reported beside it. ``finetune``: train both
    encoders with the fusion head instead (``train_joint``).

    The checkpoint records where the encoders are and the sha256 of their weights, so a fusion
    model is never used beside encoders it was not trained on (``models.checkpoint.find_models``).
    """
    voice, face = load_model(voice_dir), load_model(face_dir)
    labels = checkpoint_labels(voice)
    if checkpoint_labels(face) != labels:
        raise ModelError(f"{face_dir}: its labels {list(checkpoint_labels(face))} differ from the voice model's {list(labels)}; "
                         f"train both on the same label set before the fusion model")
    manifest = encode_labels(manifest, labels, "fusion training data")
    faces = face_index(manifest, cache_dir, FaceSettings.of(face), workers, progress)
    torch.manual_seed(train.seed)
    model = FusionModel(FusionConfig(voice.feature_dim, face.feature_dim, hidden_dim=hidden_dim, num_labels=len(labels)))
    preprocessing = {**voice.checkpoint["preprocessing"], **face.checkpoint["preprocessing"]}
    if finetune:  # each encoder at its own training's encoder rate unless given
        return train_joint(manifest, out_dir, voice, face, model, faces, train, preprocessing, labels, cache_dir, progress, restart, about, recipe,
                           voice_lr or train_config("voice", voice.config.backbone).encoder_lr,
                           face_lr or train_config("face", face.config.backbone).encoder_lr)
    extractor = feature_extractor(train.device)
    made = {}  # each split's embeddings once: the late-fusion fit and the training loop share the validation set

    def make_dataset(split, augment):
        if split not in made:
            tensors, split_labels, _ = paired_features(manifest, split, voice, face, faces, cache_dir, train.device, progress, extractor)
            made[split] = FeatureDataset(tensors, split_labels)
        return made[split]

    val = make_dataset("val", False)
    late = fit_on_validation(voice, face, val.tensors, val.labels)
    extra = {"voice_checkpoint": os.path.relpath(voice_dir, out_dir), "face_checkpoint": os.path.relpath(face_dir, out_dir),
             **encoder_lineage(voice_dir, face_dir), "recipe": recipe, "late_fusion": late}

    return fit(model, "fusion", make_dataset, train, out_dir, preprocessing, cache_dir, extra, progress,
               data=data_identity(manifest), restart=restart, labels=labels, record=training_record(manifest, about))


def train_joint(manifest, out_dir, voice, face, fusion, faces, train: TrainConfig, preprocessing: dict, labels, cache_dir, progress, restart,
                about, recipe, voice_lr: float, face_lr: float):
    """``emolib train fusion --finetune``: the voice and face models (their encoders at ``voice_lr`` and ``face_lr``, frozen
    parts staying frozen) and a new fusion head trained together on paired clips (``joint.JointFusion``).

    The best epoch (validation UAR of the fusion head) is saved as three checkpoints: ``out_dir/voice`` and ``out_dir/face``
    (the fine-tuned models with their heads) and ``out_dir`` (the fusion head, linked to them by path and sha256). A
    fine-tuned fusion model brings its own encoders (``checkpoint.find_models``): they replace the models folder's
    voice/ and face/ for every prediction from that folder.
    """
    out_dir = Path(out_dir)
    source = {"voice": voice.checkpoint_dir, "face": face.checkpoint_dir}
    whole_clips = face.config.temporal != "mean"
    model = JointFusion(voice, face, fusion, voice_lr, face_lr)
    audio_settings, face_settings = AudioSettings.of(voice), FaceSettings.of(face)

    def make_dataset(split, augment):
        return PairedDataset(select_split(manifest, split), faces, audio_settings, face_settings, train=augment, whole_clips=whole_clips)

    record = training_record(manifest, about)
    extra = {"finetuned": True, "voice_lr": voice_lr, "face_lr": face_lr, "recipe": recipe,
             "finetuned_from": {kind: file_digest(Path(folder) / WEIGHTS_FILE) for kind, folder in source.items()}}

    def save(metrics):
        common = {"training": asdict(train), "data": record, "recipe": recipe}
        for kind, part in (("voice", voice), ("face", face)):  # the validation metrics are the fusion head's: recorded as such
            save_checkpoint(part, kind, out_dir / kind, {SETTINGS_KEYS[kind]: part.checkpoint["preprocessing"][SETTINGS_KEYS[kind]]},
                            {**common, "finetuned_with": "fusion", "fusion_val": metrics}, labels)
        links = {"voice_checkpoint": "voice", "face_checkpoint": "face", **encoder_lineage(out_dir / "voice", out_dir / "face")}
        save_checkpoint(fusion, "fusion", out_dir, preprocessing, {"val": metrics, **common, **extra, **links}, labels)

    history = fit(model, "fusion", make_dataset, train, out_dir, preprocessing, cache_dir, extra, progress, data_identity(manifest), restart,
                  labels, record, save)
    if is_main_process():  # the late-fusion baseline of the encoders as saved (they moved in training)
        record_after_finetuning(out_dir, manifest, faces, cache_dir, train.device, progress)
    return history
