"""One release file from its sources over HTTP: verified, resumable, and never longer than its deadline.

``fetch_file`` tries a file's sources in order (``download`` runs it in worker threads); ``transfer`` fetches one URL into
``DIR/.partial/<path>.part``, continuing a partial file with a Range request, and tells a source that cannot give the file
(``SourceFailed``, counted by reason) from one that stalled (``Stalled``: no data for ``READ_TIMEOUT`` s, or past ``DEADLINE``
s for the file) and from Ctrl-C (``Stopped``). A file is put in place only when its size and SHA-256 match the release's.
"""
from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from ..files import file_digest, publish
from .scan import LFS_POINTER_PREFIX

PARTIAL_DIR = ".partial"
DEFAULT_WORKERS = 4
CONNECT_TIMEOUT, READ_TIMEOUT = 15, 20  # seconds: a server that sends nothing for READ_TIMEOUT s has stalled
DEADLINE = 120  # seconds a source may take for one file (CREMA-D's largest file is about 1 MB), its retries' waits included
STALLS = 2  # a source that stalls this many times is left out for the rest of the run
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
