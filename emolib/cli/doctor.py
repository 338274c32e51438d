"""``emolib doctor``: one screen of preflight checks before a long run, and a non-zero exit when it would fail.

It reports the torch / CUDA versions and visible GPUs, whether the voice and face backbones can be
loaded (or exactly where to put them), the data found (clips, pairs, known defects, unreadable
files: more than 1 % fails, Git LFS pointers instead of media fail; no videos says how to get them), free disk for the caches, and a rough estimate of the training time on this device.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

from ..train.checks import MAX_FRAMES
from .registry import command
from .types import positive_int

VOICE_TRAIN_GFLOP = 175.0  # wav2vec2-base, one 4 s clip, forward + backward (about 3x the 58 GFLOP forward)
FACE_TRAIN_GFLOP = 12.3  # ResNet-50, one 224 px crop, forward + backward
EFFICIENCY = 0.4  # the share of the measured matrix-multiply rate a training step reaches
CROP_BYTES = 224 * 224 * 3  # one cached face crop (uncompressed .npz)
FRAMES = 3
BEST_FRAMES = 16  # the best recipe's frames per clip (train.presets)
KAGGLE_WORKING, KAGGLE_WORKING_BYTES = "/kaggle/working", 20 * 1024**3
CHECKPOINT_BYTES = 600 * 1024**2  # voice + face + fusion checkpoints and their fast files, full size
EPOCHS = 10
MAX_UNREADABLE = 0.01  # more unreadable files than this share fails the check: a damaged or partial copy
HANDFUL = 5  # ... unless they are a handful (the release's known defects), which stay a warning
KAGGLE_DOWNLOAD = "/kaggle/working/cremad"
SAMPLE_VIDEO = "1001_DFA_NEU_XX.flv"  # a real release file, shipped in emolib/assets/sample


@command("doctor", "preflight before a long run: versions, GPUs, backbones, data, disk, estimated run time")
def _doctor(parser):
    parser.add_argument("--data", default=None, help="CREMA-D root to check (default: auto-detect under /kaggle/input)")
    parser.add_argument("--video-dir", default=None, help="video root when it differs from DATA")
    parser.add_argument("--backbone", default=None, help="voice backbone to check (default facebook/wav2vec2-base)")
    parser.add_argument("--face-weights", default=None, help="face ResNet-50 weights to check (default IMAGENET1K_V2)")
    parser.add_argument("--cache", default=None, help="cache folder (default $EMOLIB_CACHE or ~/.cache/emolib)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--weights", default=None, metavar="DIR",
                        help="an offline weights bundle (`emolib download weights --to DIR`; default $EMOLIB_WEIGHTS)")
    parser.add_argument("--frames", type=positive_int, default=BEST_FRAMES,
                        help=f"face frames per clip the crops will have (default 16: the best recipe; seed 3; at most {MAX_FRAMES})")

    def run(args):
        from ..errors import EmolibError

        if args.frames > MAX_FRAMES:
            raise EmolibError(f"--frames {args.frames}: at most {MAX_FRAMES} frames per clip (what training accepts)")
        if args.cache and Path(args.cache).exists() and not Path(args.cache).is_dir():
            raise EmolibError(f"--cache {args.cache}: not a folder (a file is there); the cache is a folder of face crops and features")
        report = Report()
        environment(report, args.device)
        weights_bundle(report, args.weights)
        backbones(report, args.backbone, args.face_weights)
        clips, videos = data(report, args.data, args.video_dir)
        release_format(report, args.data, args.video_dir, videos)
        disk(report, args.cache, videos, args.frames)
        estimate(report, args.device, clips, videos)
        report.print()
        return 1 if report.failed else 0

    return run


class Report:
    """Lines of ``ok`` / ``warn`` / ``FAIL`` results, printed as one screen."""

    def __init__(self):
        self.lines, self.failed = [], False
        self.first_video = None  # the data's first video, for the codec check

    def add(self, status: str, what: str, detail: str) -> None:
        self.lines.append((status, what, detail))
        self.failed |= status == "FAIL"

    def print(self) -> None:
        for status, what, detail in self.lines:
            print(f"{status:4s}  {what:14s} {detail}")
        print("a long run would fail: fix the FAIL lines first" if self.failed else "ready for a long run")


def environment(report: Report, device: str) -> None:
    import platform

    import torch

    from .. import __version__

    report.add("ok", "versions", f"emolib {__version__}, python {platform.python_version()}, torch {torch.__version__}, "
                                 f"CUDA {torch.version.cuda or 'none'}")
    gpus = [torch.cuda.get_device_properties(index) for index in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    if gpus:
        report.add("ok", "GPUs", "; ".join(f"{gpu.name} ({gpu.total_memory / 1024**3:.0f} GiB)" for gpu in gpus))
    else:
        report.add("FAIL" if device.startswith("cuda") else "warn", "GPUs", "none visible: training runs on the CPU (use --freeze all there)")


def backbones(report: Report, voice: str | None, face_weights: str | None) -> None:
    from ..errors import ModelError
    from ..models.backbones import DEFAULT_FACE_BACKBONE, DEFAULT_FACE_WEIGHTS, DEFAULT_VOICE_BACKBONE, NO_WEIGHTS, offline, torchvision_weights_file

    voice = voice or DEFAULT_VOICE_BACKBONE
    report.add(*voice_status(voice))
    weights = face_weights or DEFAULT_FACE_WEIGHTS
    if str(weights).lower() == NO_WEIGHTS:
        report.add("ok", "face backbone", f"{DEFAULT_FACE_BACKBONE} from random init (--face-weights none: nothing to download; it "
                                          "learns faces from the data alone)")
        return
    if Path(weights).suffix:
        report.add("ok" if Path(weights).is_file() else "FAIL", "face backbone", f"{DEFAULT_FACE_BACKBONE} weights file {weights}"
                   + ("" if Path(weights).is_file() else ": not found"))
        return
    try:
        report.add("ok", "face backbone", f"{DEFAULT_FACE_BACKBONE} {weights}: {torchvision_weights_file(DEFAULT_FACE_BACKBONE, weights, download=False)}")
    except ModelError as error:
        report.add("FAIL" if offline() else "warn", "face backbone", f"{error} (downloaded on first use when online)")


def weights_bundle(report: Report, given) -> None:
    """The offline weights bundle of ``--weights`` or EMOLIB_WEIGHTS, and how to use it."""
    from ..models.bundle import ENVIRONMENT, bundle_contents, find_bundle

    root = find_bundle(given)
    if root is None:
        return
    found = bundle_contents(root) if root.is_dir() else {"voice": [], "face": []}
    if not found["voice"] and not found["face"]:
        report.add("FAIL", "weights", f"{root} ({'--weights' if given else ENVIRONMENT}): no weights bundle there (make one with "
                                      f"`emolib download weights --to {root}` where there is internet)")
        return
    use = ([f"--backbone {folder}" for folder in found["voice"]] + [f"--face-weights {file}" for file in found["face"]])
    report.add("ok", "weights", f"bundle {root}: {len(found['voice'])} voice backbone(s), {len(found['face'])} face weights; offline use: "
                                + " ".join(use))


def voice_status(voice: str) -> tuple[str, str, str]:
    """(status, "voice backbone", detail) for a hub name or a local folder, without downloading anything."""
    from ..models.backbones import TINY

    if voice == TINY:
        return "ok", "voice backbone", "tiny: a small random-init encoder built here (tests and smoke runs; nothing to download)"
    if Path(voice).is_dir():
        has_weights = any((Path(voice) / name).is_file() for name in ("model.safetensors", "pytorch_model.bin"))
        ok = (Path(voice) / "config.json").is_file() and has_weights
        return ("ok" if ok else "FAIL", "voice backbone", f"{voice}" + ("" if ok else ": needs config.json and model.safetensors (save_pretrained)"))
    from huggingface_hub import try_to_load_from_cache

    cached = [try_to_load_from_cache(voice, name) for name in ("config.json", "model.safetensors", "pytorch_model.bin")]
    if isinstance(cached[0], str) and any(isinstance(path, str) for path in cached[1:]):
        return "ok", "voice backbone", f"{voice}: in the Hugging Face cache"
    from ..models.backbones import offline

    how = f"`huggingface-cli download {voice} --local-dir DIR` on a machine with internet, then --backbone DIR"
    return "FAIL" if offline() else "warn", "voice backbone", f"{voice}: not cached here; downloaded on first use (needs internet), or {how}"


def data(report: Report, root, video_dir) -> tuple[int, int]:
    """Index the data and check every file's header; returns the numbers of clips and of clips with a video."""
    from tqdm.auto import tqdm

    from ..data.manifest import index_dataset
    from ..errors import EmolibError
    from ..media import audio_problem, stream_kinds

    try:
        result = index_dataset(root, video_dir=video_dir)
    except EmolibError as error:
        report.add("FAIL", "data", str(error))
        return 0, 0
    manifest = result.manifest
    layout = result.roots.get("layout", "cremad")
    audio = manifest["audio_path"].astype(str) != ""
    video = manifest["video_path"].astype(str) != ""
    report.add("ok", "data", f"{len(manifest)} clips of {manifest['actor'].nunique()} speakers ({layout} layout; {int((audio & video).sum())} "
                             f"with audio and video) in {result.roots['audio'] or result.roots.get('data')}")
    if result.roots.get("split_note"):
        report.add("warn", "splits", f"{result.roots['split_note']}: training needs 3 speakers or more; `emolib evaluate --split all` "
                                     "evaluates it whole")
    if len(result.defects):
        report.add("warn", "defects", f"{len(result.defects)} known CREMA-D release defects (left out by default): "
                                      + ", ".join(sorted(set(result.defects["stem"]))))
    if not video.any() and layout == "cremad":
        report.add("warn", "videos", "none found: the face and fusion models need CREMA-D's VideoFlash (Kaggle's CREMA-D datasets hold the "
                                     f"WAVs only): `emolib download cremad --to {KAGGLE_DOWNLOAD} --parts video`, then --video-dir "
                                     f"{KAGGLE_DOWNLOAD}/VideoFlash")
    elif not video.any():
        report.add("ok", "videos", f"none: an audio-only corpus ({layout}); the voice model trains on it, the face and fusion models need "
                                   "videos")
    bad = [problem for path in tqdm(manifest.loc[audio, "audio_path"], desc="audio headers", leave=False) if (problem := audio_problem(path))]
    bad += [f"{path}: no video stream" for path in tqdm(manifest.loc[video, "video_path"], desc="videos", leave=False)
            if "video" not in stream_kinds(path)]
    files = int(audio.sum() + video.sum())
    share = len(bad) / max(files, 1)
    status = "ok" if not bad else "warn" if share <= MAX_UNREADABLE or len(bad) <= HANDFUL else "FAIL"
    detail = f"{len(bad)} of {files} files ({share:.1%})" + (f", e.g. {bad[0]}" if bad else "")
    detail += {"ok": "", "warn": ": skipped with a warning (the release's known defects are a handful)",
               "FAIL": f": more than {MAX_UNREADABLE:.0%} of the data and more than {HANDFUL} files; a long run would train on what is left (check the copy: emolib verify)"}[status]
    report.add(status, "unreadable", detail)
    report.first_video = manifest.loc[video, "video_path"].iloc[0] if video.any() else None
    return len(manifest), int(video.sum())


def release_format(report: Report, root, video_dir, videos: int) -> None:
    """Whether this machine decodes CREMA-D's real videos, On2 VP6 with an MP3 track: the frames (OpenCV) and the sound (PyAV) of the
    release file emolib ships (``assets/sample``), and of the data's first video."""
    from importlib import resources

    sample = resources.files("emolib") / "assets" / "sample" / SAMPLE_VIDEO
    problem = decode_problem(sample, needs_sound=True)
    if problem:
        report.add("FAIL" if videos or not root else "warn", "video codec",
                   f"{problem}: CREMA-D's FLVs are On2 VP6 + MP3; OpenCV's FFmpeg must read VP6 (reinstall the opencv-python wheel, "
                   "which ships it: `pip install --force-reinstall 'opencv-python>=4.8,<5'`; a system OpenCV built without FFmpeg "
                   "cannot) and PyAV their MP3 track (`pip install av`)")
        return
    first = report.first_video
    problem = decode_problem(first, needs_sound=False) if first else None
    if problem:
        report.add("FAIL", "video codec", f"{problem} (the release's own format, VP6 + MP3, decodes here: is this copy damaged? emolib verify)")
        return
    report.add("ok", "video codec", "CREMA-D's release format (On2 VP6 video, MP3 sound) decodes here" + (f", and so does {first}" if first else ""))


def decode_problem(path, needs_sound: bool) -> str | None:
    """Why the frames (and, when it has one or ``needs_sound``, the sound track) of a video do not decode here; None when they do."""
    from ..errors import EmolibError
    from ..media import read_audio_track, stream_kinds
    from ..video import read_frames

    try:
        read_frames(path, 3)
        if (needs_sound or "audio" in stream_kinds(path)) and read_audio_track(path) is None:
            return f"{path}: frames decode, its sound does not"
    except EmolibError as error:
        return f"cannot decode {error}"
    return None


def disk(report: Report, cache, clips: int, frames: int = FRAMES) -> None:
    """Free space for the face crops of ``frames`` frames per clip with a video (``clips``) and the checkpoints; on Kaggle, where
    the crops go."""
    from ..files import cache_root

    folder = Path(cache or cache_root())
    probe = next((parent for parent in [folder, *folder.parents] if parent.exists()), Path("/"))
    free = shutil.disk_usage(probe).free
    needed = clips * frames * CROP_BYTES + CHECKPOINT_BYTES
    status = "ok" if free > needed else "FAIL"
    report.add(status, "disk", f"{free / 1024**3:.1f} GiB free for {folder}; face crops ({frames} frames per clip) and checkpoints need "
                               f"about {needed / 1024**3:.1f} GiB")
    if str(folder).startswith(KAGGLE_WORKING) and clips * frames * CROP_BYTES > KAGGLE_WORKING_BYTES / 2:
        report.add("warn", "disk", f"{folder} is in {KAGGLE_WORKING}, which keeps 20 GB in all: put the cache outside it (--cache "
                                   f"/kaggle/temp/emolib-cache; the notebooks do) and let the crops be remade each session")


def estimate(report: Report, device: str, clips: int, videos: int | None = None) -> None:
    """Training time of the full-size voice and face models (10 epochs; the voice alone on an audio-only corpus) from this device's
    measured matrix-multiply rate."""
    from ..devices import pick_device
    from ..errors import EmolibError

    try:
        chosen = pick_device(device)
    except EmolibError as error:
        report.add("FAIL", "device", str(error))
        return
    rate = matmul_gflops(chosen)
    train_clips = int(clips * 0.7) or 5200
    face_frames = 1 if videos is None or videos else 0
    seconds = training_seconds(rate, train_clips, face_frames)
    dtype = "fp16" if chosen.type == "cuda" else "fp32"
    what = "voice + face" if face_frames else "voice"
    report.add("ok", "estimate", f"{chosen} {dtype} matmul {rate:.0f} GFLOP/s: {what} training, {EPOCHS} epochs of {train_clips} "
                                 f"clips, roughly {seconds / 3600:.1f} h (a rough bound; measure one epoch to be sure)")


def training_seconds(rate: float, train_clips: int, face_frames: int = 1, epochs: int = EPOCHS) -> float:
    """Seconds to train the full-size voice and face models for ``epochs`` on ``train_clips`` at a matrix-multiply ``rate``
    (GFLOP/s); ``face_frames`` crops per clip go through the ResNet in training (1: the seed's one random frame)."""
    return train_clips * epochs * (VOICE_TRAIN_GFLOP + face_frames * FACE_TRAIN_GFLOP) / (rate * EFFICIENCY)


def benchmark_estimate(device: str = "auto", clips: int = 7442, folds: int = 5, recipes=("seed", "best")) -> str:
    """``emolib doctor``'s estimate for notebook 07: the full-size training time of ``folds`` HiCMAE folds (4/5 of ``clips``
    trained per fold) for each recipe on this device."""
    from ..devices import pick_device
    from ..train.options import ModelOptions
    from ..train.presets import apply_recipe

    chosen = pick_device(device)
    rate = matmul_gflops(chosen)
    lines = [f"{chosen}: matmul {rate:.0f} GFLOP/s ({'fp16' if chosen.type == 'cuda' else 'fp32'})"]
    for recipe in recipes:
        options = apply_recipe(ModelOptions(recipe=recipe))
        frames = options.frames if options.temporal != "mean" else 1
        hours = folds * training_seconds(rate, int(clips * 0.8), frames) / 3600
        lines.append(f"recipe {recipe}: {folds} folds x voice + face (full size, {EPOCHS} epochs, {frames} face frame(s) per clip in training): "
                     f"roughly {hours:.1f} h (a rough bound; `emolib rehearse` measures it)")
    return "\n".join(lines)


def matmul_gflops(device, size: int = 1024, repeats: int = 5) -> float:
    """Measured matrix-multiply throughput (GFLOP/s) of ``device``: fp16 on CUDA, fp32 on the CPU."""
    import torch

    dtype = torch.float16 if device.type == "cuda" else torch.float32
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    (a @ b).sum().item()
    started = time.perf_counter()
    for _ in range(repeats):
        c = a @ b
    c.sum().item()
    return 2 * size**3 * repeats / (time.perf_counter() - started) / 1e9
