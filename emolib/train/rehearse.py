"""``emolib rehearse``: a dress rehearsal of the Kaggle run, on synthetic data at CREMA-D's proportions.

It writes a synthetic CREMA-D like the real one (91 actors, sentences of 1.3-5 s, 480x360 FLV1 video with
its sound as MP3, WAV audio; ``--clips`` of them, spread over all actors and emotions), takes fold 1 of the
HiCMAE protocol, and trains one epoch of each model with the Kaggle settings and a recipe (default ``best``):
on a GPU full-size random-init models (wav2vec2-base from ``Wav2Vec2Config()``, ResNet-50 with no weights;
no download), fp16, ``--freeze cnn`` voice, 16-frame face; on a CPU the tiny models, as a test of the path.

It reports, per model: seconds per epoch (training and validation), peak GPU memory, the data loader's
throughput alone (clips/s), the share of the training loop spent waiting for the loader ("the GPU waited on
data" past WAIT_LIMIT), and the projected wall time of the full 5-fold run (each fold trains the three models
for their default epochs on CREMA-D's 7,442 clips; early stopping can only shorten it).
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import replace
from pathlib import Path

from ..data.splits import HICMAE, HICMAE_FOLDS
from ..errors import EmolibError
from ..files import atomic_write
from ..models.backbones import TINY
from .options import DEFAULTS, SYNTHETIC_MARKER, DataOptions, ModelOptions, load_manifest_for, train_config, whole_clip_batches
from .presets import BEST, apply_recipe

REAL_CLIPS = 7442
REAL_ACTORS = 91
DEFAULT_CLIPS = {"full": 546, "tiny": 96}  # full: one clip of each emotion per actor
MIN_CLIPS = 24  # fewer leave a handful of training clips in fold 1: too few to scale to 7,442
ROUGH_BELOW = 200  # training clips under which the projection is marked rough (an epoch's fixed costs weigh more)
WAIT_LIMIT = 0.2  # data-bound (the GPU waited on data) when the loop spent more than this share of an epoch waiting for batches
KINDS = ("voice", "face", "fusion")
RANDOM_VOICE = "wav2vec2-base-random-init"
REPORT_FILE = "rehearsal.json"


def rehearse(work="work/rehearsal", device: str = "auto", clips: int | None = None, recipe: str = BEST, size: str | None = None,
             progress: bool = True) -> dict:
    """Run the rehearsal in ``work``; print the report as a Markdown table and return it (also in ``work/rehearsal.json``).

    ``size``: ``full`` (the default on a GPU) or ``tiny`` (the default on a CPU). The data set is made once per size
    of ``clips``; the models are retrained every time (``--restart``).
    """
    import torch

    from ..data.face_cache import face_index
    from ..devices import describe, pick_device
    from ..transforms import FaceSettings
    from .recipes import train_model

    chosen = pick_device(device)
    size = size or ("full" if chosen.type == "cuda" else "tiny")
    clips = clips or DEFAULT_CLIPS[size]
    if clips < MIN_CLIPS:
        raise EmolibError(f"--clips {clips}: a projection needs at least {MIN_CLIPS} clips (it scales one epoch of fold 1's training clips "
                          f"to CREMA-D's {REAL_CLIPS:,}; the default is {DEFAULT_CLIPS[size]})")
    work = Path(work)
    data = rehearsal_data(work / f"cremad-{clips}", clips, progress)
    options = apply_recipe(ModelOptions(recipe=recipe, device=str(chosen)))
    about = DataOptions(str(data), protocol=HICMAE, fold=0)
    manifest = load_manifest_for(about, quiet=True)
    models, cache = work / "models", work / "cache"
    backbones = {"voice": TINY, "face": TINY} if size == "tiny" else {"voice": str(random_voice_backbone(work)), "face": "resnet50"}
    report = {"machine": describe(chosen), "size": size, "recipe": recipe, "clips": len(manifest), "actors": int(manifest["actor"].nunique()),
              "protocol": f"{HICMAE} fold 1 of {HICMAE_FOLDS}", "split_clips": manifest["split"].value_counts().to_dict(), "models": {}}
    started = time.perf_counter()
    face_index(manifest, cache, FaceSettings(frames=options.frames), progress=progress)
    report["face_crops_s"] = time.perf_counter() - started
    report["decoding_ms"] = decoding_ms(next((data / "VideoFlash").glob("*.flv")), options.frames)
    for kind in KINDS:
        train = replace(train_config(kind, backbones.get(kind), epochs=1, device=str(chosen)), patience=1)
        step = whole_clip_batches(train, options.frames) if kind == "face" and options.temporal != "mean" else train  # what train_model will use
        if chosen.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(chosen)
        started = time.perf_counter()
        history = train_model(kind, manifest, models, backbones.get(kind), "none" if kind == "face" and size == "full" else None, None, train,
                              cache, restart=True, progress=progress, about=about.about(), recipe=options)
        seconds = time.perf_counter() - started
        row = history[-1]
        report["models"][kind] = {
            "epoch_s": seconds, "train_s": row["train_seconds"], "data_wait_share": row["data_wait_seconds"] / max(row["train_seconds"], 1e-9),
            "train_clips": int((manifest["split"] == "train").sum()), "batch_size": f"{step.batch_size} x {step.accumulation}",
            "peak_gpu_gib": torch.cuda.max_memory_allocated(chosen) / 2**30 if chosen.type == "cuda" else None,
            "loader_clips_per_s": loader_throughput(kind, manifest, models, cache, options, step.batch_size) if kind != "fusion" else None,
            "val_uar": row["val_uar"],
        }
    report["projected_hours"] = projected_hours(report)
    atomic_write(work / REPORT_FILE, json.dumps(report, indent=2))
    print(markdown(report))
    return report


def rehearsal_data(root: Path, clips: int, progress: bool = True) -> Path:
    """The rehearsal's synthetic CREMA-D (made once): 91 actors, real sentence lengths, FLV1 + MP3, ``clips`` clips."""
    from ..data.synth.corpus import make_synthetic_cremad

    if not (root / SYNTHETIC_MARKER).exists():
        per_emotion = max(1, math.ceil(clips / (REAL_ACTORS * 6)))
        make_synthetic_cremad(root, actors=REAL_ACTORS, clips_per_emotion=per_emotion, realistic=True, limit=clips, progress=progress)
    return root


def random_voice_backbone(work: Path) -> Path:
    """A local Hugging Face folder with a random-init wav2vec2-base (``Wav2Vec2Config()``): the full-size voice encoder offline."""
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    folder = work / RANDOM_VOICE
    if not (folder / "config.json").is_file():
        Wav2Vec2Model(Wav2Vec2Config()).save_pretrained(folder)
    return folder


def loader_throughput(kind: str, manifest, models, cache, options, batch_size: int) -> float:
    """Clips per second the training data loader gives alone (decoding, speech detection, crops, augmentation)."""
    from torch.utils.data import DataLoader

    from ..data.datasets import FaceDataset, VoiceDataset, select_split
    from ..data.face_cache import face_index
    from ..transforms import AudioSettings, FaceSettings

    rows = select_split(manifest, "train")
    if kind == "voice":
        dataset = VoiceDataset(rows, AudioSettings(speech_only=options.speech_only), train=True)
    else:
        settings = FaceSettings(frames=options.frames)
        dataset = FaceDataset(rows, face_index(rows, cache, settings, progress=False), settings, train=True, whole_clips=options.temporal != "mean")
    started = time.perf_counter()
    count = sum(len(batch["label"]) for batch in DataLoader(dataset, batch_size=batch_size, shuffle=True))
    return count / max(time.perf_counter() - started, 1e-9)


def decoding_ms(synthetic, frames: int, repeats: int = 5) -> dict:
    """ms to read ``frames`` frames of a clip (``video.read_frames``): the release's own VP6 FLV emolib ships (``assets/sample``)
    and a synthetic FLV1 clip of the rehearsal's data. The face crops of the real data are projected from the difference."""
    from importlib import resources

    from ..video import read_frames

    real = resources.files("emolib") / "assets" / "sample" / "1001_DFA_NEU_XX.flv"
    timed = {}
    for name, path in (("vp6", real), ("flv1", synthetic)):
        read_frames(path, frames)
        started = time.perf_counter()
        for _ in range(repeats):
            read_frames(path, frames)
        timed[name] = 1000 * (time.perf_counter() - started) / repeats
    return timed


def projected_crops_s(report: dict) -> float:
    """Seconds to make the face crops of CREMA-D's 7,442 real clips: the rehearsal's crops per clip, with the synthetic clip's
    decoding replaced by the release's VP6 decoding."""
    per_clip = report["face_crops_s"] / max(report["clips"], 1)
    decoding = report.get("decoding_ms") or {"vp6": 0.0, "flv1": 0.0}
    return REAL_CLIPS * max(0.0, per_clip + (decoding["vp6"] - decoding["flv1"]) / 1000)


def projected_hours(report: dict) -> float:
    """The full 5-fold run at CREMA-D's size, scaled by clips: per fold and model, the training loop's seconds x its default
    epochs, plus the rest of the rehearsal's run once (model set-up, feature caches, a validation pass); face crops once, of the
    real VP6 videos."""
    total = projected_crops_s(report)
    scale = REAL_CLIPS / max(report["clips"], 1)
    for kind, row in report["models"].items():
        total += HICMAE_FOLDS * scale * (DEFAULTS[kind].epochs * row["train_s"] + (row["epoch_s"] - row["train_s"]))
    return total / 3600


def markdown(report: dict) -> str:
    """The report as Markdown: the machine, then one row per model."""
    decoding = report.get("decoding_ms") or {}
    lines = [f"Rehearsal on {report['machine']}: {report['size']} models, recipe `{report['recipe']}`, {report['clips']} synthetic clips "
             f"of {report['actors']} actors ({report['protocol']}; splits {report['split_clips']}); face crops {report['face_crops_s']:.1f} s.",
             f"Decoding a clip's face frames: {decoding.get('vp6', float('nan')):.1f} ms for the release's VP6 FLV (CREMA-D's real format), "
             f"{decoding.get('flv1', float('nan')):.1f} ms for a synthetic FLV1 clip; CREMA-D's {REAL_CLIPS:,} real clips' crops are "
             f"projected at {projected_crops_s(report) / 60:.1f} min.", "",
             "| model | wall s (1 epoch + set-up + validation) | training loop | waiting on data | peak GPU memory | loader alone | batch x accumulation |",
             "|---|---|---|---|---|---|---|"]
    for kind, row in report["models"].items():
        memory = f"{row['peak_gpu_gib']:.1f} GiB" if row["peak_gpu_gib"] is not None else "n/a (CPU)"
        loader = f"{row['loader_clips_per_s']:.0f} clips/s" if row["loader_clips_per_s"] is not None else "cached features"
        waited = f"{row['data_wait_share']:.0%}" + (" (data-bound)" if row["data_wait_share"] > WAIT_LIMIT else "")
        lines.append(f"| {kind} | {row['epoch_s']:.1f} | {row['train_s']:.1f} s for {row['train_clips']} clips | {waited} | {memory} | {loader} | "
                     f"{row['batch_size']} |")
    trained = max(row["train_clips"] for row in report["models"].values())
    rough = f" Rough: scaled from {trained} training clips (under {ROUGH_BELOW}, an epoch's fixed costs weigh more than at full size)." \
        if trained < ROUGH_BELOW else ""
    lines += ["", f"Projected full 5-fold HiCMAE run on CREMA-D ({REAL_CLIPS} clips, default epochs, no early stop): "
                  f"{report['projected_hours']:.1f} h on this machine, from one epoch of {trained} training clips.{rough}"]
    return "\n".join(lines)
