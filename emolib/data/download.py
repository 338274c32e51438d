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

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from ..errors import DataError, check_output_folder
from ..files import file_digest, publish
from .release import DEFAULT_PARTS, PARTS, release_files
from .scan import LFS_POINTER_PREFIX

SOURCES = {  # the release's media by relative path
    "gitlab-mirror": "https://gitlab.com/cs-cooper-lab/crema-d-mirror/-/raw/main/{path}",
    "github-lfs": "https://media.githubusercontent.com/media/CheyneyComputerScience/CREMA-D/master/{path}",
}
LICENCE = ("CREMA-D (Cao et al., 2014) is available under the Open Database License (http://opendatacommons.org/licenses/odbl/1.0/); "
           "its contents under the Database Contents License (http://opendatacommons.org/licenses/dbcl/1.0/).")
REGISTER = ("The release's README asks everyone who uses CREMA-D to register: "
            "https://docs.google.com/forms/d/e/1FAIpQLSdvOR994_Hsx7OkBU3oCzluXcmxw2P1nr-zBxcPgVBNLdD9Eg/viewform")
PARTIAL_DIR = ".partial"
MARKER = ".emolib-download"  # written after the first run has shown the licence
DEFAULT_WORKERS = 4
CONNECT_TIMEOUT, READ_TIMEOUT = 15, 20  # seconds: a server that sends nothing for READ_TIMEOUT s has stalled
DEADLINE = 120  # seconds a source may take for one file (CREMA-D's largest file is about 1 MB), its retries' waits included
STALLS = 2  # a source that stalls this many times is left out for the rest of the run
STOP_GRACE = 1.0  # seconds Ctrl-C waits for the transfers to put their partial files down
CHUNK = 1 << 16
CONTINUATIONS = 3  # a transfer cut off mid-body continues with a Range request while it makes progress
QUOTA_WORDS = (b"exceeded its lfs budget", b"over its data quota", b"bandwidth limit", b"rate limit")


NOT_MEDIA_REASONS = ("Git LFS pointer", "HTML page", "quota message")
TOO_LARGE = "larger than the release's file"
BAD_HASH = "SHA-256 differs from the release's"


class SourceFailed(Exception):
    """This source cannot give this file (the reason is counted); the next source is tried."""


class Stalled(SourceFailed):
    """The source sent nothing for ``READ_TIMEOUT`` s, or would take longer than ``DEADLINE`` s for the file."""


class Stopped(Exception):
    """Ctrl-C: the transfer stops where it is, its partial file kept."""


_transfer = threading.local()  # this thread's stop event and deadline, which the retries' waits honour


def wait(seconds: float, why: str) -> None:
    """Sleep ``seconds`` unless Ctrl-C comes first (Stopped) or it would outlast this transfer's deadline (Stalled)."""
    stop, deadline = getattr(_transfer, "stop", None), getattr(_transfer, "deadline", None)
    if deadline is not None and time.monotonic() + seconds > deadline:
        raise Stalled(f"{why} would pass the {DEADLINE} s a file may take")
    if stop is None:
        time.sleep(seconds)
    elif stop.wait(seconds):
        raise Stopped()


class StoppableRetry(Retry):
    """urllib3's ``Retry`` whose backoff and ``Retry-After`` waits wake at once on Ctrl-C and never pass the file's deadline."""

    def sleep_for_retry(self, response) -> bool:
        seconds = self.get_retry_after(response)
        if seconds:
            wait(seconds, f"the server's Retry-After of {seconds:g} s")
            return True
        return False

    def _sleep_backoff(self) -> None:
        seconds = self.get_backoff_time()
        if seconds > 0:
            wait(seconds, "the retry's backoff")


RETRIES = StoppableRetry(total=4, read=1, backoff_factor=0.5, status_forcelist=(429, 500, 502, 503, 504), allowed_methods=frozenset({"GET"}),
                         raise_on_status=False, respect_retry_after_header=True)


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


def http_session(workers: int = DEFAULT_WORKERS) -> requests.Session:
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=RETRIES, pool_connections=workers, pool_maxsize=workers)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = "emolib-download"
    return session


def not_media(first: bytes, content_type: str) -> str | None:
    """Why the start of a response is not a media file (None when it may be one)."""
    head = first[:512].lstrip().lower()
    if first.startswith(LFS_POINTER_PREFIX):
        return NOT_MEDIA_REASONS[0]
    if "text/html" in content_type.lower() or head.startswith((b"<!doctype", b"<html", b"<?xml", b"<")):
        return NOT_MEDIA_REASONS[1]
    if any(words in head for words in QUOTA_WORDS):
        return NOT_MEDIA_REASONS[2]
    return None


def transfer(session, url: str, part: Path, size: int, advance, stop: threading.Event) -> None:
    """Fetch ``url`` into ``part``, continuing a partial file with a Range request; SourceFailed saying why it cannot (Stalled:
    no data for ``READ_TIMEOUT`` s, or past ``DEADLINE`` s), Stopped on Ctrl-C (the partial file kept).

    A body cut off mid-way continues from where it stopped, at most ``CONTINUATIONS`` times and only while each try
    brings bytes (the connection-level retries with backoff are urllib3's). A partial file larger than the file, or one the
    server will not continue (416), is started again from zero."""
    _transfer.stop, _transfer.deadline = stop, time.monotonic() + DEADLINE
    offset = part.stat().st_size if part.is_file() else 0
    if offset > size:
        part.unlink()
        advance(-offset)
        offset = 0
    continuations, restarted = 0, False
    while offset < size:
        remaining = _transfer.deadline - time.monotonic()
        if remaining <= 0:
            raise Stalled(f"over the {DEADLINE} s a file may take")
        try:
            response = session.get(url, headers={"Range": f"bytes={offset}-"} if offset else {}, stream=True,
                                   timeout=(CONNECT_TIMEOUT, min(READ_TIMEOUT, remaining)))
        except requests.exceptions.ConnectionError as error:
            if "Read timed out" in str(error) or isinstance(error, requests.exceptions.ReadTimeout):
                raise Stalled(f"no answer in {READ_TIMEOUT} s") from None
            raise SourceFailed(f"connection failed ({type(error).__name__})") from None
        except requests.Timeout:
            raise Stalled(f"no answer in {READ_TIMEOUT} s") from None
        except requests.RequestException as error:
            raise SourceFailed(f"request failed ({type(error).__name__})") from None
        with response:
            if response.status_code == 416 and offset and not restarted:  # the server will not continue this part: from zero
                part.unlink()
                advance(-offset)
                offset, restarted = 0, True
                continue
            if response.status_code not in (200, 206):
                raise SourceFailed(f"HTTP {response.status_code}")
            if response.status_code == 200 and offset:  # the server ignored the range: start again
                advance(-offset)
                offset = 0
            start, cut = offset, None
            try:
                with open(part, "ab" if offset else "wb") as file:
                    for chunk in arriving(response):
                        if stop.is_set():
                            raise Stopped()
                        if offset == 0 and (reason := not_media(chunk, response.headers.get("Content-Type", ""))):
                            raise SourceFailed(reason)
                        file.write(chunk)
                        offset += len(chunk)
                        advance(len(chunk))
                        if offset > size:
                            raise SourceFailed(TOO_LARGE)
                        if time.monotonic() > _transfer.deadline:
                            raise Stalled(f"over the {DEADLINE} s a file may take")
            except urllib3.exceptions.ReadTimeoutError:
                raise Stalled(f"no data for {READ_TIMEOUT} s") from None
            except urllib3.exceptions.DecodeError:
                raise SourceFailed("its Content-Encoding cannot be decoded") from None
            except (urllib3.exceptions.HTTPError, OSError) as error:
                cut = f"transfer cut off ({type(error).__name__})"
            if cut is None and offset < size:
                cut = "transfer ended early"
        if cut:
            if offset > start and continuations < CONTINUATIONS:
                continuations += 1
                continue
            raise SourceFailed(cut)


def arriving(response):
    """The body of a streamed response as it arrives: urllib3's ``read1`` gives whatever came (up to ``CHUNK``) instead of
    waiting for a whole chunk, so a server that sends a few bytes a second never holds a read past the deadline or Ctrl-C."""
    raw = response.raw
    read = raw.read1 if hasattr(raw, "read1") else raw.read  # urllib3 < 2.2 has no read1
    while chunk := read(CHUNK, decode_content=True):
        yield chunk


def fetch_file(session, row, sources, root: Path, advance, stop: threading.Event, stalls: Counter) -> tuple[str, list[str]]:
    """("present" | "fetched" | "failed", reasons of the sources that could not give it) for one release file; a source that
    stalled ``STALLS`` times (``stalls``, shared by the run's transfers) is not asked again. Stopped on Ctrl-C."""
    target = root / row.path
    if target.is_file() and target.stat().st_size == row.size and file_digest(target) == row.sha256:
        advance(row.size)
        return "present", []
    part = root / PARTIAL_DIR / f"{row.path}.part"
    part.parent.mkdir(parents=True, exist_ok=True)
    counted = 0

    def mine(count: int) -> None:  # this file's share of the progress bar
        nonlocal counted
        counted += count
        advance(count)

    if part.is_file():
        mine(part.stat().st_size)  # a partial file from an earlier run is continued
    reasons = []
    for name, template in sources:
        if stalls[name] >= STALLS:
            reasons.append(f"stalled {STALLS} times: left out")
            continue
        try:
            transfer(session, template.format(path=row.path), part, row.size, mine, stop)
        except Stalled as failure:
            stalls[name] += 1
            reasons.append(f"stalled ({failure})")
            continue
        except SourceFailed as failure:
            reasons.append(str(failure))
            if str(failure) in NOT_MEDIA_REASONS + (TOO_LARGE,):  # nothing of it is worth continuing
                part.unlink(missing_ok=True)
                mine(-counted)
            continue
        if part.stat().st_size == row.size and file_digest(part) == row.sha256:
            target.parent.mkdir(parents=True, exist_ok=True)
            publish(part, target)
            mine(row.size - counted)
            return "fetched", reasons
        part.unlink()
        mine(-counted)
        reasons.append(BAD_HASH)
    return "failed", reasons


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
