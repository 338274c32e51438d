"""Build the pretrained encoders: wav2vec2-family speech encoders and torchvision ResNets.

Real weights load by hub name or local path; ``"tiny"`` gives small random-init encoders for
tests and the synthetic demo. Without network access, loading fails with a message that says
how to provide the weights locally.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import ModelError

DEFAULT_VOICE_BACKBONE = "facebook/wav2vec2-base"
DEFAULT_FACE_BACKBONE = "resnet50"
DEFAULT_FACE_WEIGHTS = "IMAGENET1K_V2"
TINY = "tiny"
NO_WEIGHTS = "none"  # --face-weights none: ResNet from random init
TINY_VOICE_CONFIG = dict(
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=128,
    conv_dim=(16, 32, 32, 32, 32),
    conv_stride=(10, 4, 2, 2, 2),
    conv_kernel=(20, 8, 3, 3, 2),
    num_feat_extract_layers=5,
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=4,
    feat_extract_norm="group",
    do_stable_layer_norm=False,
    mask_time_prob=0.0,
)
TINY_RESNET_WIDTHS = (16, 32, 64, 128)
SAFE_TORCH_LOAD = (2, 6)  # torch.load(weights_only=True) can be bypassed before 2.6 (CVE-2025-32434)
RESNET_FEATURE_DIMS = {"resnet18": 512, "resnet34": 512, "resnet50": 2048, "resnet101": 2048}


def voice_encoder_config(backbone: str) -> dict:
    """The HF config (as a dict) of a voice backbone: hub name, local directory or ``tiny``."""
    from transformers import AutoConfig, Wav2Vec2Config

    if backbone == TINY:
        return Wav2Vec2Config(**TINY_VOICE_CONFIG).to_dict()
    try:
        return AutoConfig.from_pretrained(backbone).to_dict()
    except (OSError, ValueError) as error:
        raise ModelError(_missing_voice_weights(backbone, error)) from None


def build_voice_encoder(config: dict, pretrained: str | None = None):
    """A wav2vec2 / HuBERT / WavLM encoder from its config; weights from ``pretrained`` when given."""
    from transformers import AutoConfig, AutoModel

    if pretrained and pretrained != TINY:
        try:
            return AutoModel.from_pretrained(pretrained)
        except (OSError, ValueError) as error:
            raise ModelError(_missing_voice_weights(pretrained, error)) from None
    hf_config = AutoConfig.for_model(**config)
    return AutoModel.from_config(hf_config)


def _missing_voice_weights(backbone: str, error: Exception) -> str:
    reason = str(error).splitlines()[0][:160]
    if Path(backbone).exists():
        return f"{backbone}: not a Hugging Face model directory ({reason})"
    return (
        f"cannot load voice backbone '{backbone}' (offline or not cached: {reason}); "
        f"on a machine with internet run `huggingface-cli download {backbone} --local-dir DIR` "
        f"(or model.save_pretrained(DIR)) and pass --backbone DIR"
    )


def build_face_encoder(backbone: str, weights: str | None = None):
    """A torchvision ResNet without its classifier, and its feature size.

    ``weights`` is a torchvision enum name (e.g. IMAGENET1K_V2), a local .safetensors/.pth file,
    or None for random init. ``backbone="tiny"`` is a narrow 4-stage ResNet for tests and demos.
    """
    import torch.nn as nn

    if backbone == TINY:
        encoder, dim = tiny_resnet(), TINY_RESNET_WIDTHS[-1]
    else:
        encoder, dim = _torchvision_resnet(backbone), RESNET_FEATURE_DIMS[backbone]
        if weights:
            load_face_weights(encoder, backbone, weights)
    encoder.fc = nn.Identity()
    return encoder, dim


def _torchvision_resnet(backbone: str):
    import torchvision

    if backbone not in RESNET_FEATURE_DIMS:
        raise ModelError(f"unknown face backbone '{backbone}' (expected one of {', '.join(RESNET_FEATURE_DIMS)} or tiny)")
    return getattr(torchvision.models, backbone)(weights=None)


def load_face_weights(encoder, backbone: str, weights: str) -> None:
    """Load ImageNet weights into a torchvision ResNet, from a local file or torchvision's cache."""
    path = Path(weights) if Path(weights).suffix else torchvision_weights_file(backbone, weights)
    state = read_state_dict(path)
    try:
        encoder.load_state_dict(state)
    except RuntimeError as error:
        raise ModelError(f"{path}: weights do not fit {backbone} ({str(error).splitlines()[0]})") from None


def torchvision_weights_file(backbone: str, name: str, download: bool = True) -> Path:
    """The local file of torchvision's ``name`` weights for ``backbone`` (downloaded once when online and ``download``)."""
    import torch
    import torchvision

    enum = torchvision.models.get_model_weights(backbone)
    try:
        url = enum[name].url
    except KeyError:
        raise ModelError(f"unknown weights '{name}' for {backbone} (expected one of {', '.join(enum.__members__)})") from None
    path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)
    if not path.exists() and download and not offline():
        try:
            torch.hub.download_url_to_file(url, str(path.with_suffix(".part")), progress=True)
            path.with_suffix(".part").replace(path)
        except OSError:
            pass
    if not path.exists():
        raise ModelError(
            f"cannot load {backbone} {name} weights (offline or not cached); download {url} "
            f"on a machine with internet and put it at {path}, or pass --face-weights FILE"
        )
    return path


def offline() -> bool:
    """True when HF_HUB_OFFLINE or EMOLIB_OFFLINE is set: nothing is downloaded."""
    return any(os.environ.get(flag, "") not in ("", "0") for flag in ("HF_HUB_OFFLINE", "EMOLIB_OFFLINE"))


def read_state_dict(path: Path) -> dict:
    """Read weights from .safetensors, or a .pth/.pt state dict with weights_only=True (never a pickle)."""
    import torch

    if not path.exists():
        raise ModelError(f"{path}: weights file not found")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    if tuple(int(part) for part in torch.__version__.split("+")[0].split(".")[:2]) < SAFE_TORCH_LOAD:
        raise ModelError(f"{path}: torch {torch.__version__} cannot load .pth files safely (CVE-2025-32434 bypasses weights_only "
                         f"before 2.6); upgrade torch or convert the file to .safetensors")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch raises many types for a bad file
        raise ModelError(f"{path}: not a plain weights file ({str(error).splitlines()[0][:120]})") from None


def tiny_resnet():
    """A narrow ResNet (widths 16-128, one BasicBlock per stage) built from torchvision's blocks."""
    import torch.nn as nn
    from torchvision.models.resnet import BasicBlock, conv1x1

    layers, inplanes = [], 16
    stem = [nn.Conv2d(3, inplanes, 7, 2, 3, bias=False), nn.BatchNorm2d(inplanes), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)]
    for index, width in enumerate(TINY_RESNET_WIDTHS):
        stride = 1 if index == 0 else 2
        downsample = None
        if stride != 1 or inplanes != width:
            downsample = nn.Sequential(conv1x1(inplanes, width, stride), nn.BatchNorm2d(width))
        layers.append(BasicBlock(inplanes, width, stride, downsample))
        inplanes = width
    return nn.Sequential(*stem, *layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
