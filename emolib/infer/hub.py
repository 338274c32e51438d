"""Models by name: a local models folder, or a Hugging Face Hub repository downloaded with ``snapshot_download``.

A trained models folder (``voice/``, ``face/``, ``fusion/`` and its model card ``README.md``) is uploaded
as it is (``huggingface-cli upload OWNER/NAME models``) and used anywhere by its name.
"""
from __future__ import annotations

import re
from pathlib import Path

from ..errors import ModelError

REPO_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
STARTER = "starter"  # the models emolib ships (emolib/assets/starter): RAVDESS speech and FER2013 faces, no training needed
MODEL_FILES = ("config.json", "model.safetensors", "*/config.json", "*/model.safetensors", "README.md")  # a models folder or one checkpoint


def models_folder(name_or_dir) -> Path:
    """The local folder of ``name_or_dir``: itself when it exists, else the snapshot of the hub repository it names.

    ModelError (one line) when it is neither a folder nor a repository name, or when the repository
    cannot be fetched (offline, unknown, private), saying how to provide the folder instead.
    """
    path = Path(str(name_or_dir)).expanduser()
    if path.exists():
        return path
    name = str(name_or_dir)
    if name == STARTER:
        return starter_folder()
    if not REPO_ID.match(name):
        raise ModelError(f"{name}: no such models folder (train models first, e.g. `emolib demo`, or give a folder or a hub name OWNER/NAME)")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        return Path(snapshot_download(repo_id=name, allow_patterns=list(MODEL_FILES)))
    except (LocalEntryNotFoundError, RepositoryNotFoundError, HfHubHTTPError, OSError, ValueError) as error:
        reason = " ".join(str(error).split())[:160]
        raise ModelError(f"{name}: not a local folder, and the Hugging Face Hub repository could not be fetched ({type(error).__name__}: "
                         f"{reason}); download it where there is internet (`huggingface-cli download {name} --local-dir DIR`) "
                         f"and pass the folder DIR instead") from None


def starter_folder() -> Path:
    """The starter models' folder inside the installed package."""
    from importlib import resources

    folder = Path(str(resources.files("emolib") / "assets" / STARTER))
    if not (folder / "voice").is_dir() and not (folder / "face").is_dir():
        raise ModelError(f"{folder}: the starter models are missing from this emolib installation (reinstall emolib)")
    return folder
