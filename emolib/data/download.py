"""``emolib download cremad``: CREMA-D's media from the official sources, every file verified against the release list.

Sources are tried in order for each file, falling back to the next on any error: the GitLab mirror the
release README names, the GitHub LFS media endpoint of the release repository, then every base URL the
user gives (``--source``: a university mirror, a bucket, a local folder served over HTTP), each holding
the release's relative paths (``VideoFlash/1001_DFA_ANG_XX.flv``). The built-in URL forms are in
``SOURCES`` alone; they could not be checked from a machine without internet.

A file counts as fetched only when its size and SHA-256 match the release list; only then is it
renamed into place (``files.publish``). Until then it is ``DIR/.partial/<path>.part``, so Ctrl-C
leaves no half file under a real name, and a rerun continues it with an HTTP Range request (or starts
it again where the server ignores ranges). A rerun skips files already verified. An HTML page, a quota
message or a Git LFS pointer in a response is not media: that source is skipped for the file and the
reason counted. Retries with backoff (connection errors, 429 and 5xx) are urllib3's ``Retry``, whose waits wake at once on
Ctrl-C. A source gets ``DEADLINE`` seconds for a file (a silent server is given up after ``READ_TIMEOUT`` s without data,
twice); a source that stalls ``STALLS`` times is left out for the rest of the run, and the summary names it. A server that
refuses the Range request of a partial file (416), or a partial file larger than the release's, starts that file from zero.
Ctrl-C stops within about a second, keeping every ``.part`` file for the next run.
"""
from __future__ import annotations

import queue
import threading
import time
from collections import Counter
from pathlib import Path

from ..errors import DataError, check_output_folder
from .release import DEFAULT_PARTS, PARTS, release_files
from .transfer import DEFAULT_WORKERS, STALLS, Stopped, fetch_file, http_session

SOURCES = {  # the release's media by relative path
    "gitlab-mirror": "https://gitlab.com/cs-cooper-lab/crema-d-mirror/-/raw/main/{path}",
    "github-lfs": "https://media.githubusercontent.com/media/CheyneyComputerScience/CREMA-D/master/{path}",
}
LICENCE = ("CREMA-D (Cao et al., 2014) is available under the Open Database License (http://opendatacommons.org/licenses/odbl/1.0/); "
           "its contents under the Database Contents License (http://opendatacommons.org/licenses/dbcl/1.0/).")
REGISTER = ("The release's README asks everyone who uses CREMA-D to register: "
            "https://docs.google.com/forms/d/e/1FAIpQLSdvOR994_Hsx7OkBU3oCzluXcmxw2P1nr-zBxcPgVBNLdD9Eg/viewform")
MARKER = ".emolib-download"  # written after the first run has shown the licence
STOP_GRACE = 1.0  # seconds Ctrl-C waits for the transfers to put their partial files down


def sources_for(extra=(), builtin: bool = True) -> list[tuple[str, str]]:
    """(name, URL template with ``{path}``) in the order they are tried: the built-in ones, then each ``--source`` base URL."""
    found = list(SOURCES.items()) if builtin else []
    for base in extra:
        if not str(base).startswith(("http://", "https://")):
            raise DataError(f"--source {base}: not an http(s) URL (serve a local folder with `python -m http.server`)")
        found.append((str(base), str(base).rstrip("/") + "/{path}"))
    if not found:
        raise DataError("no source to download from: give --source URL, or drop --no-builtin-sources")
    return found


def plan(root, parts=DEFAULT_PARTS, listing=None):
    """The release files of ``parts`` and which of them ``root`` already has at the right size (not yet hashed)."""
    files = release_files(parts, listing)
    root = Path(root)
    here = [(root / path).is_file() and (root / path).stat().st_size == size for path, size in zip(files["path"], files["size"])]
    return files.assign(here=here)


def dry_run_lines(root, parts=DEFAULT_PARTS, listing=None) -> list[str]:
    files = plan(root, parts, listing)
    lines = []
    for part in parts:
        rows = files[files["part"] == part]
        todo = rows[~rows["here"]]
        lines.append(f"{PARTS[part]}: {len(rows):,} files, {rows['size'].sum() / 1e9:.2f} GB in the release; to fetch {len(todo):,} files, "
                     f"{todo['size'].sum() / 1e9:.2f} GB (already here at the right size: {len(rows) - len(todo):,})")
    todo = files[~files["here"]]
    lines.append(f"total to fetch: {len(todo):,} files, {todo['size'].sum() / 1e9:.2f} GB into {root}")
    return lines


def licence_lines(root) -> list[str]:
    """The licence and registration request, shown on the first run into ``root``."""
    return [] if (Path(root) / MARKER).is_file() else [LICENCE, REGISTER]


def check_destination(root) -> Path:
    """``root``, checked to be a folder this process can write into or make (``errors.check_output_folder``)."""
    return check_output_folder(root, f"--to {root}", DataError)


def download(root, parts=DEFAULT_PARTS, sources=None, workers: int = DEFAULT_WORKERS, progress: bool = True, listing=None) -> dict:
    """Fetch every release file of ``parts`` that ``root`` lacks; returns counts, the failures by reason, and the sources that
    stalled. ``listing``: another release list (path, sha256, size), for a mirror of another version or a test.

    The transfers run in daemon threads: Ctrl-C (KeyboardInterrupt) stops them within ``STOP_GRACE`` s, whatever a server is
    doing, and leaves their ``.part`` files for the next run."""
    from tqdm.auto import tqdm

    root = check_destination(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
        (root / MARKER).write_text("the licence and registration note were shown\n")
    except OSError as error:
        raise DataError(f"--to {root}: cannot write there ({error.strerror or error})") from None
    sources = sources or sources_for()
    files = release_files(parts, listing)
    session, stop, lock, stalls = http_session(workers), threading.Event(), threading.Lock(), Counter()
    bar = tqdm(total=int(files["size"].sum()), unit="B", unit_scale=True, unit_divisor=1024, desc="CREMA-D", disable=not progress)

    def advance(count: int) -> None:
        with lock:
            bar.update(count)

    todo, done = queue.Queue(), queue.Queue()
    for row in files.itertuples(index=False):
        todo.put(row)

    def work() -> None:
        while not stop.is_set():
            try:
                row = todo.get_nowait()
            except queue.Empty:
                return
            try:
                done.put((row.path, *fetch_file(session, row, sources, root, advance, stop, stalls)))
            except Stopped:
                return
            except OSError as error:  # the destination, not a source: this file cannot be written
                done.put((row.path, "failed", [f"cannot write {root / row.path} ({error.strerror or error})"]))

    threads = [threading.Thread(target=work, daemon=True, name=f"emolib-download-{index}") for index in range(max(1, min(workers, len(files))))]
    for thread in threads:
        thread.start()
    result = {"files": len(files), "present": 0, "fetched": 0, "failed": 0, "source_skips": Counter(), "failures": Counter(), "failed_files": [],
              "stalled": stalls}
    try:
        for _ in range(len(files)):
            while True:
                try:
                    path, status, reasons = done.get(timeout=0.2)  # a short wait: Ctrl-C is seen at once
                    break
                except queue.Empty:
                    if not any(thread.is_alive() for thread in threads) and done.empty():
                        raise DataError("the download's transfers ended without a result (an internal error)") from None
            result[status] += 1
            result["source_skips"].update(reasons)
            if status == "failed":
                result["failures"][reasons[-1] if reasons else "no source"] += 1
                result["failed_files"].append(path)
            bar.set_postfix(done=result["present"] + result["fetched"], failed=result["failed"], refresh=False)
    except KeyboardInterrupt:
        stop.set()
        ends = time.monotonic() + STOP_GRACE
        for thread in threads:
            thread.join(max(0.0, ends - time.monotonic()))
        raise
    finally:
        bar.close()
    return result


def summary(result: dict) -> str:
    verified = result["present"] + result["fetched"]
    line = (f"verified {verified:,} of {result['files']:,} files (fetched {result['fetched']:,}, already here {result['present']:,}); "
            f"failed {result['failed']:,}")
    if result["failures"]:
        line += " (" + ", ".join(f"{reason}: {count:,}" for reason, count in result["failures"].most_common()) + ")"
    if result["source_skips"]:
        line += "; sources skipped: " + ", ".join(f"{reason} {count:,}" for reason, count in result["source_skips"].most_common())
    stalled = {name: count for name, count in result.get("stalled", {}).items() if count}
    if stalled:
        line += "; stalled: " + ", ".join(f"{name} ({count:,} files{', then left out' if count >= STALLS else ''})" for name, count in stalled.items())
    return line
