"""Checkpoints: ``model.safetensors`` + ``config.json`` (model config, label set, preprocessing).

``load_model(path)`` rebuilds a voice, face or fusion model from those two files alone: no
hub access, no pickles. ``find_models(dir)`` is the one place that decides which checkpoints a
models folder holds. Files are written atomically (``emolib.files``).
"""
from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

from ..cremad import EMOTIONS
from ..errors import ModelError
from ..files import atomic_save_tensors, atomic_write, file_digest

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
FORMAT_VERSION = 1
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".bin", ".ckpt")
MODEL_KINDS = ("voice", "face", "fusion")
ENCODER_LINKS = {"voice": "voice_checkpoint", "face": "face_checkpoint"}
HEAD_PREFIX = "head."  # the voice and face models' classifier; --init-from keeps everything else


def save_checkpoint(model, kind: str, directory, preprocessing: dict, extra: dict | None = None, labels=EMOTIONS) -> Path:
    """Write ``model.safetensors`` and ``config.json`` (with the label set ``labels``) for a model into ``directory``."""
    directory = Path(directory)
    if len(labels) != model.config.num_labels:
        raise ModelError(f"{directory}: {len(labels)} labels for a model with {model.config.num_labels} outputs")
    atomic_save_tensors(model.state_dict(), directory / WEIGHTS_FILE)
    config = {
        "format": FORMAT_VERSION,
        "kind": kind,
        "labels": list(labels),
        "model": asdict(model.config),
        "preprocessing": preprocessing,
        **(extra or {}),
    }
    atomic_write(directory / CONFIG_FILE, json.dumps(config, indent=2))
    return directory


def is_checkpoint(directory) -> bool:
    """True when ``directory`` holds a checkpoint's config.json."""
    return (Path(directory) / CONFIG_FILE).is_file()


def read_checkpoint_config(path) -> tuple[Path, dict]:
    """The checkpoint folder and its parsed config.json; refuses pickles with a clear message."""
    path = Path(path)
    if path.suffix in PICKLE_SUFFIXES:
        raise ModelError(f"{path}: refusing to load a pickle-based checkpoint; emolib loads only a folder with {WEIGHTS_FILE} and {CONFIG_FILE}")
    directory = path.parent if path.is_file() else path
    config_path = directory / CONFIG_FILE
    if not config_path.exists():
        raise ModelError(f"{directory}: no {CONFIG_FILE} here; expected an emolib checkpoint folder ({WEIGHTS_FILE} + {CONFIG_FILE})")
    try:
        config = json.loads(config_path.read_text())
        config["kind"], config["model"]
    except (ValueError, KeyError, TypeError) as error:
        raise ModelError(f"{config_path}: not an emolib checkpoint config ({error})") from None
    if config.get("format", FORMAT_VERSION) != FORMAT_VERSION:
        raise ModelError(f"{config_path}: checkpoint format {config.get('format')!r}; this emolib reads format {FORMAT_VERSION} "
                         f"(made by another emolib version? upgrade emolib, or retrain)")
    labels = config.setdefault("labels", list(EMOTIONS))  # checkpoints before label sets were CREMA-D's
    outputs = config["model"].get("num_labels", len(EMOTIONS)) if isinstance(config["model"], dict) else None
    if not isinstance(labels, list) or len(set(map(str, labels))) != len(labels) or len(labels) != outputs:
        raise ModelError(f"{config_path}: its labels {labels} do not fit a model with {outputs} outputs")
    return directory, config


def checkpoint_labels(model) -> tuple[str, ...]:
    """The label set of a loaded model (``load_model``), in the order of its outputs; an unsaved model with six
    outputs has CREMA-D's."""
    checkpoint = getattr(model, "checkpoint", None)
    if checkpoint is not None:
        return tuple(checkpoint["labels"])
    if model.config.num_labels == len(EMOTIONS):
        return EMOTIONS
    raise ModelError(f"a {type(model).__name__} with {model.config.num_labels} outputs and no checkpoint has no label set; "
                     f"save it with save_checkpoint(..., labels=...) and load it with load_model")


def init_from(path, kind: str, labels, **changes):
    """A ``kind`` model whose encoder (and its config) comes from the checkpoint at ``path`` (or a model ``load_model`` gave) and whose head is new,
    with one output per label of ``labels``: fine-tuning a trained model onto another label set (``--init-from``).

    ``changes`` override fields of the model config (e.g. ``freeze``). ModelError when ``path`` holds another kind.
    """
    from .nets import build_model

    if kind not in ENCODER_LINKS:
        raise ModelError("--init-from applies to the voice and face models (the fusion model trains on their embeddings)")
    source = path if hasattr(path, "checkpoint") else load_model(path)
    if source.checkpoint["kind"] != kind:
        raise ModelError(f"{source.checkpoint_dir}: a {source.checkpoint['kind']} checkpoint; --init-from for {kind} needs a {kind} checkpoint")
    config = replace(source.config, num_labels=len(labels), **{name: value for name, value in changes.items() if value is not None})
    model = build_model(kind, config, pretrained=False)
    kept = {name: value for name, value in source.state_dict().items() if not name.startswith(HEAD_PREFIX)}
    missing, unexpected = model.load_state_dict(kept, strict=False)
    if unexpected or any(not name.startswith(HEAD_PREFIX) for name in missing):
        raise ModelError(f"{source.checkpoint_dir}: its encoder does not fit a new {kind} model ({(unexpected or missing)[:3]})")
    return model


def find_models(models_dir, kinds=MODEL_KINDS, allow_mismatched_fusion: bool = False) -> dict[str, Path]:
    """The checkpoint folder of each of ``kinds`` that ``models_dir`` provides, as {kind: folder}.

    ``models_dir`` is a models folder (``voice/``, ``face/``, ``fusion/``; any subset) or one
    checkpoint folder. A fusion model also brings the voice and face checkpoints it was trained
    with: ``models_dir/voice`` and ``models_dir/face``, else the folders its config records
    (``voice_checkpoint``, ``face_checkpoint``, relative to it); a fusion model fine-tuned together with its
    encoders (``finetuned``) always brings its own, which then serve as the folder's voice and face models. Raises ModelError when the folder
    is missing, holds none of ``kinds``, or a fusion model's encoders cannot be found, or are not
    the checkpoints it was trained on (``fusion_lineage``) unless ``allow_mismatched_fusion``.
    """
    root = Path(models_dir)
    if not root.is_dir():
        raise ModelError(f"{root}: no such models folder (train models first, e.g. `emolib demo`, or pass --models)")
    found = {}
    if is_checkpoint(root):
        _, config = read_checkpoint_config(root)
        found[config["kind"]] = root
        root = root.parent if config["kind"] == "fusion" else root
    for kind in MODEL_KINDS:
        if kind not in found and is_checkpoint(root / kind):
            found[kind] = root / kind
    if "fusion" in found and read_checkpoint_config(found["fusion"])[1].get("finetuned"):
        _, fusion = read_checkpoint_config(found["fusion"])  # fine-tuned with its encoders: they are the folder's voice and face models
        for kind, key in ENCODER_LINKS.items():
            if fusion.get(key) and is_checkpoint(found["fusion"] / fusion[key]):
                found[kind] = (found["fusion"] / fusion[key]).resolve()
    needed = set(kinds) & set(found)
    if "fusion" in needed:
        needed |= set(ENCODER_LINKS)
        _, fusion = read_checkpoint_config(found["fusion"])
        for kind, key in ENCODER_LINKS.items():
            linked = found["fusion"] / fusion[key] if fusion.get(key) else None
            if kind not in found and linked is not None and is_checkpoint(linked):
                found[kind] = linked.resolve()
        missing = [kind for kind in ENCODER_LINKS if kind not in found]
        if missing:
            raise ModelError(f"{root}: the fusion model needs the {' and '.join(missing)} checkpoint it was trained with "
                             f"({'/, '.join(missing)}/ missing)")
        for kind in ENCODER_LINKS:
            check_weights_file(found[kind] / WEIGHTS_FILE)
        problems = fusion_lineage(found)
        if problems and not allow_mismatched_fusion:
            raise ModelError(f"{found['fusion']}: {problems[0]}; retrain it (`emolib train fusion`) or pass --allow-mismatched-fusion")
    if not needed:
        raise ModelError(f"{root}: no trained models (expected {', '.join(f'{kind}/' for kind in kinds)} checkpoint folders with {CONFIG_FILE})")
    return {kind: found[kind] for kind in MODEL_KINDS if kind in needed}


def build_from_config(directory: Path, config: dict):
    """The (untrained) model a checkpoint config describes; ModelError naming the folder when the config is unusable."""
    from .nets import build_model

    try:
        return build_model(config["kind"], config["model"], pretrained=False)
    except ModelError as error:
        raise ModelError(f"{directory / CONFIG_FILE}: {error}") from None
    except (TypeError, ValueError, KeyError, AttributeError, RuntimeError) as error:
        reason = " ".join(str(error).split())[:200]
        raise ModelError(f"{directory / CONFIG_FILE}: the model config is not one emolib can build ({type(error).__name__}: {reason})") from None


def check_weights_file(path: Path) -> None:
    """ModelError naming ``path`` when it is missing, or not a whole safetensors file (truncated by a copy, say):
    its header must parse and the file must be as long as the header says."""
    import struct

    if not path.is_file():
        raise ModelError(f"{path}: {WEIGHTS_FILE} is missing")
    size = path.stat().st_size
    try:
        with open(path, "rb") as file:
            (length,) = struct.unpack("<Q", file.read(8))
            header = json.loads(file.read(length)) if 0 < length <= size - 8 else None
        end = max((entry["data_offsets"][1] for name, entry in header.items() if name != "__metadata__"), default=0)
    except (struct.error, ValueError, TypeError, KeyError, AttributeError, UnicodeDecodeError):
        header = None
    if header is None or 8 + length + end != size:
        raise ModelError(f"{path}: unreadable safetensors file (truncated, or not safetensors; {size} bytes)")


def encoder_lineage(voice_dir, face_dir) -> dict[str, str]:
    """What a fusion checkpoint records about the encoders it is trained on: the sha256 of their weights (``fusion_lineage`` checks it)."""
    return {f"{kind}_sha256": file_digest(Path(folder) / WEIGHTS_FILE) for kind, folder in (("voice", voice_dir), ("face", face_dir))}


def fusion_lineage(found: dict[str, Path]) -> list[str]:
    """Why the fusion checkpoint in ``found`` is not tied to the voice and face checkpoints beside it ([] when it is).

    A fusion checkpoint records the sha256 of the encoders' weights it was trained on; a retrained
    voice or face model gives other embeddings (of the same size), and the fusion model then
    predicts near chance without any error.
    """
    _, fusion = read_checkpoint_config(found["fusion"])
    problems = []
    for kind in ENCODER_LINKS:
        recorded = fusion.get(f"{kind}_sha256")
        if not recorded:
            problems.append(f"the fusion model does not record which {kind} checkpoint it was trained on (made by an older emolib)")
        elif not (found[kind] / WEIGHTS_FILE).is_file() or file_digest(found[kind] / WEIGHTS_FILE) != recorded:
            problems.append(f"the fusion model was not trained on the {kind} checkpoint in {found[kind]} (its weights changed: retrained?)")
    return problems


def load_model(path, device: str = "cpu"):
    """Rebuild a model from a checkpoint folder; ``model.checkpoint`` holds its config.json, ``model.checkpoint_dir`` the folder."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory, config = read_checkpoint_config(path)
    weights = directory / WEIGHTS_FILE
    check_weights_file(weights)
    model = build_from_config(directory, config)
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError) as error:
        raise ModelError(f"{weights}: unreadable safetensors file ({error})") from None
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as error:
        shapes = " ".join(str(error).split())[:200]
        raise ModelError(f"{weights}: weights do not fit the model its config.json describes ({shapes})") from None
    if missing or unexpected:
        raise ModelError(f"{weights}: weights do not match the config (missing {missing[:3]}, unexpected {unexpected[:3]})")
    model.checkpoint, model.checkpoint_dir = config, directory
    return model.to(device).eval()
