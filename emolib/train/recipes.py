"""End-to-end runs behind the CLI: train one model, evaluate, cross-validate, and the demo.

Default hyperparameters live here, per model and per backbone family (``tiny`` random-init
encoders learn at the head's rate; pretrained encoders are fine-tuned gently).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..data.defects import HICMAE_LEFT_OUT
from ..data.splits import DEFAULT_FOLDS, DEFAULT_PROTOCOL, HICMAE, HICMAE_FOLDS
from ..files import atomic_write
from ..models.backbones import DEFAULT_FACE_BACKBONE, DEFAULT_FACE_WEIGHTS, DEFAULT_VOICE_BACKBONE, TINY
from ..models.nets import FaceConfig, VoiceConfig
from .trainer import TrainConfig

DEFAULTS = {
    "voice": TrainConfig(epochs=10, batch_size=8, lr=1e-3, encoder_lr=3e-5),
    "face": TrainConfig(epochs=10, batch_size=32, lr=1e-3, encoder_lr=1e-4),
    "fusion": TrainConfig(epochs=40, batch_size=32, lr=1e-3, patience=10),
}
DEFAULT_FREEZE = {"voice": "cnn", "face": "none"}
DEMO_EPOCHS = {"voice": 12, "face": 10, "fusion": 40}
DEMO_DATA = "cremad-synth"
SYNTHETIC_MARKER = "README.txt"
KINDS = ("voice", "face", "fusion")
NO_WEIGHTS = "none"  # --face-weights none: ResNet from random init


@dataclass
class DataOptions:
    """Which data and which actor split: a CREMA-D root (None: auto-detect on Kaggle), its video root, the
    protocol and fold, and whether the release's known defective files are kept."""

    data: str | None = None
    video_dir: str | None = None
    fold: int | None = None
    folds: int = DEFAULT_FOLDS
    split_seed: int = 0
    protocol: str = DEFAULT_PROTOCOL
    include_defective: bool = False
    labels: str = "intended"

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
    """What to train and how: backbones, freezing, and the TrainConfig overrides (None: the recipe default)."""

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

    def train_config(self, kind: str) -> TrainConfig:
        """The TrainConfig of ``kind`` with these overrides."""
        return train_config(kind, self.backbone, epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
                            encoder_lr=self.encoder_lr, seed=self.seed, device=self.device)


def train_config(kind: str, backbone: str | None = None, **overrides) -> TrainConfig:
    """The default TrainConfig of ``kind`` with the given overrides (None values are ignored)."""
    config = DEFAULTS[kind]
    if backbone == TINY:
        config = replace(config, encoder_lr=config.lr)
    return replace(config, **{name: value for name, value in overrides.items() if value is not None})


def load_manifest_for(options: DataOptions, quiet: bool = False):
    """Index a CREMA-D tree (fast) and return its manifest with splits, the known defects left out (``data.defects``).

    With the hicmae protocol the four clips those papers leave out lose both modalities as well.
    """
    from ..data.defects import exclude_defects, leave_out
    from ..data.manifest import index_dataset, summarize

    result = index_dataset(options.data, video_dir=options.video_dir, fold=options.fold, folds=options.folds, seed=options.split_seed,
                           protocol=options.protocol)
    if not quiet:
        print(summarize(result))
    manifest = result.manifest
    if options.protocol == HICMAE:
        manifest = leave_out(manifest, HICMAE_LEFT_OUT, "left out by the hicmae protocol (a known defective clip)")
    return manifest if options.include_defective else exclude_defects(manifest)


def is_synthetic(data) -> bool:
    """True when ``data`` is a tree written by ``emolib synth``."""
    marker = Path(data or "") / SYNTHETIC_MARKER
    return marker.exists() and "synthetic" in marker.read_text(errors="ignore").lower()


def train_model(kind, manifest, models_dir, backbone=None, face_weights=None, freeze=None, train=None, cache_dir=None, workers=None, restart=False, progress=True):
    """Train one of the three models into ``models_dir/kind``; returns the history."""
    from .fit import train_face, train_fusion, train_voice

    from ..devices import pick_device

    models_dir = Path(models_dir)
    out_dir = models_dir / kind
    train = train or train_config(kind, backbone)
    pick_device(train.device)  # a missing GPU is reported now, not after the data is read
    if kind == "voice":
        config = VoiceConfig(backbone=backbone or DEFAULT_VOICE_BACKBONE, freeze=freeze or DEFAULT_FREEZE["voice"])
        return train_voice(manifest, out_dir, config, train, cache_dir=cache_dir, progress=progress, restart=restart)
    if kind == "face":
        backbone = backbone or DEFAULT_FACE_BACKBONE
        weights = None if backbone == TINY or str(face_weights).lower() == NO_WEIGHTS else (face_weights or DEFAULT_FACE_WEIGHTS)
        config = FaceConfig(backbone=backbone, weights=weights, freeze=freeze or DEFAULT_FREEZE["face"])
        return train_face(manifest, out_dir, config, train, cache_dir=cache_dir, workers=workers, progress=progress, restart=restart)
    return train_fusion(manifest, out_dir, models_dir / "voice", models_dir / "face", train, cache_dir=cache_dir, workers=workers,
                        progress=progress, restart=restart)


def train_model_on_gpus(kind, manifest, models_dir, *args, processes: int | None = None, **kwargs):
    """``train_model`` on every visible GPU from a notebook (Kaggle's 2x T4): ``accelerate.notebook_launcher``
    starts one process per GPU (DDP); with one GPU or none it is a plain call. Returns the history."""
    import torch

    processes = torch.cuda.device_count() if processes is None else processes
    if processes <= 1:
        return train_model(kind, manifest, models_dir, *args, **kwargs)
    from accelerate import notebook_launcher

    from .trainer import HISTORY_FILE

    notebook_launcher(_train_model_process, (kind, manifest, models_dir, args, kwargs), num_processes=processes)
    return json.loads((Path(models_dir) / kind / HISTORY_FILE).read_text())


def _train_model_process(kind, manifest, models_dir, args, kwargs):
    """One launched process of ``train_model_on_gpus``."""
    train_model(kind, manifest, models_dir, *args, **kwargs)


def train_with(kind: str, manifest, models_dir, options: ModelOptions, cache_dir=None, progress: bool = True, labels: str = "intended"):
    """``train_model`` with ModelOptions (the CLI's ``emolib train KIND``), on the intended or the perceived labels of ``kind``."""
    from ..data.perceived import with_labels

    manifest, dropped = with_labels(manifest, kind, labels)
    if dropped:
        print(f"{kind}: {dropped} clips without a single majority vote dropped (perceived labels)")
    backbone = options.backbone if kind != "fusion" else None
    return train_model(kind, manifest, models_dir, backbone, options.face_weights, options.freeze, options.train_config(kind),
                       cache_dir, options.workers, options.restart, progress)


def evaluate_split(data: DataOptions, models_dir, out_dir, split: str = "test", cache_dir=None, device: str = "auto") -> dict:
    """``emolib evaluate``: evaluate the trained models on one split; prints the table, returns the report."""
    from ..eval.evaluation import evaluate_models, results_table

    manifest = load_manifest_for(data, quiet=True)
    report = evaluate_models(manifest, models_dir, out_dir, split, cache_dir, device, is_synthetic(data.data), context=data.context(),
                             labels=data.labels)
    print(results_table(report).to_string())
    print(f"report: {Path(out_dir) / 'metrics.json'}")
    return report


def cross_validate(data: DataOptions, folds: int, models_dir, out_dir, options: ModelOptions, cache_dir=None) -> dict:
    """Train and evaluate all three models on each actor-disjoint fold; mean and std per model.

    ``folds`` folds of the default protocol, or the 5 folds of ``data.protocol="hicmae"``; a
    hicmae fold whose test actors are not in the data is skipped and reported.
    """
    from ..errors import DataError
    from ..eval.evaluation import evaluate_models

    folds = HICMAE_FOLDS if data.protocol == HICMAE else folds
    reports, skipped = [], []
    for fold in range(folds):
        print(f"=== fold {fold + 1}/{folds} ({data.protocol} protocol) ===")
        fold_data = replace(data, fold=fold, folds=folds)
        try:
            manifest = load_manifest_for(fold_data, quiet=True)
        except DataError as error:
            if data.protocol != HICMAE:
                raise
            print(f"skipped: {error}")
            skipped.append({"fold": fold, "reason": str(error)})
            continue
        fold_models = Path(models_dir) / "folds" / f"fold{fold}"
        for kind in KINDS:
            train_with(kind, manifest, fold_models, options, cache_dir, labels="intended" if data.labels == "both" else data.labels)
        reports.append(evaluate_models(manifest, fold_models, Path(out_dir) / f"fold{fold}", "test", cache_dir, options.device,
                                       is_synthetic(data.data), context=fold_data.context(), labels=data.labels))
    if not reports:
        raise DataError(f"{data.data}: no fold of the {data.protocol} protocol has its test actors in this data")
    summary = {**summarize_folds(reports), "protocol": data.protocol, "skipped_folds": skipped}
    atomic_write(Path(out_dir) / "cv_metrics.json", json.dumps(summary, indent=2))
    for kind, stats in summary["models"].items():
        print(f"{kind:7s} test UAR {stats['uar_mean']:.3f} ± {stats['uar_std']:.3f}   acc {stats['accuracy_mean']:.3f} ± {stats['accuracy_std']:.3f}")
    return summary


def summarize_folds(reports: list[dict]) -> dict:
    """Mean and standard deviation over folds of each model's test accuracy, UAR and macro-F1."""
    summary = {"split": "test (per fold)", "folds": len(reports), "fold_ids": [report.get("fold") for report in reports], "models": {}}
    for kind in reports[0]["models"]:
        stats = {}
        for metric in ("accuracy", "uar", "macro_f1"):
            values = [report["models"][kind][metric] for report in reports]
            stats.update({f"{metric}_mean": float(np.mean(values)), f"{metric}_std": float(np.std(values)), f"{metric}_folds": values})
        summary["models"][kind] = stats
    return summary


def run_demo(work="work", actors=None, epochs=None, device="auto", progress=True) -> dict:
    """Synthetic CREMA-D -> index -> train tiny voice, face, fusion (CPU) -> evaluate -> print table."""
    from ..data.manifest import write_manifest
    from ..data.synth.corpus import DEFAULT_ACTORS, make_synthetic_cremad
    from ..eval.evaluation import evaluate_models, results_table

    started = time.time()
    work = Path(work)
    data = work / DEMO_DATA
    if not (data / SYNTHETIC_MARKER).exists():
        make_synthetic_cremad(data, actors=actors or DEFAULT_ACTORS)
    manifest = load_manifest_for(DataOptions(str(data)))
    write_manifest(manifest, work / "manifest.csv")
    for kind in KINDS:
        print(f"--- training {kind} ---")
        train = train_config(kind, TINY, epochs=epochs or DEMO_EPOCHS[kind], device=device)
        train_model(kind, manifest, work / "models", TINY if kind != "fusion" else None, freeze="none", train=train,
                    cache_dir=work / "cache", progress=progress)
    report = evaluate_models(manifest, work / "models", work / "reports", "test", work / "cache", device, synthetic=True, progress=progress)
    print(results_table(report).to_string())
    print(f"reports in {work / 'reports'} ({time.time() - started:.0f} s)")
    return report
