"""Turn preprocessed arrays into model tensors, the same way in training and in live inference.

The settings dataclasses here are stored in every checkpoint, so a loaded model always gets
the input it was trained on.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .audio import SAMPLE_RATE, WINDOW_SECONDS, fixed_window, normalize_wave

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FACE_IMAGE_SIZE = 224


@dataclass
class AudioSettings:
    """How a waveform becomes ``input_values`` and ``attention_mask``."""

    sample_rate: int = SAMPLE_RATE
    window_seconds: float = WINDOW_SECONDS
    normalize: bool = True


@dataclass
class FaceSettings:
    """How face crops become ``pixels``; frames and margin also key the face-crop cache."""

    image_size: int = FACE_IMAGE_SIZE
    frames: int = 3
    margin: float = 0.25
    mean: tuple = field(default_factory=lambda: IMAGENET_MEAN)
    std: tuple = field(default_factory=lambda: IMAGENET_STD)


def voice_inputs(wave: np.ndarray, settings: AudioSettings, rng: np.random.Generator | None = None) -> dict:
    """A 16 kHz mono waveform -> fixed window ``input_values`` (float) and ``attention_mask`` (long)."""
    window, valid = fixed_window(wave, settings.window_seconds, settings.sample_rate, random_crop=rng)
    if settings.normalize:
        window = normalize_wave(window, valid)
    mask = np.zeros(len(window), dtype=np.int64)
    mask[:valid] = 1
    return {"input_values": torch.from_numpy(window), "attention_mask": torch.from_numpy(mask)}


def face_pixels(crops: np.ndarray, settings: FaceSettings, rng: np.random.Generator | None = None) -> torch.Tensor:
    """Face crops (F, H, W, 3) or (H, W, 3) uint8 RGB -> normalised (F, 3, S, S) float tensor.

    With ``rng`` (training), each crop gets a random horizontal flip and brightness/contrast jitter.
    """
    crops = np.asarray(crops)
    if crops.ndim == 3:
        crops = crops[None]
    pixels = torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float().div_(255.0)
    if pixels.shape[-1] != settings.image_size or pixels.shape[-2] != settings.image_size:
        pixels = torch.nn.functional.interpolate(pixels, size=(settings.image_size,) * 2, mode="bilinear", antialias=True, align_corners=False)
    if rng is not None:
        pixels = _jitter(pixels, rng)
    mean = torch.tensor(settings.mean).view(1, 3, 1, 1)
    std = torch.tensor(settings.std).view(1, 3, 1, 1)
    return (pixels - mean) / std


def _jitter(pixels: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    flip = torch.from_numpy(rng.random(pixels.shape[0]) < 0.5)
    pixels = torch.where(flip.view(-1, 1, 1, 1), pixels.flip(-1), pixels)
    brightness = torch.from_numpy(rng.uniform(0.8, 1.2, (pixels.shape[0], 1, 1, 1))).float()
    contrast = torch.from_numpy(rng.uniform(0.8, 1.2, (pixels.shape[0], 1, 1, 1))).float()
    mean = pixels.mean(dim=(1, 2, 3), keepdim=True)
    return ((pixels - mean) * contrast + mean * brightness).clamp(0, 1)
