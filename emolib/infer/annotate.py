"""``emolib annotate``: emotion timelines for a whole archive of videos and recordings, on Ray Data.

The input is a folder (searched recursively), a glob, or a CSV/Parquet list of media files. Each file
becomes windows as in ``emolib timeline`` (4 s every 1 s by default; the same numbers, from the same
code): decoding runs in Ray tasks, the models in a pool of actors that load them once
(``map_batches`` with a callable class), so decoding and inference overlap. Ray runs locally by
default (on this machine's cores) or joins a cluster (``ray_address``).

Output folder (``infer.archive``: keys, schema, reading back):
- ``windows/<key>.parquet``: one row per window (file, start, end, emotion, final / voice / face /
  fused probabilities, modalities used, face found, audio RMS, the models' names and hashes, the
  settings key); read them all with ``pandas.read_parquet(OUT / "windows")``, pyarrow or DuckDB;
- ``errors/<key>.parquet``: the files that could not be read, with the reason.
Every input path ends with its own result. A path already annotated from the same bytes with the same
settings is skipped, so a second run does nothing and a killed run restarts where it stopped; files of
identical content are decoded and predicted once. Each result is written atomically when it arrives.
"""
from __future__ import annotations

import io
from pathlib import Path

from ..audio import WINDOW_SECONDS
from ..errors import EmolibError, check_output_folder
from ..speech import stored_rule
from .speakers import as_dict, group_digest, listed_speakers, speaker_statistics
from .archive import (ERRORS_DIR, WINDOWS_DIR, content_key, error_bytes, existing_results, list_inputs, parquet_bytes, path_part, read_errors,
                      read_windows, relabel, result_key, run_settings, settings_key, window_schema, write_result)

INSTALL = "pip install 'emolib[scale]'"
MISSING = "missing"

__all__ = ["annotate", "list_inputs", "read_windows", "read_errors", "WINDOWS_DIR", "ERRORS_DIR"]


def require_scale() -> None:
    """EmolibError naming the extra to install when Ray Data or pyarrow is missing."""
    try:
        import pyarrow  # noqa: F401
        import ray.data  # noqa: F401
    except ImportError as error:
        raise EmolibError(f"emolib annotate needs Ray Data and pyarrow ({error.name} is missing): {INSTALL}") from None


def decode(row: dict, window: float, hop: float, frames: int, speech_threshold: float | None = None) -> dict:
    """Ray task: one file's windows (audio clips and frames, and their speech when the rule is on) packed as bytes, or its error."""
    from .timeline import timeline_inputs

    try:
        inputs = timeline_inputs(row["path"], None, window, hop, frames, speech_threshold)
    except (EmolibError, OSError) as error:
        return {**row, "inputs": b"", "error": str(error)}
    return {**row, "inputs": pack(inputs), "error": ""}


def pack(inputs) -> bytes:
    """TimelineInputs as one .npz (arrays only, no pickles): the windows' audio, each decoded frame once (windows share frames)
    and a JSON header with each window's frame numbers."""
    import json

    import numpy as np

    arrays = {"header": np.frombuffer(json.dumps({"starts": inputs.starts, "ends": inputs.ends, "notes": inputs.notes,
                                                  "seconds": inputs.seconds, "window_notes": inputs.window_notes, "speech": inputs.speech,
                                                  "tail": inputs.tail, "frame_ids": inputs.frame_ids}).encode(), dtype=np.uint8)}
    for index, (clip, images, ids) in enumerate(zip(inputs.clips, inputs.images, inputs.frame_ids)):
        if clip is not None:
            arrays[f"clip{index}"] = clip
        for number, image in zip(ids, images or []):
            arrays.setdefault(f"frame{number}", image)
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
        frames = {name: archive[name] for name in archive.files if name.startswith("frame")}
    images = [[frames[f"frame{number}"] for number in ids] or None for ids in header["frame_ids"]]
    return TimelineInputs(header["starts"], header["ends"], clips, images, header["notes"], header["seconds"], header["window_notes"],
                          header["speech"], header["tail"], header["frame_ids"])


class Annotator:
    """Ray actor: loads the Predictor once, then predicts every window of each decoded file."""

    def __init__(self, models_dir: str, models: str, settings: str, device: str = "cpu", threads: int = 1, min_speech: float | None = None,
                 speaker_norm: bool = True, speaker_stats: dict | None = None, abstain: float | None = None):
        import torch

        from .predictor import Predictor

        torch.set_num_threads(threads)
        self.predictor = Predictor.from_dir(models_dir, device=device, threads=threads, min_speech=min_speech, speaker_norm=speaker_norm,
                                            abstain=abstain)
        self.speaker_stats = speaker_stats or {}  # {speaker: SpeakerStats as a dict} of a list with a speaker column
        self.models = models  # the driver's names and hashes of the checkpoints: written into every row
        self.settings = settings
        self.schema = window_schema(self.predictor.labels)

    def __call__(self, batch: dict) -> dict:
        from .speakers import FixedStats
        from .timeline import timeline_rows

        out = {"key": [], "path": [], "table": [], "error": [], "seconds": []}
        for key, path, packed, error, speaker in zip(batch["key"], batch["path"], batch["inputs"], batch["error"], batch["speaker"]):
            table, inputs = b"", unpack(packed) if not error else None
            if not error:
                try:
                    stats = FixedStats.of(self.speaker_stats[speaker]) if speaker in self.speaker_stats else None
                    rows = timeline_rows(self.predictor, inputs, progress=False, speaker=stats)
                    table = parquet_bytes(rows.assign(file=str(path), key=key, models=self.models, settings=self.settings,
                                                      speaker=speaker or None), self.schema)
                except EmolibError as problem:
                    error = str(problem)
            out["key"].append(key)
            out["path"].append(path)
            out["table"].append(table)
            out["error"].append(error)
            out["seconds"].append(float(inputs.seconds) if inputs is not None else 0.0)
        return out


def annotate(source, models_dir, out, workers: int = 2, window: float = WINDOW_SECONDS, hop: float = 1.0, ray_address: str | None = None,
             gpus_per_worker: float = 0.0, cpus_per_worker: float = 0.5, progress: bool = True, min_speech: float | None = None,
             speaker_norm: bool = True, abstain: float | None = None) -> dict:
    """Annotate every file of ``source`` with the models of ``models_dir`` into the dataset folder ``out``.

    An eGeMAPS voice model standardises each window per speaker (``infer.speakers``): by the file's own running statistics,
    or, for a list with a ``speaker`` column, by all of that speaker's files' (measured first); ``speaker_norm`` False: by
    the corpus statistics it stores.

    Returns counts: files found, skipped (already done with these settings), annotated, failed,
    replaced (earlier results of the same path from other bytes or settings), and audio hours
    annotated. Model actors take ``cpus_per_worker`` CPUs each (fractional, so on a small machine
    the decoding tasks always get CPUs: with every CPU held by actors, Ray Data's readers starve and
    the job hangs).
    """
    require_scale()
    import ray

    from ..models.checkpoint import find_models, read_checkpoint_config
    from ..transforms import FaceSettings

    out = check_output_folder(out, f"--out {out}")  # before any file is read: a bad --out fails now, not after the work
    files = list_inputs(source)
    found = find_models(models_dir)
    rule = stored_rule(read_checkpoint_config(found["voice"])[1]) if "voice" in found else stored_rule(None)
    min_speech = rule["min_seconds"] if min_speech is None else float(min_speech)  # the voice model's own rule unless given
    settings = run_settings(found, window, hop, min_speech, speaker_norm, abstain)
    speech_threshold = rule["threshold"] if "voice" in found and min_speech > 0 else None
    settings_id = settings_key(settings)
    by_speaker = speaker_norm and "voice" in found and read_checkpoint_config(found["voice"])[1]["model"].get("speaker_norm", False)
    listed = set(files)
    speakers = {path: speaker for path, speaker in listed_speakers(source).items() if path in listed} if by_speaker else {}
    frames = FaceSettings.from_stored(read_checkpoint_config(found["face"])[1]["preprocessing"]["face"]).frames if "face" in found else 0
    existing = existing_results(out)
    counts = {"files": len(files), "skipped": 0, "annotated": 0, "failed": 0, "replaced": 0, "audio_hours": 0.0}
    groups: dict[str, list] = {}  # content key -> [(path, result key, its older results)]
    contents = {}
    for path in files:
        try:
            contents[path] = content_key(path, settings_id)
        except OSError:
            continue
    members: dict[str, list] = {}
    for path, speaker in speakers.items():
        if path in contents:
            members.setdefault(speaker, []).append(contents[path])
    for path in files:
        try:
            content = contents[path] if path in contents else content_key(path, settings_id)
            if path in speakers:  # its rows depend on all of its speaker's files
                content = content_key(path, f"{settings_id}:{group_digest(speakers[path], members[speakers[path]])}")
        except OSError as error:
            content = f"{MISSING}-{settings_id}"
            _finish(out, counts, [(path, result_key(path, content), existing.get(path_part(path), []), "")], None,
                    f"{path}: cannot read the file ({error.strerror or error})", settings_id, 0.0)
            continue
        key, older = result_key(path, content), existing.get(path_part(path), [])
        if any(file.stem == key for file in older):
            counts["skipped"] += 1
            continue
        groups.setdefault(content, []).append((path, key, older, speakers.get(path, "")))
    if not groups:
        return counts
    quiet_ray()
    started_ray = not ray.is_initialized()
    ray.init(address=ray_address, ignore_reinit_error=True, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        label = "; ".join(f"{kind}={Path(models_dir).name}/{kind}@{digest[:12]}" for kind, digest in settings["models"].items())
        stats = {}
        if speakers:
            needed = {path: speaker for path, speaker in speakers.items() if any(speaker == item[3] for paths in groups.values() for item in paths)}
            stats = {speaker: as_dict(value) for speaker, value in
                     speaker_statistics(ray, needed, settings["window"], settings["hop"], speech_threshold, min_speech, cpus_per_worker / 2).items()}
        return _run(ray, groups, counts, out, models_dir, label, settings, settings_id, frames, workers, cpus_per_worker, gpus_per_worker,
                    progress, speech_threshold, stats)
    finally:
        if started_ray:
            ray.shutdown()  # leave no Ray processes behind in the caller's process (a notebook, a test run)


def _run(ray, groups, counts, out, models_dir, models, settings, settings_id, frames, workers, cpus_per_worker, gpus_per_worker,
         progress, speech_threshold=None, speaker_stats=None) -> dict:
    """The Ray Data job of ``annotate``: one decode task and one prediction per distinct content, then each path's result."""
    from tqdm.auto import tqdm

    todo = [{"path": str(paths[0][0]), "key": content, "speaker": paths[0][3]} for content, paths in groups.items()]
    dataset = ray.data.from_items(todo).map(decode, fn_kwargs={"window": settings["window"], "hop": settings["hop"], "frames": frames,
                                                                             "speech_threshold": speech_threshold},
                                            num_cpus=cpus_per_worker / 2)
    dataset = dataset.map_batches(Annotator, fn_constructor_kwargs={"models_dir": str(models_dir), "models": models,
                                                                     "settings": settings_id, "device": "cuda" if gpus_per_worker else "cpu",
                                                                     "min_speech": settings["min_speech"], "speaker_norm": settings["speaker_norm"],
                                                                     "speaker_stats": speaker_stats or {}, "abstain": settings["abstain"]},
                                  batch_size=1, compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=cpus_per_worker,
                                  num_gpus=gpus_per_worker)
    bar = tqdm(total=sum(map(len, groups.values())), desc="annotate", unit="file", disable=not progress)
    for result in dataset.iter_rows():
        _finish(out, counts, groups[result["key"]], result["table"], result["error"], settings_id, result["seconds"], bar)
        bar.set_postfix(hours=f"{counts['audio_hours']:.3f}", failed=counts["failed"])
    bar.close()
    return counts


def _finish(out, counts, paths, table: bytes | None, error, settings: str, seconds: float, bar=None) -> None:
    """Write the result of one content (its windows as Parquet bytes, or its error) for each of its ``paths``: each path gets its own
    rows, or its own error row."""
    for path, key, older, _ in paths:
        if error:
            message = error if str(path) in error else f"{path}: {error}"
            write_result(out, ERRORS_DIR, key, error_bytes(path, message, key, settings), older)
            counts["failed"] += 1
        else:
            write_result(out, WINDOWS_DIR, key, relabel(table, path, key), older)
            counts["annotated"] += 1
            counts["audio_hours"] += seconds / 3600
        counts["replaced"] += sum(1 for old in older if old.stem != key)
        if bar is not None:
            bar.update()


def quiet_ray() -> None:
    """Ray Data's own progress logs off: emolib shows one bar of files and audio hours."""
    import logging

    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)
