"""`emolib download weights`: an offline weights bundle fetched from a loopback server started here (a tiny Hugging Face Hub
for the voice backbone, a torchvision download host for the face ResNet), then training and prediction with the network off."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from emolib.cli.main import main

REPO_ID = "test-org/tiny-wav2vec2"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
RESNET_PATH = "/models/resnet50-11ad3fa6.pth"  # torchvision's IMAGENET1K_V2 file name


class Hub:
    """A loopback server that answers as the Hugging Face Hub does for one repository, and as torchvision's download host."""

    def __init__(self, files: dict[str, bytes], resnet: bytes):
        self.files, self.resnet, self.requests = files, resnet, []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_HEAD(self):
                self.answer(head=True)

            def do_GET(self):
                self.answer(head=False)

            def answer(self, head: bool):
                path = self.path.split("?")[0]
                hub.requests.append(path)
                if path == RESNET_PATH:
                    return self.send(hub.resnet, "application/octet-stream", head)
                if path.startswith(f"/api/models/{REPO_ID}/revision/"):
                    info = {"id": REPO_ID, "modelId": REPO_ID, "sha": COMMIT, "siblings": [{"rfilename": name} for name in hub.files]}
                    return self.send(json.dumps(info).encode(), "application/json", head)
                if path.startswith(f"/api/models/{REPO_ID}/tree/"):
                    tree = [{"type": "file", "path": name, "size": len(data), "oid": hashlib.sha1(data).hexdigest()} for name, data in hub.files.items()]
                    return self.send(json.dumps(tree).encode(), "application/json", head)
                prefix = f"/{REPO_ID}/resolve/"
                if path.startswith(prefix):
                    name = path[len(prefix):].split("/", 1)[1]
                    if name in hub.files:
                        return self.send(hub.files[name], "application/octet-stream", head,
                                         {"X-Repo-Commit": COMMIT, "ETag": f'"{hashlib.sha1(hub.files[name]).hexdigest()}"'})
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def send(self, body: bytes, kind: str, head: bool, extra: dict | None = None):
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                for name, value in (extra or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                if not head:
                    self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    import torch
    import torchvision
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    from emolib.models.backbones import TINY_VOICE_CONFIG

    folder = tmp_path_factory.mktemp("hub")
    torch.manual_seed(0)
    Wav2Vec2Model(Wav2Vec2Config(**TINY_VOICE_CONFIG)).save_pretrained(folder / "voice")
    files = {path.name: path.read_bytes() for path in (folder / "voice").iterdir() if path.is_file()}
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), folder / "resnet50.pth")  # what torchvision's host serves
    server = Hub(files, (folder / "resnet50.pth").read_bytes())
    yield server
    server.close()


def test_a_bundle_is_made_from_the_hub_and_torchvision_then_used_offline(hub, tmp_path, capsys):
    from emolib.data.synth.corpus import make_synthetic_cremad

    bundle = tmp_path / "weights"
    env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "0", "EMOLIB_OFFLINE": "0", "HF_HOME": str(tmp_path / "hf-home"),
           "EMOLIB_TORCHVISION_URL": hub.url}
    done = subprocess.run([sys.executable, "-m", "emolib", "download", "weights", "--to", str(bundle), "--voice", REPO_ID, "--face", "resnet50"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-1000:]
    voice, face = bundle / "voice" / REPO_ID, bundle / "face" / "resnet50.safetensors"
    assert (voice / "config.json").is_file() and (voice / "model.safetensors").is_file() and face.is_file()
    assert not list(bundle.rglob("*.pth")) and not list(bundle.rglob("*.bin"))  # no pickle is kept
    assert RESNET_PATH in hub.requests and any(path.startswith(f"/api/models/{REPO_ID}") for path in hub.requests)
    assert f"--backbone {voice}" in done.stdout and f"--face-weights {face}" in done.stdout

    # with the network off (conftest: HF_HUB_OFFLINE, EMOLIB_OFFLINE): doctor finds the bundle, training and predict use it
    served = len(hub.requests)
    assert main(["doctor", "--weights", str(bundle), "--backbone", str(voice), "--face-weights", str(face), "--device", "cpu",
                 "--data", str(tmp_path / "none")]) in (0, 1)
    said = capsys.readouterr().out
    assert "ok    weights" in said and f"--backbone {voice}" in said and "ok    voice backbone" in said and "ok    face backbone" in said
    data = make_synthetic_cremad(tmp_path / "data", actors=3, clips_per_emotion=1, workers=0, progress=False)
    models = tmp_path / "models"
    common = ["--data", str(data), "--out", str(models), "--epochs", "1", "--freeze", "all", "--device", "cpu"]
    assert main(["train", "voice", "--backbone", str(voice)] + common) == 0
    assert main(["train", "face", "--backbone", "resnet50", "--face-weights", str(face)] + common) == 0
    clip = sorted((data / "VideoFlash").glob("*.flv"))[0]
    assert main(["predict", "--models", str(models), "--video", str(clip), "--audio", str(data / "AudioWAV" / f"{clip.stem}.wav"), "--json",
                 "--no-fast"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["modalities"] == ["voice", "face"] and len(hub.requests) == served  # nothing more was fetched


def test_download_weights_refuses_the_corpus_options(tmp_path, capsys):
    assert main(["download", "weights", "--to", str(tmp_path / "w"), "--dry-run"]) == 2
    assert "--dry-run: options of `emolib download cremad`" in capsys.readouterr().err
    assert main(["download", "cremad", "--to", str(tmp_path / "c"), "--voice", "x/y", "--dry-run"]) == 2
