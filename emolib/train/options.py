"""What to train on and how: the data options (corpus or manifest, split protocol, labels), the model options,
and the default hyperparameters per model and backbone family (``tiny`` random-init encoders learn at the
head's rate; pretrained encoders are fine-tuned gently).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from ..data.defects import HICMAE_LEFT_OUT
from ..data.splits import DEFAULT_FOLDS, DEFAULT_PROTOCOL, HICMAE
from ..errors import DataError
from ..models.backbones import TINY
from ..models.egemaps import EGEMAPS
from .trainer import TrainConfig

DEFAULTS = {
    "voice": TrainConfig(epochs=10, batch_size=8, lr=1e-3, encoder_lr=3e-5),
    "face": TrainConfig(epochs=10, batch_size=32, lr=1e-3, encoder_lr=1e-4),
    "fusion": TrainConfig(epochs=40, batch_size=32, lr=1e-3, patience=10),
}
EGEMAPS_TRAINING = TrainConfig(epochs=60, batch_size=32, lr=3e-3, patience=15)  # the eGeMAPS head: 88 functionals, seconds an epoch
DEFAULT_FREEZE = {"voice": "cnn", "face": "none"}
WHOLE_CLIP_CROPS = 64  # face crops per step when a temporal model trains on whole clips (16 frames x 4 clips: ResNet-50 fp16 fits a T4)
SYNTHETIC_MARKER = "README.txt"
ALL = "all"  # the split of every clip, for evaluating a corpus the models never heard


@dataclass
class DataOptions:
    """Which data and which speaker split: a corpus folder (CREMA-D, RAVDESS or a folder per label; None:
    CREMA-D auto-detected on Kaggle) or a manifest file, its video root, the protocol and fold, whether
    CREMA-D's known defective files are kept, the label source, and the layout, speaker pattern and
    label order of a corpus that is not CREMA-D."""

    data: str | None = None
    video_dir: str | None = None
    fold: int | None = None
    folds: int = DEFAULT_FOLDS
    split_seed: int = 0
    protocol: str = DEFAULT_PROTOCOL
    include_defective: bool = False
    labels: str = "intended"
    layout: str = "auto"
    speaker_pattern: str | None = None
    label_order: str | None = None
    label_map: str | None = None  # training on another corpus's names: FROM=TO pairs or a file (``labels.parse_label_map``)

    def about(self) -> dict:
        """What a checkpoint and its model card record about this data: name, source, layout, protocol and fold."""
        source = self.data or "CREMA-D under /kaggle/input"
        layout = self.layout
        if self.data and Path(self.data).is_file():
            layout = "manifest"
        elif self.data and layout == "auto":
            from ..data.manifest import detect_layout

            layout = detect_layout(self.data, self.video_dir, self.speaker_pattern)
        return {"name": Path(source).name if self.data else "CREMA-D", "source": str(source), "layout": layout if self.data else "cremad",
                "protocol": self.protocol, "fold": self.fold, "label_source": self.labels, "synthetic": is_synthetic(self.data)}

    def context(self) -> dict:
        """What a report records about the data: protocol, fold, how validation was chosen, defects policy."""
        label_source = "intended (file names)" if self.labels == "intended" else f"{self.labels} (CREMA-D raters' majority votes where perceived)"
        context = {"protocol": self.protocol, "fold": self.fold, "label_source": label_source,
                   "defective_files": "kept (--include-defective)" if self.include_defective else "left out (known CREMA-D release defects)"}
        if self.protocol == HICMAE:
            context.update(paper_fold=(self.fold or 0) + 1, validation="carved from the training actors of the fold (the papers have no validation split)",
                           left_out=list(HICMAE_LEFT_OUT))
        return context


@dataclass
class ModelOptions:
    """What to train and how: backbones, freezing, the TrainConfig overrides (None: the default), the recipe preset and its
    options (None: the preset's value, ``presets.apply_recipe``), and joint fine-tuning of the fusion model's encoders."""

    backbone: str | None = None
    face_weights: str | None = None
    freeze: str | None = None
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    encoder_lr: float | None = None
    seed: int = 0
    device: str = "auto"
    workers: int | None = None
    restart: bool = False
    init_from: str | None = None
    recipe: str | None = None
    layers: str | None = None
    pooling: str | None = None
    speech_only: bool | None = None
    frames: int | None = None
    temporal: str | None = None
    balance: str | None = None
    finetune: bool = False
    voice_lr: float | None = None
    face_lr: float | None = None
    speaker_norm: str | None = None  # the eGeMAPS voice model: "on" (default) or "off"

    def train_config(self, kind: str) -> TrainConfig:
        """The TrainConfig of ``kind`` with these overrides."""
        return train_config(kind, self.backbone, epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
                            encoder_lr=self.encoder_lr, seed=self.seed, device=self.device)


def train_config(kind: str, backbone: str | None = None, **overrides) -> TrainConfig:
    """The default TrainConfig of ``kind`` with the given overrides (None values are ignored)."""
    config = EGEMAPS_TRAINING if kind == "voice" and backbone == EGEMAPS else DEFAULTS[kind]
    if backbone == TINY:
        config = replace(config, encoder_lr=config.lr)
    return replace(config, **{name: value for name, value in overrides.items() if value is not None})


def whole_clip_batches(train: TrainConfig, frames: int) -> TrainConfig:
    """The face model's default batch for training on whole clips of ``frames`` crops: at most WHOLE_CLIP_CROPS crops a step,
    with gradient accumulation keeping the default number of clips per optimizer step. A batch size that is not the default stays."""
    default = DEFAULTS["face"].batch_size
    if train.batch_size != default or train.accumulation != 1 or frames * default <= WHOLE_CLIP_CROPS:
        return train
    clips = max(1, WHOLE_CLIP_CROPS // frames)
    return replace(train, batch_size=clips, accumulation=max(1, default // clips))


def load_manifest_for(options: DataOptions, quiet: bool = False, splits: bool = True):
    """The manifest of ``options.data`` with splits, the known CREMA-D defects left out (``data.defects``).

    A folder is indexed (fast); a manifest file is read, and keeps its own splits unless it has none
    or a fold or protocol is asked for. With the hicmae protocol the four clips those papers leave
    out lose both modalities as well. ``splits`` False: every clip in split "all", no speaker split
    needed (``emolib evaluate --split all`` of a corpus the models never heard).
    """
    from ..data.defects import exclude_defects, leave_out
    from ..data.manifest import has_splits, index_dataset, load_manifest, summarize
    from ..data.splits import assign_splits

    if options.data and Path(options.data).is_file():
        manifest = load_manifest(options.data, options.label_order)
        resplit = options.fold is not None or options.protocol != DEFAULT_PROTOCOL  # a manifest file keeps its own splits unless asked
        summary = manifest
    else:
        summary = index_dataset(options.data, video_dir=options.video_dir, fold=options.fold, folds=options.folds, seed=options.split_seed,
                                protocol=options.protocol, layout=options.layout, speaker_pattern=options.speaker_pattern,
                                labels=options.label_order)
        manifest, resplit = summary.manifest, False
    if not splits:
        manifest = manifest.assign(split=ALL)
    elif resplit or not has_splits(manifest):  # a corpus too small for a speaker split was indexed without one: said where it is needed
        try:
            manifest = assign_splits(manifest, fold=options.fold, folds=options.folds, seed=options.split_seed, protocol=options.protocol)
        except DataError as error:
            raise DataError(f"{options.data}: {error}; evaluate it whole with `emolib evaluate --split all`") from None
    if options.label_map:
        manifest = mapped(manifest, options.label_map, options.label_order, quiet)
    if not quiet:
        print(summarize(summary))
    if options.protocol == HICMAE:
        manifest = leave_out(manifest, HICMAE_LEFT_OUT, "left out by the hicmae protocol (a known defective clip)")
    return manifest if options.include_defective else exclude_defects(manifest)


def mapped(manifest, label_map, label_order=None, quiet: bool = False):
    """``manifest`` with its labels renamed by ``label_map`` (``labels.rename_labels``) and encoded against the new label set."""
    from ..data.manifest import with_label_set
    from ..labels import parse_label_map, rename_labels

    manifest, dropped = rename_labels(manifest, parse_label_map(label_map))
    if not quiet and dropped:
        print("label map: left out " + ", ".join(f"{label} {count}" for label, count in dropped.items()))
    return with_label_set(manifest, label_order, "--label-map")


def is_synthetic(data) -> bool:
    """True when ``data`` is a tree written by ``emolib synth``."""
    marker = Path(data or "") / SYNTHETIC_MARKER
    return marker.exists() and "synthetic" in marker.read_text(errors="ignore").lower()
