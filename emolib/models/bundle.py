"""An offline weights bundle: the pretrained backbones fetched once, for machines and containers without internet.

``emolib download weights --to DIR`` puts the voice backbone (a Hugging Face Hub model, ``facebook/wav2vec2-base`` by
default) in ``DIR/voice/<name>`` through ``huggingface_hub.snapshot_download`` and torchvision's ImageNet ResNet weights
in ``DIR/face/<backbone>.safetensors`` (read once with ``weights_only``, saved as safetensors: no pickle is kept). Then
``--backbone DIR/voice/<name>`` and ``--face-weights DIR/face/resnet50.safetensors`` work with no network; ``emolib
doctor`` finds a bundle given by ``--weights DIR`` or ``EMOLIB_WEIGHTS``.

``HF_ENDPOINT`` points the hub client at a mirror; ``EMOLIB_TORCHVISION_URL`` replaces torchvision's download host
(``https://download.pytorch.org``) for the face weights.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import ModelError
from .backbones import DEFAULT_FACE_BACKBONE, DEFAULT_FACE_WEIGHTS, DEFAULT_VOICE_BACKBONE, RESNET_FEATURE_DIMS, read_state_dict

ENVIRONMENT = "EMOLIB_WEIGHTS"
TORCHVISION_HOST = "https://download.pytorch.org"
HOST_OVERRIDE = "EMOLIB_TORCHVISION_URL"
VOICE_FILES = ("config.json", "preprocessor_config.json", "*.safetensors", "pytorch_model.bin")


def voice_folder(root, name: str) -> Path:
    return Path(root) / "voice" / name


def face_file(root, backbone: str = DEFAULT_FACE_BACKBONE) -> Path:
    return Path(root) / "face" / f"{backbone}.safetensors"


def download_voice(root, name: str = DEFAULT_VOICE_BACKBONE) -> Path:
    """The voice backbone ``name`` from the hub into ``root/voice/name``, its weights as safetensors (a repository that has only
    ``pytorch_model.bin`` is converted, the .bin removed)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    folder = voice_folder(root, name)
    try:
        snapshot_download(repo_id=name, local_dir=str(folder), allow_patterns=list(VOICE_FILES))
    except (LocalEntryNotFoundError, RepositoryNotFoundError, HfHubHTTPError, OSError, ValueError) as error:
        raise ModelError(f"{name}: cannot download it from the Hugging Face Hub ({type(error).__name__}: "
                         f"{' '.join(str(error).split())[:160]}); run this where there is internet") from None
    binary = folder / "pytorch_model.bin"
    if binary.is_file():
        if not any(folder.glob("*.safetensors")):
            from transformers import AutoModel

            AutoModel.from_pretrained(str(folder), use_safetensors=False).save_pretrained(str(folder), safe_serialization=True)
        binary.unlink()
    if not any(folder.glob("*.safetensors")) or not (folder / "config.json").is_file():
        raise ModelError(f"{name}: the repository has no config.json and weights (not a transformers model?)")
    return folder


def download_face(root, backbone: str = DEFAULT_FACE_BACKBONE, weights: str = DEFAULT_FACE_WEIGHTS) -> Path:
    """torchvision's ``weights`` of ``backbone`` into ``root/face/<backbone>.safetensors``."""
    import tempfile

    import requests
    import torchvision
    from safetensors.torch import save_file

    from ..files import atomic_path

    if backbone not in RESNET_FEATURE_DIMS:
        raise ModelError(f"--face {backbone}: expected one of {', '.join(RESNET_FEATURE_DIMS)}")
    url = torchvision.models.get_model_weights(backbone)[weights].url
    host = os.environ.get(HOST_OVERRIDE)
    if host:
        url = url.replace(TORCHVISION_HOST, host.rstrip("/"))
    target = face_file(root, backbone)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".download-") as workdir:
        pickled = Path(workdir) / os.path.basename(url)
        try:
            with requests.get(url, stream=True, timeout=(15, 60)) as response:
                response.raise_for_status()
                with open(pickled, "wb") as file:
                    for chunk in response.iter_content(1 << 20):
                        file.write(chunk)
        except requests.RequestException as error:
            raise ModelError(f"{url}: cannot download the {backbone} weights ({type(error).__name__}); run this where there is internet") from None
        state = {name: tensor.contiguous() for name, tensor in read_state_dict(pickled).items()}  # weights_only: no code runs
        with atomic_path(target) as temp:
            save_file(state, str(temp), metadata={"source": url, "backbone": backbone, "weights": weights})
    return target


def find_bundle(given=None) -> Path | None:
    """The weights bundle of ``--weights DIR`` or ``EMOLIB_WEIGHTS`` (None when neither is set)."""
    location = given or os.environ.get(ENVIRONMENT)
    return Path(location) if location else None


def bundle_contents(root) -> dict:
    """{"voice": [the voice backbones' folders], "face": [the face weights files]} of a bundle."""
    root = Path(root)
    voices = sorted(config.parent for config in (root / "voice").rglob("config.json")) if (root / "voice").is_dir() else []
    faces = sorted((root / "face").glob("*.safetensors")) if (root / "face").is_dir() else []
    return {"voice": voices, "face": faces}
