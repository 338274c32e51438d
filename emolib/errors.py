"""Errors emolib raises for bad input: each message is one line naming the file and the problem."""


class EmolibError(Exception):
    """Base of every expected failure; the CLI prints it as one line and exits with code 2."""


class DataError(EmolibError, ValueError):
    """A dataset folder, manifest or metadata file is unusable."""


class AudioError(EmolibError, ValueError):
    """An audio file or array is unusable."""


class VideoError(EmolibError, ValueError):
    """A video file or image is unusable."""


class ModelError(EmolibError, ValueError):
    """Weights or a checkpoint cannot be loaded."""


class CaptureError(EmolibError, RuntimeError):
    """A camera or microphone is missing or refused."""


def check_input_file(path, error: type[EmolibError]) -> None:
    """Raise ``error`` naming ``path`` when it is missing, not a file, or empty."""
    from pathlib import Path

    path = Path(path)
    if not path.exists():
        raise error(f"{path}: no such file")
    if not path.is_file():
        raise error(f"{path}: not a file")
    if path.stat().st_size == 0:
        raise error(f"{path}: empty file (0 bytes)")


def check_output_folder(path, what: str, error: type[EmolibError] = EmolibError):
    """``path`` (a Path), checked before any work to be a folder this process can write into, or one it can make: a probe folder
    is made and removed in its nearest existing parent, nothing else is written. ``error`` naming ``what`` (e.g. "--out DIR")
    when it is a file, or cannot be written."""
    import os
    import tempfile
    from pathlib import Path

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise error(f"{what}: not a folder (a file is there)")
    existing = next((parent for parent in (path, *path.parents) if parent.exists()), Path("."))
    if not existing.is_dir():
        raise error(f"{what}: cannot write there ({existing} is not a folder)")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".emolib-probe-", dir=existing))
    except OSError as problem:
        raise error(f"{what}: cannot write there ({problem.strerror or problem})") from None
    return path
