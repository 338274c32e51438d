"""End-to-end runs behind the CLI: train one model, evaluate, cross-validate, and the demo.

What to train on and with which hyperparameters is ``train.options``.
"""
from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..data.splits import HICMAE, HICMAE_FOLDS, split_warnings
from ..files import atomic_write
from ..models.egemaps import EGEMAPS, EgemapsConfig
from ..models.backbones import DEFAULT_FACE_BACKBONE, DEFAULT_FACE_WEIGHTS, DEFAULT_VOICE_BACKBONE, NO_WEIGHTS, TINY
from ..models.nets import FaceConfig, VoiceConfig
from .distributed import is_main_process
from .options import ALL, DEFAULT_FREEZE, SYNTHETIC_MARKER, DataOptions, ModelOptions, is_synthetic, load_manifest_for, train_config, whole_clip_batches
from .checks import check_frames, check_train_options, options_for
from .presets import OPTION_NAMES, apply_recipe, recipe_of
from .resume import RESUME_FILE

DEMO_EPOCHS = {"voice": 12, "face": 10, "fusion": 40}
DEMO_DATA = "cremad-synth"
KINDS = ("voice", "face", "fusion")
FOLD_FILE = "fold.json"  # a finished fold of cross_validate: its run and the checkpoints it evaluated


def train_model(kind, manifest, models_dir, backbone=None, face_weights=None, freeze=None, train=None, cache_dir=None, workers=None, restart=False,
                progress=True, labels=None, init_from=None, about: dict | None = None, recipe=None):
    """Train one of the three models into ``models_dir/kind``; returns the history.

    ``labels`` overrides the label order of the manifest's label set; ``init_from`` (a checkpoint or
    models folder) starts a voice or face model from a trained one's encoder with a new head. ``recipe``:
    a recipe name (``presets.RECIPES``; None: seed) or ModelOptions whose unset recipe options its recipe fills.
    Then its temperature (and the late baseline's, for fusion) is fitted on the validation split (``train.calibrate``).
    """
    from .calibrate import calibrate

    history = _train_model(kind, manifest, models_dir, backbone, face_weights, freeze, train, cache_dir, workers, restart, progress, labels,
                           init_from, about, recipe)
    if is_main_process() and history:
        calibrate(models_dir, kind, manifest, cache_dir, (train or train_config(kind, backbone)).device, progress=False)
    return history


def _train_model(kind, manifest, models_dir, backbone, face_weights, freeze, train, cache_dir, workers, restart, progress, labels, init_from,
                 about, recipe):
    from .fit import train_face, train_fusion, train_voice

    from ..devices import pick_device
    from ..models.checkpoint import is_checkpoint, read_checkpoint_config
    from ..transforms import AudioSettings, FaceSettings

    models_dir = Path(models_dir)
    out_dir = models_dir / kind
    train = train or train_config(kind, backbone)
    pick_device(train.device)  # a missing GPU is reported now, not after the data is read
    init = check_init(kind, init_from, backbone, face_weights)
    freeze = freeze or DEFAULT_FREEZE.get(kind)
    options = recipe if isinstance(recipe, ModelOptions) else ModelOptions(recipe=recipe)
    if kind == "fusion" and options.recipe is None and is_checkpoint(models_dir / "voice"):
        options = replace(options, recipe=recipe_of(read_checkpoint_config(models_dir / "voice")[1]))  # the encoders' recipe
    preset = apply_recipe(replace(options, freeze=freeze))
    if kind == "voice" and backbone == EGEMAPS:
        from .functionals import train_egemaps

        config = EgemapsConfig(speaker_norm=options.speaker_norm != "off")
        return train_egemaps(manifest, out_dir, config, train, cache_dir, progress, restart, labels, about, preset.recipe)
    if kind == "voice":
        config = VoiceConfig(backbone=backbone or DEFAULT_VOICE_BACKBONE, freeze=freeze, layers=preset.layers, pooling=preset.pooling)
        return train_voice(manifest, out_dir, config, train, AudioSettings(speech_only=preset.speech_only), cache_dir=cache_dir, progress=progress,
                           restart=restart, labels=labels, init=init, about=about, recipe=preset.recipe)
    if kind == "face":
        backbone = backbone or DEFAULT_FACE_BACKBONE
        weights = None if backbone == TINY or str(face_weights).lower() == NO_WEIGHTS else (face_weights or DEFAULT_FACE_WEIGHTS)
        config = FaceConfig(backbone=backbone, weights=weights, freeze=freeze, temporal=preset.temporal)
        if preset.temporal != "mean" and freeze != "all":
            train = whole_clip_batches(train, preset.frames)
        return train_face(manifest, out_dir, config, train, FaceSettings(frames=preset.frames), cache_dir=cache_dir, workers=workers,
                          progress=progress, restart=restart, labels=labels, init=init, about=about, recipe=preset.recipe)
    return train_fusion(manifest, out_dir, models_dir / "voice", models_dir / "face", replace(train, balance=preset.balance), cache_dir=cache_dir,
                        workers=workers, progress=progress, restart=restart, about=about, recipe=preset.recipe, finetune=options.finetune,
                        voice_lr=options.voice_lr, face_lr=options.face_lr)


def check_init(kind: str, init_from, backbone=None, face_weights=None):
    """The ``kind`` checkpoint folder that ``init_from`` (a checkpoint or a models folder) names, or None; ModelError in one
    line for a fusion model, a checkpoint of another kind, or together with a backbone or face weights (the encoder is the checkpoint's)."""
    from ..errors import ModelError
    from ..models.checkpoint import find_models, is_checkpoint, read_checkpoint_config

    if not init_from:
        return None
    if backbone or face_weights:
        raise ModelError(f"--init-from {init_from} keeps that checkpoint's encoder; leave out --backbone and --face-weights")
    if kind == "fusion":
        raise ModelError("--init-from applies to the voice and face models (the fusion model trains on their embeddings)")
    if is_checkpoint(init_from):
        found_kind = read_checkpoint_config(init_from)[1]["kind"]
        if found_kind != kind:
            raise ModelError(f"{init_from}: a {found_kind} checkpoint; --init-from for the {kind} model needs a {kind} checkpoint "
                             f"(or a models folder with {kind}/)")
    found = find_models(init_from, (kind,))
    if kind not in found:
        raise ModelError(f"{init_from}: no {kind} checkpoint to start from")
    return found[kind]


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


def train_with(kind: str, manifest, models_dir, options: ModelOptions, cache_dir=None, progress: bool = True, labels: str = "intended",
               label_order=None, about: dict | None = None):
    """``train_model`` with ModelOptions (the CLI's ``emolib train KIND``), on the intended or the perceived labels of ``kind``,
    in ``label_order`` (default: the data's own order); then (re)writes the models folder's model card."""
    from ..eval.card import write_model_card

    from ..data.perceived import with_labels

    check_train_options(kind, options)  # before anything is read or said about the data
    check_init(kind, options.init_from, options.backbone, options.face_weights)
    chosen = [name for name in ("recipe", *OPTION_NAMES) if getattr(options, name) is not None]
    if options.init_from and chosen:
        from ..errors import ModelError

        raise ModelError(f"--init-from {options.init_from} keeps that checkpoint's architecture and preprocessing; leave out "
                         f"{', '.join('--' + name.replace('_', '-') for name in chosen)}")
    manifest, dropped = with_labels(manifest, kind, labels)
    for warning in split_warnings(manifest):  # on stdout, with the run's other output: stderr is for the one line of an error
        print(f"warning: {warning}")
    if dropped:
        print(f"{kind}: {dropped} clips without a single majority vote dropped (perceived labels)")
    backbone = options.backbone if kind != "fusion" else None
    history = train_model(kind, manifest, models_dir, backbone, options.face_weights, options.freeze, options.train_config(kind),
                          cache_dir, options.workers, options.restart, progress, label_order, options.init_from, about, options)
    if is_main_process():
        write_model_card(models_dir)
    return history


def evaluate_split(data: DataOptions, models_dir, out_dir, split: str = "test", cache_dir=None, device: str = "auto", label_map=None,
                   by=(), allow_seen_speakers: bool = False, recipe: str | None = None, speaker_norm: bool = True) -> dict:
    """``emolib evaluate``: evaluate the trained models on one split; prints the table, returns the report.

    ``label_map`` (``labels.parse_label_map``) maps the data's labels onto the models' (cross-corpus);
    ``by`` names manifest columns to break the metrics down by; ``recipe``: refuse models trained with another recipe. Speakers the models trained or selected on
    are refused in the evaluated split unless ``allow_seen_speakers``. The results go into the models
    folder's model card only when they are of the models' own test split, as their checkpoints record it
    (never a cross-corpus, mapped or seen-speaker evaluation).
    """
    from ..eval.evaluation import evaluate_models, results_table
    from ..labels import parse_label_map

    if recipe:
        check_recipe_of(models_dir, recipe)
    mapping = parse_label_map(label_map) if label_map else None
    manifest = load_manifest_for(data, quiet=True, splits=split != ALL)
    report = evaluate_models(manifest, models_dir, out_dir, split, cache_dir, device, is_synthetic(data.data), context=data.context(),
                             labels=data.labels, label_map=mapping, by=by, allow_seen_speakers=allow_seen_speakers, speaker_norm=speaker_norm)
    print(results_table(report).to_string())
    for kind, metrics in report["models"].items():
        if metrics.get("outside_label_set"):
            print(f"{kind}: not scored, labels outside its label set: {metrics['outside_label_set']}")
    for kind, why in report.get("not_scored", {}).items():
        print(f"{kind}: not scored, {why} in the {split} split")
    if report.get("label_map", {}).get("dropped"):
        print(f"dropped by the label map: {report['label_map']['dropped']}")
    if report.get("seen_speakers"):
        print(f"WARNING: {report['warning']}")
    print(f"report: {Path(out_dir) / 'metrics.json'}")
    update_card(models_dir, report)
    return report


def check_recipe_of(models_dir, recipe: str) -> None:
    """ModelError in one line when a model of ``models_dir`` was trained with another recipe than ``recipe`` (``evaluate --recipe``)."""
    from ..errors import ModelError
    from ..models.checkpoint import find_models, read_checkpoint_config

    for kind, folder in find_models(models_dir).items():
        found = recipe_of(read_checkpoint_config(folder)[1])
        if found != recipe:
            raise ModelError(f"{folder}: trained with the {found} recipe, not {recipe}; evaluate without --recipe, or train with --recipe {recipe}")


def update_card(models_dir, report: dict) -> None:
    """Write ``report`` into the models' card when it is of their own test split; else say why the card is left as it is."""
    from ..eval.card import refusal, write_model_card

    reason = refusal(models_dir, report)
    print(f"model card not updated: {reason}" if reason else f"model card: {write_model_card(models_dir, report)}")


def cross_validate(data: DataOptions, folds: int, models_dir, out_dir, options: ModelOptions, cache_dir=None, fold_ids=None) -> dict:
    """Train and evaluate all three models on each actor-disjoint fold; mean and std per model.

    ``folds`` folds of the default protocol, or the 5 folds of ``data.protocol="hicmae"``; ``fold_ids`` runs only those
    (0-based). A hicmae fold whose test actors are not in the data is skipped and reported. Resumable: a fold whose
    ``fold.json`` records this very run (data, protocol, options, recipe) and whose checkpoints are still the ones it
    evaluated is read back, not redone (``--restart`` redoes it); a fold cut off mid-way resumes its training. A finished
    fold's resume states are deleted (on Kaggle, ten folds of them would not fit in /kaggle/working's 20 GB).
    """
    from ..errors import DataError
    from ..eval.evaluation import evaluate_models

    check_frames(options)
    folds = HICMAE_FOLDS if data.protocol == HICMAE else folds
    reports, skipped = [], []
    for fold in (range(folds) if fold_ids is None else fold_ids):
        print(f"=== fold {fold + 1}/{folds} ({data.protocol} protocol) ===")
        fold_data = replace(data, fold=fold, folds=folds)
        fold_models, fold_out = Path(models_dir) / "folds" / f"fold{fold}", Path(out_dir) / f"fold{fold}"
        run = fold_run(fold_data, options)
        done = None if options.restart else finished_fold(fold_out, fold_models, run)
        if done is not None:
            print(f"fold {fold + 1}: done before (reading {fold_out / 'metrics.json'})")
            reports.append(done)
            continue
        try:
            manifest = load_manifest_for(fold_data, quiet=True)
        except DataError as error:
            if data.protocol != HICMAE:
                raise
            print(f"skipped: {error}")
            skipped.append({"fold": fold, "reason": str(error)})
            continue
        kinds = trainable_kinds(manifest)
        for kind in kinds:  # each model gets its own options (a fold trains all three, or the voice alone on an audio-only corpus)
            train_with(kind, manifest, fold_models, options_for(kind, options), cache_dir, labels="intended" if data.labels == "both" else data.labels,
                       label_order=data.label_order, about=fold_data.about())
        reports.append(evaluate_models(manifest, fold_models, fold_out, "test", cache_dir, options.device,
                                       is_synthetic(data.data), context=fold_data.context(), labels=data.labels,
                                       speaker_norm=options.speaker_norm != "off"))
        atomic_write(fold_out / FOLD_FILE, json.dumps({"run": run, "checkpoints": checkpoint_digests(fold_models)}, indent=2))
        for kind in KINDS:  # a finished fold is read back from fold.json: its resume states (3x the weights) only take space
            (fold_models / kind / RESUME_FILE).unlink(missing_ok=True)
    if not reports:
        raise DataError(f"{data.data}: no fold of the {data.protocol} protocol has its test actors in this data")
    summary = {**summarize_folds(reports), "protocol": data.protocol, "skipped_folds": skipped, "recipe": apply_recipe(options).recipe}
    atomic_write(Path(out_dir) / "cv_metrics.json", json.dumps(summary, indent=2))
    for kind, stats in summary["models"].items():
        print(f"{kind:7s} test UAR {stats['uar_mean']:.3f} ± {stats['uar_std']:.3f}   acc {stats['accuracy_mean']:.3f} ± {stats['accuracy_std']:.3f}")
    return summary


def trainable_kinds(manifest) -> tuple[str, ...]:
    """The models a corpus can train: voice, face and fusion; the voice alone when no clip has a video (RAVDESS speech)."""
    if (manifest["video_path"].astype(str) != "").any():
        return KINDS
    print("face, fusion: not trained: no clip of this corpus has a video")
    return ("voice",)


def fold_run(data: DataOptions, options: ModelOptions) -> dict:
    """What identifies one fold's run: the data options and the model options with their recipe filled in (not how it runs)."""
    from dataclasses import asdict

    model = {name: value for name, value in asdict(apply_recipe(options)).items() if name not in ("device", "workers", "restart")}
    return json.loads(json.dumps({"data": asdict(data), "model": model}, default=str))


def checkpoint_digests(models_dir) -> dict:
    """{kind: sha256 of model.safetensors} of a models folder's checkpoints."""
    from ..files import file_digest
    from ..models.checkpoint import WEIGHTS_FILE

    return {kind: file_digest(Path(models_dir) / kind / WEIGHTS_FILE) for kind in KINDS if (Path(models_dir) / kind / WEIGHTS_FILE).is_file()}


def finished_fold(fold_out: Path, fold_models: Path, run: dict) -> dict | None:
    """The report of a fold finished by this same run with its checkpoints unchanged, else None (the fold is redone)."""
    record_file, metrics_file = fold_out / FOLD_FILE, fold_out / "metrics.json"
    if not (record_file.is_file() and metrics_file.is_file()):
        return None
    try:
        record = json.loads(record_file.read_text())
        report = json.loads(metrics_file.read_text())
    except (OSError, ValueError):
        return None
    if record.get("run") != run or record.get("checkpoints") != checkpoint_digests(fold_models):
        return None
    return report


def summarize_folds(reports: list[dict]) -> dict:
    """Mean and standard deviation over folds of each model's test accuracy, UAR and macro-F1, and of its calibration (temperature,
    ECE after and before, NLL, Brier)."""
    summary = {"split": "test (per fold)", "folds": len(reports), "fold_ids": [report.get("fold") for report in reports], "models": {}}
    for kind in reports[0]["models"]:
        stats = {}
        for metric in ("accuracy", "uar", "macro_f1"):
            values = [report["models"][kind][metric] for report in reports]
            stats.update({f"{metric}_mean": float(np.mean(values)), f"{metric}_std": float(np.std(values)), f"{metric}_folds": values})
        blocks = [report["models"][kind].get("calibration") for report in reports]
        if all(blocks):
            stats["calibration"] = {metric: {"mean": float(np.mean([block[metric] for block in blocks])), "std": float(np.std([block[metric] for block in blocks])),
                                             "folds": [block[metric] for block in blocks]}
                                    for metric in ("temperature", "ece", "ece_before", "nll", "brier") if all(block.get(metric) is not None for block in blocks)}
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
                    cache_dir=work / "cache", progress=progress, about=DataOptions(str(data)).about())
    report = evaluate_models(manifest, work / "models", work / "reports", "test", work / "cache", device, synthetic=True, progress=progress,
                             context=DataOptions(str(data)).context())
    print(results_table(report).to_string())
    update_card(work / "models", report)
    print(f"reports in {work / 'reports'} ({time.time() - started:.0f} s)")
    return report
