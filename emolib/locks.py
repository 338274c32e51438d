"""A lock on an output folder, so two runs never write into one folder at once.

``folder_lock(folder)`` creates ``folder/.emolib.lock`` (exclusively) holding the owner's PID,
host and start time, and removes it when the run ends. A second run finds the lock and stops
with one line naming the owner; a lock whose process is gone (same host, PID not running) is
stale and is taken over.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from pathlib import Path

from .errors import EmolibError

LOCK_FILE = ".emolib.lock"


class FolderBusyError(EmolibError, RuntimeError):
    """Another live process holds the folder's lock."""


@contextlib.contextmanager
def folder_lock(folder, what: str = "run"):
    """Hold ``folder``'s lock for the duration of the block; FolderBusyError when another process holds it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    owner = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S"), "what": what}
    for _ in range(2):
        try:
            handle = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _read_owner(path)
            if holder is not None and _alive(holder):
                raise FolderBusyError(
                    f"{folder}: in use by process {holder.get('pid')} on {holder.get('host')} ({holder.get('what', 'a run')} "
                    f"started {holder.get('started', '?')}); wait for it to finish or use another output folder") from None
            path.unlink(missing_ok=True)  # stale: its process is gone
            continue
        with os.fdopen(handle, "w") as file:
            json.dump(owner, file)
        break
    else:
        raise FolderBusyError(f"{folder}: could not take the lock {path}")
    try:
        yield path
    finally:
        if (_read_owner(path) or {}).get("pid") == os.getpid():
            path.unlink(missing_ok=True)


def _read_owner(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _alive(owner: dict) -> bool:
    """True unless the owner is on this host and its PID is not running (then the lock is stale)."""
    if owner.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(owner.get("pid", -1)), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, TypeError):
        return True
    return True
