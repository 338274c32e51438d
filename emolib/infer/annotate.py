"""``emolib annotate``: emotion timelines for a whole archive of videos and recordings, on Ray Data.

The input is a folder (searched recursively), a glob, or a CSV/Parquet list of media files. Each file
becomes windows as in ``emolib timeline`` (4 s every 1 s by default; the same numbers, from the same
code): decoding runs in Ray tasks, the models in a pool of actors that load them once
(``map_batches`` with a callable class), so decoding and inference overlap. Ray runs locally by
default (on this machine's cores) or joins a cluster (``ray_address``).

Output folder:
- ``windows/<key>.parquet``: one row per window (file, start, end, emotion, final / voice / face /
  fused probabilities, modalities used, face found, audio RMS, the models' names and hashes);
  read them all with ``pandas.read_parquet(OUT / "windows")``;
- ``errors/<key>.parquet``: the files that could not be read, with the reason.
``key`` hashes the file's content and the models' weights: a file already annotated (or failed) with
the same models is skipped, so a second run does nothing and a killed run restarts where it
stopped. Each file's result is written atomically when it arrives.
"""
from __future__ import annotations

import hashlib
import io
from pathlib import Path

from ..audio import WINDOW_SECONDS
from ..errors import EmolibError
from ..files import atomic_write, file_digest

MEDIA_SUFFIXES = (".mp4", ".flv", ".mkv", ".mov", ".avi", ".webm", ".wav", ".flac", ".mp3", ".m4a", ".ogg")
WINDOWS_DIR, ERRORS_DIR = "windows", "errors"
INSTALL = "pip install 'emolib[scale]'"


def require_scale() -> None:
    """EmolibError naming the extra to install when Ray Data or pyarrow is missing."""
    try:
        import pyarrow  # noqa: F401
        import ray.data  # noqa: F401
    except ImportError as error:
        raise EmolibError(f"emolib annotate needs Ray Data and pyarrow ({error.name} is missing): {INSTALL}") from None


def list_inputs(source) -> list[Path]:
    """Media files named by ``source``: a folder (recursive), a glob pattern, or a .csv/.parquet list (column ``path`` or the first)."""
    import glob

    import pandas as pd

    path = Path(source)
    if path.is_dir():
        files = [item for item in path.rglob("*") if item.is_file() and item.suffix.lower() in MEDIA_SUFFIXES]
    elif path.suffix.lower() in (".csv", ".parquet") and path.is_file():
        table = pd.read_parquet(path) if path.suffix.lower() == ".parquet" else pd.read_csv(path)
        column = "path" if "path" in table.columns else table.columns[0]
        files = [Path(item) if Path(item).is_absolute() else path.parent / item for item in table[column].astype(str)]
    else:
        files = [Path(item) for item in glob.glob(str(source), recursive=True) if Path(item).is_file()]
    if not files:
        raise EmolibError(f"{source}: no media files found (give a folder, a glob, or a CSV/Parquet list with a 'path' column)")
    return sorted({file.absolute() for file in files})


def models_identity(found: dict) -> dict:
    """{kind: sha256 of its weights} of the checkpoint folders ``found`` (from ``find_models``)."""
    from ..models.checkpoint import WEIGHTS_FILE

    return {kind: file_digest(Path(folder) / WEIGHTS_FILE) for kind, folder in found.items()}


def file_key(path: Path, models: dict) -> str:
    """The result's name: a hash of the file's bytes and of the models' weights."""
    digest = hashlib.sha256()
    digest.update(file_digest(path).encode())
    for kind in sorted(models):
        digest.update(f"{kind}:{models[kind]}".encode())
    return digest.hexdigest()[:24]


def decode(row: dict, window: float, hop: float, frames: int) -> dict:
    """Ray task: one file's windows (audio clips and frames) packed as bytes, or its error."""
    from .timeline import timeline_inputs

    try:
        inputs = timeline_inputs(row["path"], None, window, hop, frames)
    except (EmolibError, OSError) as error:
        return {**row, "inputs": b"", "error": str(error)}
    return {**row, "inputs": pack(inputs), "error": ""}


def pack(inputs) -> bytes:
    """TimelineInputs as one .npz (arrays only, no pickles): the windows' audio and frames, and a JSON header."""
    import json

    import numpy as np

    arrays = {"header": np.frombuffer(json.dumps({"starts": inputs.starts, "ends": inputs.ends, "notes": inputs.notes,
                                                  "seconds": inputs.seconds}).encode(), dtype=np.uint8)}
    for index, (clip, images) in enumerate(zip(inputs.clips, inputs.images)):
        if clip is not None:
            arrays[f"clip{index}"] = clip
        for number, image in enumerate(images or []):
            arrays[f"image{index}_{number}"] = image
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def unpack(data: bytes):
    """The TimelineInputs that ``pack`` stored."""
    import json

    import numpy as np

    from .timeline import TimelineInputs

    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        header = json.loads(archive["header"].tobytes())
        count = len(header["starts"])
        clips = [archive[f"clip{index}"] if f"clip{index}" in archive else None for index in range(count)]
        images = []
        for index in range(count):
            names = sorted((name for name in archive.files if name.startswith(f"image{index}_")), key=lambda name: int(name.split("_")[1]))
            images.append([archive[name] for name in names] or None)
    return TimelineInputs(header["starts"], header["ends"], clips, images, header["notes"], header["seconds"])


class Annotator:
    """Ray actor: loads the Predictor once, then predicts every window of each decoded file."""

    def __init__(self, models_dir: str, models: str, device: str = "cpu", threads: int = 1):
        import torch

        from .predictor import Predictor

        torch.set_num_threads(threads)
        self.predictor = Predictor.from_dir(models_dir, device=device, threads=threads)
        self.models = models  # the driver's names and hashes of the checkpoints: written into every row

    def __call__(self, batch: dict) -> dict:
        from .timeline import timeline_rows

        out = {"key": [], "path": [], "table": [], "error": [], "seconds": []}
        for key, path, packed, error in zip(batch["key"], batch["path"], batch["inputs"], batch["error"]):
            table, inputs = b"", unpack(packed) if not error else None
            if not error:
                try:
                    rows = timeline_rows(self.predictor, inputs, progress=False)
                    table = to_parquet(rows.assign(file=str(path), key=key, models=self.models))
                except EmolibError as problem:
                    error = str(problem)
            out["key"].append(key)
            out["path"].append(path)
            out["table"].append(table)
            out["error"].append(error)
            out["seconds"].append(float(inputs.seconds) if inputs is not None else 0.0)
        return out


def to_parquet(table) -> bytes:
    buffer = io.BytesIO()
    table.to_parquet(buffer, index=False)
    return buffer.getvalue()


def annotate(source, models_dir, out, workers: int = 2, window: float = WINDOW_SECONDS, hop: float = 1.0, ray_address: str | None = None,
             gpus_per_worker: float = 0.0, cpus_per_worker: float = 0.5, progress: bool = True) -> dict:
    """Annotate every file of ``source`` with the models of ``models_dir`` into the dataset folder ``out``.

    Returns counts: files found, skipped (already done), annotated, failed, and audio hours annotated.
    Model actors take ``cpus_per_worker`` CPUs each (fractional, so on a small machine the decoding
    tasks always get CPUs: with every CPU held by actors, Ray Data's readers starve and the job hangs).
    """

    require_scale()
    import ray

    from ..models.checkpoint import find_models, read_checkpoint_config
    from ..transforms import FaceSettings

    out = Path(out)
    files = list_inputs(source)
    found = find_models(models_dir)
    models = models_identity(found)
    frames = FaceSettings(**read_checkpoint_config(found["face"])[1]["preprocessing"]["face"]).frames if "face" in found else 0
    done = {path.stem for folder in (WINDOWS_DIR, ERRORS_DIR) for path in (out / folder).glob("*.parquet")}
    todo = [{"path": str(path), "key": key} for path in files if (key := file_key(path, models)) not in done]
    counts = {"files": len(files), "skipped": len(files) - len(todo), "annotated": 0, "failed": 0, "audio_hours": 0.0}
    if not todo:
        return counts
    quiet_ray()
    started_ray = not ray.is_initialized()
    ray.init(address=ray_address, ignore_reinit_error=True, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        label = "; ".join(f"{kind}={Path(models_dir).name}/{kind}@{digest[:12]}" for kind, digest in models.items())
        return _run(ray, todo, counts, out, models_dir, label, window, hop, frames, workers, cpus_per_worker, gpus_per_worker, progress)
    finally:
        if started_ray:
            ray.shutdown()  # leave no Ray processes behind in the caller's process (a notebook, a test run)


def _run(ray, todo, counts, out, models_dir, models, window, hop, frames, workers, cpus_per_worker, gpus_per_worker, progress) -> dict:
    """The Ray Data job of ``annotate``: decode tasks, then the actor pool; results are written as they arrive."""
    import pandas as pd
    from tqdm.auto import tqdm

    dataset = ray.data.from_items(todo).map(decode, fn_kwargs={"window": window, "hop": hop, "frames": frames}, num_cpus=cpus_per_worker / 2)
    dataset = dataset.map_batches(Annotator, fn_constructor_kwargs={"models_dir": str(models_dir), "models": models,
                                                                     "device": "cuda" if gpus_per_worker else "cpu"},
                                  batch_size=1, compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=cpus_per_worker,
                                  num_gpus=gpus_per_worker)
    bar = tqdm(total=len(todo), desc="annotate", unit="file", disable=not progress)
    for result in dataset.iter_rows():
        if result["error"]:
            atomic_write(out / ERRORS_DIR / f"{result['key']}.parquet", to_parquet(pd.DataFrame([{"file": result["path"], "error": result["error"]}])))
            counts["failed"] += 1
        else:
            atomic_write(out / WINDOWS_DIR / f"{result['key']}.parquet", result["table"])
            counts["annotated"] += 1
            counts["audio_hours"] += result["seconds"] / 3600
        bar.update()
        bar.set_postfix(hours=f"{counts['audio_hours']:.3f}", failed=counts["failed"])
    bar.close()
    return counts


def quiet_ray() -> None:
    """Ray Data's own progress logs off: emolib shows one bar of files and audio hours."""
    import logging

    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)


def read_windows(out):
    """All annotated windows of an output folder as one DataFrame."""
    import pandas as pd

    files = sorted((Path(out) / WINDOWS_DIR).glob("*.parquet"))
    return pd.concat([pd.read_parquet(path) for path in files], ignore_index=True) if files else pd.DataFrame()

