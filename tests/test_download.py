"""CREMA-D's media: the packaged release list, `emolib download cremad` against loopback HTTP servers started here
(fetch, rerun, cut transfers, retries, fallbacks, bad hashes, dry run), and Git LFS pointer trees refused by
index, doctor and verify."""
from __future__ import annotations

import hashlib
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from emolib.cli.main import main
from emolib.data import download as dl
from emolib.data import release, transfer
from emolib.data.download import download

NAMES = ["1001_DFA_ANG_XX", "1001_IEO_HAP_HI", "1002_TIE_SAD_XX", "1003_WSI_FEA_XX"]
POINTER = "version https://git-lfs.github.com/spec/v1\noid sha256:{sha}\nsize {size}\n"


def media_bytes(path: str, seed: int) -> bytes:
    head = b"RIFF" if path.endswith(".wav") else b"FLV\x01"
    return head + np.random.default_rng(seed).integers(0, 256, 200_000 + 1000 * seed, dtype=np.uint8).tobytes()


@pytest.fixture()
def release_tree(tmp_path):
    """A small release: its files' bytes and a release list of them."""
    files = {}
    for index, name in enumerate(NAMES):
        files[f"AudioWAV/{name}.wav"] = media_bytes(".wav", index)
        files[f"VideoFlash/{name}.flv"] = media_bytes(".flv", 10 + index)
    listing = tmp_path / "release.csv"
    pd.DataFrame([{"path": path, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)} for path, data in files.items()]).to_csv(listing, index=False)
    return files, listing


class Server:
    """A loopback HTTP server of ``files`` whose answers for a path can be made to fail in one way (``modes``)."""

    def __init__(self, files: dict):
        self.files, self.modes, self.log, self.served = files, {}, [], Counter()
        self.release = threading.Event()  # ends the silent and dripping answers when the test is over
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                path = self.path.lstrip("/")
                server.log.append((path, self.headers.get("Range")))
                server.served[path] += 1
                mode = server.modes.get(path, "ok")
                data = server.files.get(path)
                if mode == "500-once" and server.served[path] == 1 or mode == "500":
                    return self.answer(500, b"oops", "text/plain")
                if data is None or mode == "404":
                    return self.answer(404, b"not found", "text/plain")
                if mode == "html":
                    return self.answer(200, b"<!DOCTYPE html><html><body>This repository exceeded its LFS budget</body></html>", "text/html")
                if mode == "lfs":
                    pointer = POINTER.format(sha=hashlib.sha256(data).hexdigest(), size=len(data)).encode()
                    return self.answer(200, pointer, "text/plain")
                if mode == "wrong":
                    data = data[:-10] + b"0123456789"
                if mode == "silent":  # accepts the connection, never answers
                    server.release.wait(30)
                    return
                if mode == "retry-after":
                    self.send_response(503)
                    self.send_header("Retry-After", "60")  # within the deadline: the retry waits
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if mode == "416" and self.headers.get("Range"):
                    return self.answer(416, b"", "text/plain")
                if mode == "bad-gzip":  # says gzip, sends bytes no gzip decoder reads
                    self.send_response(200)
                    self.send_header("Content-Encoding", "gzip")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                start = int(self.headers["Range"].split("=")[1].split("-")[0]) if self.headers.get("Range") and mode != "no-range" else 0
                body = data[start:]
                self.send_response(206 if start else 200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                if mode == "drip":  # a slow transfer: a few bytes a second
                    for index in range(0, len(body), 16):
                        if server.release.is_set():
                            return
                        self.wfile.write(body[index: index + 16])
                        self.wfile.flush()
                        server.release.wait(0.2)
                    return
                if mode == "cut-once" and server.served[path] == 1:
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

            def answer(self, code, body, kind):
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def servers(release_tree):
    files, _ = release_tree
    first, second = Server(files), Server(files)
    yield first, second
    first.close()
    second.close()


def sources(*servers):
    return dl.sources_for([server.url for server in servers], builtin=False)


def genuine(root: Path, files: dict) -> bool:
    return all((root / path).is_file() and (root / path).read_bytes() == data for path, data in files.items())


def test_the_packaged_list_names_every_clip_once():
    from emolib.cremad import asset_path

    names = set(pd.read_csv(asset_path("SentenceFilenames.csv"))["Filename"])
    files = release.release_files(("audio", "video", "mp3"))
    assert len(names) == 7442 and len(files) == 22326
    for part, suffix in (("audio", ".wav"), ("video", ".flv")):
        stems = files.loc[files["part"] == part, "path"].map(lambda path: Path(path).stem)
        assert set(stems) == names and len(stems) == len(names) and files.loc[files["part"] == part, "path"].str.endswith(suffix).all()
    assert files["sha256"].str.fullmatch(r"[0-9a-f]{64}").all() and (files["size"] > 0).all()


def test_fetch_with_four_workers_then_a_rerun_fetches_nothing(release_tree, servers, tmp_path):
    files, listing = release_tree
    first, _ = servers
    root = tmp_path / "cremad"
    result = download(root, sources=sources(first), workers=4, progress=False, listing=listing)
    assert result["fetched"] == len(files) and result["failed"] == 0 and genuine(root, files)
    assert {oct((root / path).stat().st_mode & 0o777) for path in files} == {"0o644"}
    assert not list((root / transfer.PARTIAL_DIR).rglob("*.part"))
    requests_before = len(first.log)
    again = download(root, sources=sources(first), workers=4, progress=False, listing=listing)
    assert again["present"] == len(files) and again["fetched"] == 0 and len(first.log) == requests_before


def test_cut_transfers_continue_and_500s_are_retried(release_tree, servers, tmp_path):
    files, listing = release_tree
    first, _ = servers
    cut, flaky = "VideoFlash/1001_DFA_ANG_XX.flv", "AudioWAV/1002_TIE_SAD_XX.wav"
    first.modes.update({cut: "cut-once", flaky: "500-once"})
    root = tmp_path / "cremad"
    result = download(root, sources=sources(first), workers=2, progress=False, listing=listing)
    assert result["failed"] == 0 and genuine(root, files)
    ranges = [value for path, value in first.log if path == cut]
    assert ranges[0] is None and ranges[1] is not None and ranges[1].startswith("bytes=")  # continued where it was cut
    assert first.served[flaky] == 2


def test_a_partial_file_of_a_killed_run_is_continued(release_tree, servers, tmp_path):
    files, listing = release_tree
    first, _ = servers
    path = "VideoFlash/1003_WSI_FEA_XX.flv"
    root = tmp_path / "cremad"
    part = root / transfer.PARTIAL_DIR / f"{path}.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(files[path][:50_000])
    assert not (root / path).exists()
    result = download(root, sources=sources(first), progress=False, listing=listing)
    assert result["failed"] == 0 and genuine(root, files)
    assert [value for logged, value in first.log if logged == path] == ["bytes=50000-"]


@pytest.mark.parametrize("mode, reason", [("404", "HTTP 404"), ("html", "HTML page"), ("lfs", "Git LFS pointer"), ("500", "HTTP 500")])
def test_a_bad_first_source_falls_back_to_the_second(release_tree, servers, tmp_path, mode, reason, monkeypatch):
    from urllib3.util.retry import Retry

    monkeypatch.setattr(transfer, "RETRIES", Retry(total=2, backoff_factor=0.01, status_forcelist=(500,), allowed_methods=frozenset({"GET"}),
                                             raise_on_status=False))  # a persistent 500 is retried, quickly
    files, listing = release_tree
    first, second = servers
    first.modes.update({path: mode for path in files})
    root = tmp_path / "cremad"
    result = download(root, sources=sources(first, second), workers=2, progress=False, listing=listing)
    assert result["fetched"] == len(files) and result["failed"] == 0 and genuine(root, files)
    assert result["source_skips"][reason] == len(files)


def test_a_wrong_hash_is_never_put_in_place(release_tree, servers, tmp_path, capsys, monkeypatch):
    files, listing = release_tree
    first, second = servers
    bad = "AudioWAV/1001_IEO_HAP_HI.wav"
    first.modes[bad] = second.modes[bad] = "wrong"
    monkeypatch.setattr(release, "asset_path", lambda name: listing)  # the CLI reads this release list
    root = tmp_path / "cremad"
    code = main(["download", "cremad", "--to", str(root), "--no-builtin-sources", "--source", first.url, "--source", second.url])
    out = capsys.readouterr().out
    assert code == 1 and not (root / bad).exists() and not list((root / transfer.PARTIAL_DIR).rglob("*.part"))
    assert "failed 1 (SHA-256 differs from the release's: 1)" in out and bad in out and "register" in out
    assert genuine(root, {path: data for path, data in files.items() if path != bad})
    first.modes.clear()
    code = main(["download", "cremad", "--to", str(root), "--no-builtin-sources", "--source", first.url])
    out = capsys.readouterr().out
    assert code == 0 and genuine(root, files) and "register" not in out  # the licence is shown on the first run only


def test_dry_run_of_the_real_release_needs_no_network(tmp_path, capsys):
    assert main(["download", "cremad", "--to", str(tmp_path / "cremad"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "AudioWAV: 7,442 files, 0.61 GB" in out and "VideoFlash: 7,442 files, 2.44 GB" in out
    assert "total to fetch: 14,884 files, 3.05 GB" in out and "Open Database License" in out and "gitlab-mirror, github-lfs" in out
    assert not (tmp_path / "cremad").exists()
    assert main(["download", "cremad", "--to", str(tmp_path / "c"), "--parts", "mp3", "--dry-run"]) == 0
    assert "AudioMP3: 7,442 files, 0.63 GB" in capsys.readouterr().out


# ---------------------------------------------------------------- a copy that is not media


@pytest.fixture()
def pointer_tree(tmp_path):
    """CREMA-D's real Git LFS pointer files (what a zip download of the release repository holds), for 7 clips."""
    files = release.release_files(("audio", "video"))
    files = files[files["path"].map(lambda path: Path(path).stem).isin(sorted(set(files["path"].map(lambda path: Path(path).stem)))[:7])]
    root = tmp_path / "CREMA-D"
    for row in files.itertuples(index=False):
        (root / row.path).parent.mkdir(parents=True, exist_ok=True)
        (root / row.path).write_text(POINTER.format(sha=row.sha256, size=row.size))
    return root


def test_index_doctor_and_verify_name_git_lfs_pointers(pointer_tree, tmp_path, capsys):
    code = main(["index", str(pointer_tree), "--out", str(tmp_path / "m.csv")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "7 of 7 AudioWAV files are Git LFS pointers" in err and "emolib download cremad" in err
    assert not (tmp_path / "m.csv").exists()
    code = main(["doctor", "--data", str(pointer_tree), "--device", "cpu"])
    out = capsys.readouterr().out
    assert code == 1 and "FAIL  data" in out and "Git LFS pointers" in out and "ready for a long run" not in out
    code = main(["verify", str(pointer_tree)])
    out = capsys.readouterr().out
    assert code == 1 and "lfs pointer: 14" in out and "missing: 14,870" in out and "NOT complete" in out


def test_verify_finds_sizes_and_hashes_that_differ(release_tree, tmp_path, capsys, monkeypatch):
    files, listing = release_tree
    monkeypatch.setattr(release, "asset_path", lambda name: listing)
    root = tmp_path / "cremad"
    for path, data in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)
    assert main(["verify", str(root), "--hash"]) == 0 and "complete and genuine" in capsys.readouterr().out
    older = root / "VideoFlash/1002_TIE_SAD_XX.flv"
    older.write_bytes(older.read_bytes()[:-1] + b"x")  # another version of the file, same size
    (root / "AudioWAV/1001_DFA_ANG_XX.wav").write_bytes(b"RIFF short")
    assert main(["verify", str(root)]) == 1
    out = capsys.readouterr().out
    assert "size differs: 1" in out and "sha256 differs" not in out
    assert main(["verify", str(root), "--hash"]) == 1
    out = capsys.readouterr().out
    assert "sha256 differs: 1 (e.g. VideoFlash/1002_TIE_SAD_XX.flv)" in out and "6 of 8 release files match" in out


def test_doctor_fails_when_many_files_are_unreadable_and_says_how_to_get_videos(tmp_path, capsys):
    from emolib.data.synth.corpus import make_synthetic_cremad

    root = make_synthetic_cremad(tmp_path / "synth", actors=3, clips_per_emotion=1, workers=0, progress=False)
    import shutil

    shutil.rmtree(root / "VideoFlash")
    code = main(["doctor", "--data", str(root), "--device", "cpu"])
    out = capsys.readouterr().out
    assert "emolib download cremad" in out and "--parts video" in out
    for wav in sorted((root / "AudioWAV").glob("*.wav"))[:6]:
        wav.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    code = main(["doctor", "--data", str(root), "--device", "cpu"])
    out = capsys.readouterr().out
    assert code == 1 and "FAIL  unreadable" in out


def test_notebook_download_fetches_and_verifies_once(release_tree, servers, tmp_path, monkeypatch, capsys):
    from emolib.train import notebook

    files, listing = release_tree
    first, _ = servers
    monkeypatch.setattr(release, "asset_path", lambda name: listing)
    monkeypatch.setattr(dl, "SOURCES", {"loopback": first.url + "/{path}"})
    monkeypatch.setattr("emolib.data.cremad_tree.KAGGLE_INPUT", tmp_path / "no-kaggle-input")
    data, video_dir = notebook.fetch_cremad(None, tmp_path / "cremad", progress=False)
    assert data == tmp_path / "cremad" and video_dir is None and genuine(data, files)
    assert "complete and genuine" in capsys.readouterr().out
    served = len(first.log)
    notebook.fetch_cremad(None, tmp_path / "cremad", progress=False)
    assert len(first.log) == served


# ---------------------------------------------------------------- servers that hang, refuse or garble


def test_an_undecodable_encoding_is_that_source_failing_not_the_run(release_tree, servers, tmp_path):
    files, listing = release_tree
    first, second = servers
    first.modes.update({path: "bad-gzip" for path in files})
    result = download(tmp_path / "cremad", sources=sources(first, second), workers=2, progress=False, listing=listing)
    assert result["fetched"] == len(files) and genuine(tmp_path / "cremad", files)
    assert result["source_skips"]["its Content-Encoding cannot be decoded"] == len(files)


def test_a_silent_server_is_left_after_its_read_timeout_and_named(release_tree, servers, tmp_path, monkeypatch):
    import time

    monkeypatch.setattr(transfer, "READ_TIMEOUT", 0.5)
    files, listing = release_tree
    first, second = servers
    first.modes.update({path: "silent" for path in files})
    started = time.monotonic()
    result = download(tmp_path / "cremad", sources=sources(first, second), workers=2, progress=False, listing=listing)
    assert result["fetched"] == len(files) and genuine(tmp_path / "cremad", files)
    assert time.monotonic() - started < 10  # two stalls of two tries of 0.5 s, then the source is left out
    # left out once it has stalled STALLS times; transfers the other worker had already started there may stall too
    stalled = result["stalled"][first.url]
    assert transfer.STALLS <= stalled <= transfer.STALLS + 1
    assert result["source_skips"][f"stalled {transfer.STALLS} times: left out"] == len(files) - stalled
    line = dl.summary(result)
    assert f"stalled: {first.url} ({stalled} files, then left out)" in line


def test_a_file_may_not_outlast_its_deadline(release_tree, servers, tmp_path, monkeypatch):
    monkeypatch.setattr(transfer, "DEADLINE", 1.0)
    files, listing = release_tree
    first, second = servers
    path = "AudioWAV/1001_DFA_ANG_XX.wav"
    first.modes[path] = "drip"
    result = download(tmp_path / "cremad", sources=sources(first, second), workers=2, progress=False, listing=listing)
    assert result["failed"] == 0 and genuine(tmp_path / "cremad", files) and result["stalled"][first.url] == 1
    assert any("stalled (over the 1.0 s a file may take)" in reason for reason in result["source_skips"])


def test_a_416_for_a_partial_file_starts_it_from_zero(release_tree, servers, tmp_path):
    files, listing = release_tree
    first, _ = servers
    path = "VideoFlash/1003_WSI_FEA_XX.flv"
    root = tmp_path / "cremad"
    part = root / transfer.PARTIAL_DIR / f"{path}.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"x" * 1000)  # not even the file's first bytes: a server may rightly refuse to continue it
    first.modes[path] = "416"
    result = download(root, sources=sources(first), progress=False, listing=listing)
    assert result["failed"] == 0 and genuine(root, files)
    assert [value for logged, value in first.log if logged == path] == ["bytes=1000-", None]


@pytest.mark.parametrize("mode", ["drip", "retry-after"])
def test_ctrl_c_stops_within_a_second_and_keeps_the_partial_files(release_tree, servers, tmp_path, mode):
    import os
    import signal
    import subprocess
    import sys
    import time

    files, listing = release_tree
    first, _ = servers
    first.modes.update({path: mode for path in files})
    root = tmp_path / "cremad"
    script = (f"import sys; from emolib.data import release; release.asset_path = lambda name: {str(listing)!r}; "
              f"from emolib.cli.main import main; sys.exit(main(['download', 'cremad', '--to', {str(root)!r}, '--no-builtin-sources', "
              f"'--source', {first.url!r}]))")
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + 30
    while len(first.log) < 4 and time.monotonic() < deadline:  # every worker is in a transfer
        time.sleep(0.05)
    time.sleep(1.0)
    process.send_signal(signal.SIGINT)
    interrupted = time.monotonic()
    _, err = process.communicate(timeout=20)
    assert time.monotonic() - interrupted < 2.5, "Ctrl-C took too long"
    assert process.returncode == 130 and "partial files are kept" in err and "Traceback" not in err
    if mode == "drip":
        assert list((root / transfer.PARTIAL_DIR).rglob("*.part"))


@pytest.mark.parametrize("dry_run", [True, False])
def test_a_destination_that_cannot_be_written_is_named_before_anything_runs(tmp_path, capsys, dry_run):
    taken = tmp_path / "a-file"
    taken.write_text("not a folder")
    for target, words in ((taken, "not a folder"), (taken / "below", "is not a folder")):
        argv = ["download", "cremad", "--to", str(target), "--no-builtin-sources", "--source", "http://127.0.0.1:9"]
        assert main(argv + (["--dry-run"] if dry_run else [])) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"--to {target}: " in err and words in err and ".part" not in err
