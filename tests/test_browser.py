"""End to end in a real browser: JupyterLab + headless Chromium with a fake webcam and microphone.

Starts JupyterLab on a free localhost port (token set) in a temporary root holding a copy of
notebooks/06_live_demo.ipynb and the trained demo models, opens the notebook in headless
Chromium through Playwright, runs all cells and presses Record. Chromium's fake devices play a
synthetic face video (.y4m made with ffmpeg) and espeak-ng speech. Checks that a prediction is
displayed, that the audio the kernel received is not silent and the frame not blank (both as
reported by the widget on the page and in the capture.json the notebook's widget writes), and
saves a screenshot of the widget to docs/live_demo.png.

Skips, saying what is missing, without /usr/bin/chromium, ffmpeg, espeak-ng, playwright or
jupyterlab. Never downloads a browser (no `playwright install`).
"""
from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "06_live_demo.ipynb"
SCREENSHOT = REPO / "docs" / "live_demo.png"
CHROMIUM = Path("/usr/bin/chromium")
SPEECH = ("Hello. This is a test recording for the live emotion demo. I am speaking clearly "
          "and a little slowly, so that the microphone has several seconds of speech.")
MIN_AUDIO_RMS = 0.01  # espeak-ng speech is around 0.05-0.1; digital silence is 0
MIN_FRAME_STD = 10.0  # the synthetic face frame has a pixel std of 30+; a black frame has ~0
BUDGET_S = 180  # the whole test, from starting JupyterLab to stopping it; each wait gets what is left


def missing_requirements() -> list[str]:
    missing = []
    if not CHROMIUM.exists():
        missing.append(f"{CHROMIUM} (apt install chromium)")
    for tool, package in (("ffmpeg", "ffmpeg"), ("espeak-ng", "espeak-ng")):
        if shutil.which(tool) is None:
            missing.append(f"{tool} (apt install {package})")
    for module, package in (("playwright", "playwright"), ("jupyterlab", "jupyterlab"), ("anywidget", "anywidget")):
        if importlib.util.find_spec(module) is None:
            missing.append(f"python package {package}")
    return missing


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def set_parameters(notebook: Path, target: Path, **values) -> None:
    """Copy the notebook, overriding assignments in its `parameters` cell (as papermill would)."""
    data = json.loads(notebook.read_text())
    cell = next(c for c in data["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    lines = "".join(cell["source"]).splitlines()
    for name, value in values.items():
        matches = [i for i, line in enumerate(lines) if line.split("=")[0].strip() == name]
        assert matches, f"parameter {name} not in the parameters cell"
        lines[matches[0]] = f"{name} = {value!r}"
    cell["source"] = "\n".join(lines)
    target.write_text(json.dumps(data, indent=1))


def make_fake_media(clip_flv: Path, folder: Path) -> tuple[Path, Path]:
    """A .y4m of the clip's face (Chromium's fake webcam) and >= 4 s of espeak-ng speech (fake microphone)."""
    import soundfile

    video = folder / "face.y4m"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(clip_flv), "-pix_fmt", "yuv420p", str(video)], check=True, timeout=60)
    speech = folder / "speech.wav"
    subprocess.run(["espeak-ng", "-s", "140", "-w", str(speech), SPEECH], check=True, timeout=60)
    assert soundfile.info(str(speech)).duration >= 4.0, "espeak-ng speech is shorter than 4 s"
    return video, speech


def wait_for_server(process, url: str, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"JupyterLab exited with code {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1)
    pytest.fail(f"JupyterLab did not answer within {timeout} s:\n{log.read_text()[-3000:]}")


def stop_server(process, base: str, token: str) -> None:
    """Shut the kernels down through the API, then the server (SIGTERM, then SIGKILL of its group)."""
    try:
        with urllib.request.urlopen(f"{base}/api/kernels?token={token}", timeout=5) as response:
            kernels = json.load(response)
        for kernel in kernels:
            request = urllib.request.Request(f"{base}/api/kernels/{kernel['id']}?token={token}", method="DELETE")
            urllib.request.urlopen(request, timeout=10).close()
    except OSError:
        pass
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def lab_settings(folder: Path) -> None:
    """Attach every cell to the DOM (no windowing) and keep JupyterLab off the network."""
    settings = {
        "notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
        "apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false", "checkForUpdates": False},
    }
    for name, value in settings.items():
        path = folder / "@jupyterlab" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))


def run_all_cells(page, attempts: int = 3) -> None:
    """Run > Run All Cells, retried until the first code cell is queued or done (the menu does
    nothing while the notebook is not yet the current widget)."""
    first_prompt = page.locator(".jp-CodeCell .jp-InputArea-prompt").first
    for _ in range(attempts):
        page.locator(".jp-NotebookPanel .jp-Cell").first.click()
        page.click("li.lm-MenuBar-item:has-text('Run')")
        page.click("li.lm-Menu-item[data-command='runmenu:run-all']")
        for _ in range(20):
            if any(mark in first_prompt.inner_text() for mark in ("*", "1")):
                return
            page.wait_for_timeout(500)
    pytest.fail(f"Run All Cells did not start the notebook (first prompt {first_prompt.inner_text()!r})")


@contextlib.contextmanager
def lab_page(request, tmp_path, fake_media, **parameters):
    """JupyterLab on a free localhost port with notebook 06 (its ``parameters`` overridden) and the demo models, opened in headless
    Chromium with fake devices from ``fake_media(clips_folder, stem, tmp_path) -> (y4m, wav)``; yields (page, console, root, left)
    with all cells run and the widget's Record button visible."""
    missing = missing_requirements()
    if missing:
        pytest.skip("BROWSER TEST SKIPPED: missing " + ", ".join(missing))
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    trained_demo = request.getfixturevalue("trained_demo")  # only once we know the browser test can run
    root = tmp_path / "lab"
    (root / "notebooks").mkdir(parents=True)
    shutil.copytree(trained_demo / "models", root / "work" / "models", ignore=shutil.ignore_patterns("resume*", "*.tmp"))
    source = trained_demo / "cremad-synth"
    stem = sorted(path.stem for path in (source / "VideoFlash").glob("*.flv"))[0]
    clips = root / "work" / "clips"
    for folder, suffix in (("VideoFlash", ".flv"), ("AudioWAV", ".wav")):
        (clips / folder).mkdir(parents=True)
        shutil.copy(source / folder / f"{stem}{suffix}", clips / folder)
    set_parameters(NOTEBOOK, root / "notebooks" / NOTEBOOK.name, capture="browser", data_dir="../work/clips", **parameters)
    fake_video, fake_audio = fake_media(clips, stem, tmp_path)
    lab_settings(root / ".lab-settings")

    port, token = free_port(), os.urandom(16).hex()
    base = f"http://127.0.0.1:{port}"
    env = {key: value for key, value in os.environ.items() if key not in ("MPLBACKEND", "JUPYTER_TOKEN")}
    env.update(JUPYTER_CONFIG_DIR=str(root / ".jupyter"), JUPYTER_RUNTIME_DIR=str(root / ".runtime"), IPYTHONDIR=str(root / ".ipython"),
               JUPYTERLAB_SETTINGS_DIR=str(root / ".lab-settings"), JUPYTERLAB_WORKSPACES_DIR=str(root / ".workspaces"),
               PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    log = tmp_path / "jupyterlab.log"
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.open_browser=False", "--ServerApp.ip=127.0.0.1",
               f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
               f"--ServerApp.root_dir={root}", "--ServerApp.allow_root=True"]
    deadline = time.monotonic() + BUDGET_S

    def left(minimum: float = 5.0) -> float:
        """Milliseconds left of the budget (at least ``minimum`` seconds)."""
        return max(minimum, deadline - time.monotonic()) * 1000

    with open(log, "wb") as output:
        server = subprocess.Popen(command, cwd=root, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for_server(server, f"{base}/api/status?token={token}", log, left() / 1000)
        args = ["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-video-capture={fake_video}", f"--use-file-for-fake-audio-capture={fake_audio}",
                "--autoplay-policy=no-user-gesture-required"]
        with sync_playwright() as playwright:
            # Playwright passes the profile as --user-data-dir; headless comes from --headless=new.
            browser = playwright.chromium.launch_persistent_context(
                str(tmp_path / "chromium-profile"), executable_path=str(CHROMIUM), headless=False, args=args,
                viewport={"width": 1280, "height": 900})
            try:
                page = browser.pages[0] if browser.pages else browser.new_page()
                console = []
                page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
                page.goto(f"{base}/lab/tree/notebooks/{NOTEBOOK.name}?token={token}", timeout=left())
                page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=left())
                page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=left())
                run_all_cells(page)
                try:
                    page.wait_for_selector(".jp-OutputArea-output:has-text('no recording yet')", timeout=left())
                    page.locator(".emolib-capture .emolib-record").wait_for(state="visible", timeout=left())
                except PlaywrightError as error:
                    page.screenshot(path=str(tmp_path / "failure.png"))
                    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']").all_inner_texts()
                    pytest.fail(f"the notebook did not finish running ({error}); stderr outputs: {errors[-3:]}; log: {log.read_text()[-2000:]}")
                yield page, console, root, left
            finally:
                browser.close()
    finally:
        stop_server(server, base, token)


def test_live_demo_in_chromium(request, tmp_path):
    capture_dir = tmp_path / "lab" / "capture"

    def fake_media(clips, stem, folder):
        return make_fake_media(clips / "VideoFlash" / f"{stem}.flv", folder)

    with lab_page(request, tmp_path, fake_media, save_dir=str(capture_dir)) as (page, console, root, left):
        record = page.locator(".emolib-capture .emolib-record")
        record.scroll_into_view_if_needed()
        record.click()
        widget = page.locator(".emolib-capture")
        page.wait_for_function("() => ['done', 'error'].includes(document.querySelector('.emolib-capture')?.dataset.status)",
                               timeout=left(30))
        status = widget.get_attribute("data-status")
        error_text = page.locator(".emolib-capture .emolib-error").inner_text()
        assert status == "done", f"widget status {status}: {error_text}; console: {console[-10:]}"
        # A prediction is displayed: the emotion line and the figure.
        result = page.locator(".emolib-capture .emolib-result-text").inner_text()
        assert result.split(" ")[0] in ("ANG", "DIS", "FEA", "HAP", "NEU", "SAD"), result
        assert page.locator(".emolib-capture .emolib-result-image").evaluate("image => image.complete && image.naturalWidth") > 100
        # The label set comes from the checkpoints, and each label's probability is listed in the page.
        labels = ["ANG", "DIS", "FEA", "HAP", "NEU", "SAD"]
        assert page.locator(".emolib-capture .emolib-labels").inner_text() == "labels: " + ", ".join(labels)
        assert page.locator(".emolib-capture .emolib-probability-label").all_inner_texts() == labels
        shown = [float(text.rstrip("%")) for text in page.locator(".emolib-capture .emolib-probability-value").all_inner_texts()]
        assert sum(shown) == pytest.approx(100, abs=len(labels))
        assert page.locator(".emolib-capture .emolib-probability-top").first.inner_text() == result.split(" ")[0]
        # What the kernel received, as the widget reports it on the page ...
        stats = page.locator(".emolib-capture .emolib-stats")
        kernel_rms, kernel_std = float(stats.get_attribute("data-rms")), float(stats.get_attribute("data-frame-std"))
        page_rms, page_std = float(stats.get_attribute("data-page-rms")), float(stats.get_attribute("data-page-frame-std"))
        assert kernel_rms > MIN_AUDIO_RMS, f"received audio is silent (RMS {kernel_rms}): {stats.inner_text()}"
        assert kernel_std > MIN_FRAME_STD, f"received frame is blank (pixel std {kernel_std}): {stats.inner_text()}"
        assert kernel_rms == pytest.approx(page_rms, rel=1e-3), "audio changed between the browser and the kernel"
        assert page_std > MIN_FRAME_STD
        # ... and as the notebook's widget saved it in the kernel.
        saved = json.loads((capture_dir / "capture.json").read_text())
        assert saved["received"]["audio_rms"] > MIN_AUDIO_RMS and saved["received"]["frame_std"] > MIN_FRAME_STD
        assert saved["received"]["audio_seconds"] == pytest.approx(4.0, abs=0.25)
        assert saved["prediction"]["emotion"] == result.split(" ")[0]
        assert "voice" in saved["prediction"]["modalities"]
        SCREENSHOT.parent.mkdir(exist_ok=True)
        widget.scroll_into_view_if_needed()
        widget.screenshot(path=str(SCREENSHOT))
        # A refused permission is shown in the widget, not swallowed.
        page.evaluate("() => { navigator.mediaDevices.getUserMedia = () => "
                      "Promise.reject(new DOMException('Permission denied', 'NotAllowedError')); }")
        record.click()
        page.wait_for_function("() => document.querySelector('.emolib-capture')?.dataset.status === 'error'", timeout=30_000)
        shown = page.locator(".emolib-capture .emolib-error")
        assert shown.is_visible() and "permission denied" in shown.inner_text().lower()
        assert page.locator(".emolib-capture .emolib-result-text").inner_text() == ""


STREAM_SENTENCES = ("Kids are talking by the door, and it is eleven o'clock.", "I would like a new alarm clock, please, a loud one.")
SILENCE_S = 3.5  # between the sentences: more than the 4 s window minus the 1 s of speech a window needs (min_speech below)
STREAM_S = 12
STREAM_SCREENSHOT = REPO / "docs" / "live_stream.png"


def make_stream_media(folder: Path) -> tuple[Path, Path]:
    """A fake webcam of real photographs (skimage's astronaut and cameraman) panned and zoomed slowly with ffmpeg's zoompan, and
    a fake microphone of espeak-ng sentences with silences between them."""
    import numpy as np
    import skimage.data
    import skimage.io
    import soundfile

    photo = folder / "photos.png"
    astronaut, camera = skimage.data.astronaut(), np.repeat(skimage.data.camera()[:, :, None], 3, axis=2)
    skimage.io.imsave(photo, np.concatenate([astronaut, camera], axis=1), check_contrast=False)
    video = folder / "faces.y4m"
    zoom = "zoompan=z='1+0.0008*on':x='iw/4-(iw/zoom/2)+on*0.4':y='ih/2-(ih/zoom/2)':d=1:s=480x360:fps=15"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-loop", "1", "-i", str(photo), "-vf", zoom, "-t", str(STREAM_S + 4),
                    "-pix_fmt", "yuv420p", str(video)], check=True, timeout=120)
    pieces = []
    for index, sentence in enumerate(STREAM_SENTENCES):
        spoken = folder / f"sentence{index}.wav"
        subprocess.run(["espeak-ng", "-s", "140", "-w", str(spoken), sentence], check=True, timeout=60)
        wave, rate = soundfile.read(spoken, dtype="float32")
        pieces += [wave, np.zeros(int(SILENCE_S * rate), dtype=np.float32)]
    speech = folder / "speech-with-silences.wav"
    soundfile.write(speech, np.concatenate(pieces), rate)
    return video, speech


def test_live_stream_in_chromium(request, tmp_path):
    def fake_media(clips, stem, folder):
        return make_stream_media(folder)

    with lab_page(request, tmp_path, fake_media, hop=1.0, min_speech=1.0) as (page, console, root, left):
        button = page.locator(".emolib-capture .emolib-stream-button")
        button.scroll_into_view_if_needed()
        button.click()
        widget = page.locator(".emolib-capture")
        page.wait_for_function("() => Number(document.querySelector('.emolib-capture')?.dataset.updates || 0) >= 1", timeout=left(30))
        page.wait_for_timeout(STREAM_S * 1000)
        updates = int(widget.get_attribute("data-updates") or 0)
        error_text = page.locator(".emolib-capture .emolib-error").inner_text()
        assert updates >= 8, f"{updates} updates in {STREAM_S} s: {error_text}; console: {console[-10:]}"
        assert int(widget.get_attribute("data-boxes-drawn") or 0) > 0, "no face box drawn"
        assert widget.get_attribute("data-no-speech-seen") == "yes", "'no speech' never shown during the silences"
        assert page.locator(".emolib-capture .emolib-current").get_attribute("data-label") in ("ANG", "DIS", "FEA", "HAP", "NEU", "SAD")
        assert "updates/s" in page.locator(".emolib-capture .emolib-rate").inner_text()
        STREAM_SCREENSHOT.parent.mkdir(exist_ok=True)
        widget.scroll_into_view_if_needed()
        widget.screenshot(path=str(STREAM_SCREENSHOT))
        button.click()  # Stop: the kernel keeps the updates
        page.wait_for_function("() => document.querySelector('.emolib-capture')?.dataset.status === 'done'", timeout=left(30))
        assert "stream stopped" in page.locator(".emolib-capture .emolib-status").inner_text()
