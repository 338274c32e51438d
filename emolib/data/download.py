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
reason counted. Retries with backoff (connection errors, 429 and 5xx) are urllib3's ``Retry``.
"""
from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from ..errors import DataError
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
RETRIES = Retry(total=4, backoff_factor=0.5, status_forcelist=(429, 500, 502, 503, 504), allowed_methods=frozenset({"GET"}),
                raise_on_status=False, respect_retry_after_header=True)
TIMEOUT = (15, 60)  # connect, read (seconds)
CHUNK = 1 << 16
CONTINUATIONS = 3  # a transfer cut off mid-body continues with a Range request while it makes progress
QUOTA_WORDS = (b"exceeded its lfs budget", b"over its data quota", b"bandwidth limit", b"rate limit")


NOT_MEDIA_REASONS = ("Git LFS pointer", "HTML page", "quota message")
TOO_LARGE = "larger than the release's file"
BAD_HASH = "SHA-256 differs from the release's"


class SourceFailed(Exception):
    """This source cannot give this file (the reason is counted); the next source is tried."""


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
    """Fetch ``url`` into ``part``, continuing a partial file with a Range request; SourceFailed saying why it cannot.

    A body cut off mid-way continues from where it stopped, at most ``CONTINUATIONS`` times and only while each try
    brings bytes (the connection-level retries with backoff are urllib3's)."""
    offset = part.stat().st_size if part.is_file() else 0
    if offset > size:
        part.unlink()
        advance(-offset)
        offset = 0
    continuations = 0
    while offset < size:
        try:
            response = session.get(url, headers={"Range": f"bytes={offset}-"} if offset else {}, stream=True, timeout=TIMEOUT)
        except requests.RequestException as error:
            raise SourceFailed(f"connection failed ({type(error).__name__})") from None
        with response:
            if response.status_code not in (200, 206):
                raise SourceFailed(f"HTTP {response.status_code}")
            if response.status_code == 200 and offset:  # the server ignored the range: start again
                advance(-offset)
                offset = 0
            start, cut = offset, None
            try:
                with open(part, "ab" if offset else "wb") as file:
                    for chunk in response.iter_content(CHUNK):
                        if stop.is_set():
                            raise KeyboardInterrupt
                        if offset == 0 and (reason := not_media(chunk, response.headers.get("Content-Type", ""))):
                            raise SourceFailed(reason)
                        file.write(chunk)
                        offset += len(chunk)
                        advance(len(chunk))
                        if offset > size:
                            raise SourceFailed(TOO_LARGE)
            except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError, requests.Timeout) as error:
                cut = f"transfer cut off ({type(error).__name__})"
            if cut is None and offset < size:
                cut = "transfer ended early"
        if cut:
            if offset > start and continuations < CONTINUATIONS:
                continuations += 1
                continue
            raise SourceFailed(cut)


def fetch_file(session, row, sources, root: Path, advance, stop: threading.Event) -> tuple[str, list[str]]:
    """("present" | "fetched" | "failed", reasons of the sources that could not give it) for one release file."""
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
    for _, template in sources:
        try:
            transfer(session, template.format(path=row.path), part, row.size, mine, stop)
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


def download(root, parts=DEFAULT_PARTS, sources=None, workers: int = DEFAULT_WORKERS, progress: bool = True, listing=None) -> dict:
    """Fetch every release file of ``parts`` that ``root`` lacks; returns counts and the failures by reason. ``listing``: another
    release list (path, sha256, size), for a mirror of another version or a test."""
    from tqdm.auto import tqdm

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / MARKER).write_text("the licence and registration note were shown\n")
    sources = sources or sources_for()
    files = release_files(parts, listing)
    session, stop, lock = http_session(workers), threading.Event(), threading.Lock()
    bar = tqdm(total=int(files["size"].sum()), unit="B", unit_scale=True, unit_divisor=1024, desc="CREMA-D", disable=not progress)

    def advance(count: int) -> None:
        with lock:
            bar.update(count)

    result = {"files": len(files), "present": 0, "fetched": 0, "failed": 0, "source_skips": Counter(), "failures": Counter(), "failed_files": []}
    executor = ThreadPoolExecutor(max_workers=workers)
    try:
        futures = {executor.submit(fetch_file, session, row, sources, root, advance, stop): row.path for row in files.itertuples(index=False)}
        for future in as_completed(futures):
            status, reasons = future.result()
            result[status] += 1
            result["source_skips"].update(reasons)
            if status == "failed":
                result["failures"][reasons[-1] if reasons else "no source"] += 1
                result["failed_files"].append(futures[future])
            bar.set_postfix(done=result["present"] + result["fetched"], failed=result["failed"], refresh=False)
    except KeyboardInterrupt:
        stop.set()
        executor.shutdown(wait=True, cancel_futures=True)
        raise
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
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
    return line
