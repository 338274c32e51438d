"""Where emolib keeps files and how it writes them: the cache root and the one atomic writer.

Every file emolib writes (checkpoints, configs, histories, reports, manifests, cache entries) goes
through ``atomic_write``: a temporary file in the target's folder, then ``os.replace``, so a
reader never sees half a file and a kill leaves the old file or the new one. Files get the
permissions a plain ``open`` would give (0666 less the umask: 0644 under the usual umask 022),
not mkstemp's private 0600, so a teammate can read a shared models folder.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

CACHE_ENV = "EMOLIB_CACHE"
DEFAULT_CACHE_ROOT = Path.home() / ".cache" / "emolib"
TEMP_SUFFIX = ".tmp"


def cache_root() -> Path:
    """The cache folder: ``$EMOLIB_CACHE``, else ``~/.cache/emolib`` (read at each call, never at import)."""
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE_ROOT).expanduser()


def umask_mode(base: int = 0o666) -> int:
    """``base`` less the process umask: the mode ``open(path, "w")`` would give a new file."""
    mask = os.umask(0)
    os.umask(mask)
    return base & ~mask


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path next to ``path``; on success it replaces ``path`` (mode as for a new file).

    On any exception the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    except OSError as error:  # the message names the user's file, not the temporary one
        raise OSError(error.errno, error.strerror, str(path)) from None
    os.close(handle)
    try:
        yield Path(temp)
        publish(temp, path)
    except OSError as error:
        Path(temp).unlink(missing_ok=True)
        if error.filename == temp or error.filename2 == temp or str(temp) in str(error):
            raise OSError(error.errno, error.strerror, str(path)) from None
        raise
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def publish(temp, path) -> Path:
    """Put the finished file ``temp`` (in ``path``'s folder) in place as ``path`` in one rename, with a new file's mode.
    ``atomic_path`` ends with it; so does a resumable download once its file is verified."""
    os.chmod(temp, umask_mode())
    os.replace(temp, path)
    return Path(path)


def atomic_write(path, data: bytes | str) -> Path:
    """Write ``data`` (text is UTF-8 encoded) to ``path`` atomically; return the path."""
    payload = data.encode() if isinstance(data, str) else data
    with atomic_path(path) as temp:
        temp.write_bytes(payload)
    return Path(path)


def atomic_save_tensors(tensors: dict, path, metadata: dict | None = None) -> Path:
    """Save a dict of torch tensors as safetensors, atomically."""
    from safetensors.torch import save_file

    with atomic_path(path) as temp:
        save_file({name: tensor.detach().contiguous().cpu() for name, tensor in tensors.items()}, str(temp), metadata=metadata)
    return Path(path)


def atomic_save_arrays(path, **arrays) -> Path:
    """Save numpy arrays as an uncompressed ``.npz``, atomically (read back with allow_pickle=False)."""
    import numpy as np

    with atomic_path(path) as temp:
        with open(temp, "wb") as file:
            np.savez(file, **arrays)
    return Path(path)


def remove_stale_temporaries(folder) -> int:
    """Delete temporary files left in ``folder`` by writes that were killed; returns how many."""
    removed = 0
    for stale in Path(folder).glob(f".*{TEMP_SUFFIX}"):
        with contextlib.suppress(OSError):
            stale.unlink()
            removed += 1
    return removed


def file_identity(path) -> str:
    """A short key that changes when the file changes: a hash of its absolute path, size and modification time.

    Cache entries are keyed by it, so a different tree with the same clip names, or a file that was
    replaced or edited, never reuses another file's entry.
    """
    import hashlib

    path = Path(path).absolute()
    info = path.stat()
    return hashlib.sha1(f"{path}\0{info.st_size}\0{info.st_mtime_ns}".encode()).hexdigest()[:16]


def file_digest(path) -> str:
    """sha256 (hex) of a file's bytes (remembered per file identity within a process)."""
    import hashlib

    key = file_identity(path)
    if key not in _DIGESTS:
        digest = hashlib.sha256()
        with open(path, "rb") as file:
            for block in iter(lambda: file.read(1 << 22), b""):
                digest.update(block)
        _DIGESTS[key] = digest.hexdigest()
    return _DIGESTS[key]


_DIGESTS: dict[str, str] = {}
