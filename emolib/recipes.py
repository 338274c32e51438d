"""End-to-end runs behind the CLI: train one model, evaluate, cross-validate, and the demo.

Default hyperparameters live here, per model and per backbone family (``tiny`` random-init
encoders learn at the head's rate; pretrained encoders are fine-tuned gently).
"""
from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from .backbones import DEFAULT_FACE_BACKBONE, DEFAULT_FACE_WEIGHTS, DEFAULT_VOICE_BACKBONE, TINY
from .checkpoint import atomic_write_text
from .models import FaceConfig, VoiceConfig
from .training import RESUME_DIR, TrainConfig

DEFAULTS = {
    "voice": TrainConfig(epochs=10, batch_size=8, lr=1e-3, encoder_lr=3e-5),
    "face": TrainConfig(epochs=10, batch_size=32, lr=1e-3, encoder_lr=1e-4),
    "fusion": TrainConfig(epochs=40, batch_size=32, lr=1e-3, patience=10),
}
DEFAULT_FREEZE = {"voice": "cnn", "face": "none"}
DEMO_EPOCHS = {"voice": 12, "face": 10, "fusion": 40}
DEMO_DATA = "cremad-synth"
SYNTHETIC_MARKER = "README.txt"


def train_config(kind: str, backbone: str | None = None, **overrides) -> TrainConfig:
    """The default TrainConfig of ``kind`` with the given overrides (None values are ignored)."""
    config = DEFAULTS[kind]
    if backbone == TINY:
        config = replace(config, encoder_lr=config.lr)
    return replace(config, **{name: value for name, value in overrides.items() if value is not None})


def load_manifest_for(data=None, video_dir=None, fold=None, folds=5, seed=0, quiet=False):
    """Index a CREMA-D tree (fast) and return its manifest with splits."""
    from .manifest import index_dataset, summarize

    result = index_dataset(data, video_dir=video_dir, fold=fold, folds=folds, seed=seed)
    if not quiet:
        print(summarize(result))
    return result.manifest


def is_synthetic(data) -> bool:
    """True when ``data`` is a tree written by ``emolib synth``."""
    marker = Path(data or "") / SYNTHETIC_MARKER
    return marker.exists() and "synthetic" in marker.read_text(errors="ignore").lower()


def train_model(kind, manifest, models_dir, backbone=None, face_weights=None, freeze=None, train=None, cache_dir=None, workers=None, restart=False, progress=True):
    """Train one of the three models into ``models_dir/kind``; returns the history."""
    from .pipeline import DEFAULT_CACHE, train_face, train_fusion, train_voice

    models_dir, cache_dir = Path(models_dir), Path(cache_dir or DEFAULT_CACHE)
    out_dir = models_dir / kind
    train = train or train_config(kind, backbone)
    if restart:
        import shutil

        shutil.rmtree(out_dir / RESUME_DIR, ignore_errors=True)
    if kind == "voice":
        config = VoiceConfig(backbone=backbone or DEFAULT_VOICE_BACKBONE, freeze=freeze or DEFAULT_FREEZE["voice"])
        return train_voice(manifest, out_dir, config, train, cache_dir=cache_dir, progress=progress)
    if kind == "face":
        backbone = backbone or DEFAULT_FACE_BACKBONE
        weights = None if backbone == TINY else (face_weights or DEFAULT_FACE_WEIGHTS)
        config = FaceConfig(backbone=backbone, weights=weights, freeze=freeze or DEFAULT_FREEZE["face"])
        return train_face(manifest, out_dir, config, train, cache_dir=cache_dir, workers=workers, progress=progress)
    return train_fusion(manifest, out_dir, models_dir / "voice", models_dir / "face", train, cache_dir=cache_dir, workers=workers, progress=progress)


def _train_config_from_args(args, kind) -> TrainConfig:
    return train_config(kind, args.backbone, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                        encoder_lr=args.encoder_lr, seed=args.seed, device=args.device)


def train_from_args(args, kind):
    """``emolib train KIND ...``"""
    manifest = load_manifest_for(args.data, args.video_dir, args.fold, args.folds, args.split_seed)
    return train_model(kind, manifest, args.out, args.backbone, args.face_weights, args.freeze,
                       _train_config_from_args(args, kind), args.cache, args.workers, args.restart)


def evaluate_from_args(args) -> dict:
    """``emolib evaluate ...``: one split, or K-fold cross-validation with ``--folds K``."""
    if args.folds:
        return cross_validate(args)
    from .evaluation import evaluate_models, results_table
    from .pipeline import DEFAULT_CACHE

    manifest = load_manifest_for(args.data, args.video_dir, args.fold, 5, args.split_seed, quiet=True)
    report = evaluate_models(manifest, args.models, args.out, args.split, args.cache or DEFAULT_CACHE, args.device, is_synthetic(args.data))
    print(results_table(report).to_string())
    print(f"report: {Path(args.out) / 'metrics.json'}")
    return report


def cross_validate(args) -> dict:
    """Train and evaluate all three models on each of K actor-disjoint folds; mean and std per model."""
    from .evaluation import evaluate_models

    reports = []
    for fold in range(args.folds):
        print(f"=== fold {fold + 1}/{args.folds} ===")
        manifest = load_manifest_for(args.data, args.video_dir, fold, args.folds, args.split_seed, quiet=True)
        models_dir = Path(args.models) / "folds" / f"fold{fold}"
        for kind in ("voice", "face", "fusion"):
            backbone = args.backbone if kind != "fusion" else None
            train_model(kind, manifest, models_dir, backbone, args.face_weights, args.freeze,
                        _train_config_from_args(args, kind), args.cache, args.workers, args.restart)
        reports.append(evaluate_models(manifest, models_dir, Path(args.out) / f"fold{fold}", "test", args.cache, args.device, is_synthetic(args.data)))
    summary = summarize_folds(reports)
    atomic_write_text(Path(args.out) / "cv_metrics.json", json.dumps(summary, indent=2))
    for kind, stats in summary["models"].items():
        print(f"{kind:7s} test UAR {stats['uar_mean']:.3f} ± {stats['uar_std']:.3f}   acc {stats['accuracy_mean']:.3f} ± {stats['accuracy_std']:.3f}")
    return summary


def summarize_folds(reports: list[dict]) -> dict:
    """Mean and standard deviation over folds of each model's test accuracy, UAR and macro-F1."""
    summary = {"split": "test (per fold)", "folds": len(reports), "models": {}}
    for kind in reports[0]["models"]:
        stats = {}
        for metric in ("accuracy", "uar", "macro_f1"):
            values = [report["models"][kind][metric] for report in reports]
            stats.update({f"{metric}_mean": float(np.mean(values)), f"{metric}_std": float(np.std(values)), f"{metric}_folds": values})
        summary["models"][kind] = stats
    return summary


def run_demo(work="work", actors=None, epochs=None, device="auto", progress=True) -> dict:
    """Synthetic CREMA-D -> index -> train tiny voice, face, fusion (CPU) -> evaluate -> print table."""
    from .evaluation import evaluate_models, results_table
    from .manifest import write_manifest
    from .synth import DEFAULT_ACTORS, make_synthetic_cremad

    started = time.time()
    work = Path(work)
    data = work / DEMO_DATA
    if not (data / SYNTHETIC_MARKER).exists():
        make_synthetic_cremad(data, actors=actors or DEFAULT_ACTORS)
    manifest = load_manifest_for(data)
    write_manifest(manifest, work / "manifest.csv")
    for kind in ("voice", "face", "fusion"):
        print(f"--- training {kind} ---")
        train = train_config(kind, TINY, epochs=epochs or DEMO_EPOCHS[kind], device=device)
        train_model(kind, manifest, work / "models", TINY if kind != "fusion" else None, freeze="none", train=train,
                    cache_dir=work / "cache", progress=progress)
    report = evaluate_models(manifest, work / "models", work / "reports", "test", work / "cache", device, synthetic=True, progress=progress)
    print(results_table(report).to_string())
    print(f"reports in {work / 'reports'} ({time.time() - started:.0f} s)")
    return report
