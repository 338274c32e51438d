"""Turn preprocessed arrays into model tensors, the same way in training and in live inference.

The settings dataclasses here are stored in every checkpoint, so a loaded model always gets
the input it was trained on.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import torch

from .audio import SAMPLE_RATE, WINDOW_SECONDS, fixed_window, normalize_wave
from .errors import ModelError
from .faces import FACE_MARGIN, FACE_SIZE, Detector, crop_clip_faces
from .speech import speech_mask
from .video import DEFAULT_FRAMES

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class AudioSettings:
    """How a waveform becomes ``input_values`` and ``attention_mask`` (and, with ``speech_only``, the ``speech_mask``
    of the samples Silero VAD marks as speech: the voice model pools over those frames only)."""

    sample_rate: int = SAMPLE_RATE
    window_seconds: float = WINDOW_SECONDS
    normalize: bool = True
    speech_only: bool = False

    def __post_init__(self):
        if not self.window_seconds > 0:
            raise ModelError(f"audio settings: window_seconds must be positive, got {self.window_seconds}")
        if not self.sample_rate > 0:
            raise ModelError(f"audio settings: sample_rate must be positive, got {self.sample_rate}")

    @classmethod
    def of(cls, model) -> "AudioSettings":
        """The AudioSettings stored in a voice (or fusion) model's checkpoint config."""
        return cls(**_stored_preprocessing(model, "audio"))


@dataclass
class FaceSettings:
    """How a clip's frames become face crops and the crops ``pixels``: frames per clip, crop size and margin,
    the face detector, and the normalisation. Stored in every face checkpoint; all of it keys the crop cache."""

    image_size: int = FACE_SIZE
    frames: int = DEFAULT_FRAMES
    margin: float = FACE_MARGIN
    mean: tuple = field(default_factory=lambda: IMAGENET_MEAN)
    std: tuple = field(default_factory=lambda: IMAGENET_STD)
    detector: Detector = field(default_factory=Detector)
    align: bool = True

    @classmethod
    def of(cls, model) -> "FaceSettings":
        """The FaceSettings stored in a face (or fusion) model's checkpoint config."""
        return cls.from_stored(_stored_preprocessing(model, "face"))

    @classmethod
    def from_stored(cls, stored: dict) -> "FaceSettings":
        """FaceSettings from a checkpoint's ``preprocessing.face``. A checkpoint written before BlazeFace and alignment has
        neither a detector ``kind`` nor ``align``: it keeps Haar and box crops, so its predictions do not change."""
        stored = {"align": False, **stored}
        detector = stored.get("detector")
        stored["detector"] = Detector(**{"kind": "haar", **detector}) if isinstance(detector, dict) else detector or Detector(kind="haar")
        return cls(**stored)

    def __post_init__(self):
        if isinstance(self.detector, dict):
            self.detector = Detector(**self.detector)
        self.mean, self.std = tuple(self.mean), tuple(self.std)
        if int(self.frames) < 1 or int(self.image_size) < 1 or not self.margin >= 0:
            raise ModelError(f"face settings: frames and image_size must be at least 1 and margin non-negative "
                             f"(got frames={self.frames}, image_size={self.image_size}, margin={self.margin})")


def _stored_preprocessing(model, key: str) -> dict:
    config = getattr(model, "checkpoint", None) or {}
    stored = (config.get("preprocessing") or {}).get(key)
    if not isinstance(stored, dict):
        raise ModelError(f"{getattr(model, 'checkpoint_dir', 'model')}: checkpoint config has no preprocessing.{key} settings")
    return stored


def crop_clip(frames: list[np.ndarray], settings: FaceSettings, detections=None):
    """A clip's frames -> (crops, found, boxes) with the settings' detector, crop size, margin and alignment (faces.crop_clip_faces)."""
    return crop_clip_faces(frames, settings.image_size, settings.margin, detections, settings.detector, settings.align)


def voice_inputs(wave: np.ndarray, settings: AudioSettings, rng: np.random.Generator | None = None, speech: np.ndarray | None = None) -> dict:
    """A 16 kHz mono waveform -> fixed window ``input_values`` (float) and ``attention_mask`` (long).

    With ``settings.speech_only`` also ``speech_mask`` (long, per sample): the window's samples that are
    speech (``speech``: the whole wave's ``speech.speech_mask``, computed here when None). A window without
    any detected speech keeps all its real audio (the fallback: a model always gets some frames).
    """
    crop = copy.deepcopy(rng) if rng is not None and settings.speech_only else None  # the same random crop for the speech mask
    window, valid = fixed_window(wave, settings.window_seconds, settings.sample_rate, random_crop=rng)
    if settings.normalize:
        window = normalize_wave(window, valid)
    mask = np.zeros(len(window), dtype=np.int64)
    mask[:valid] = 1
    inputs = {"input_values": torch.from_numpy(window), "attention_mask": torch.from_numpy(mask)}
    if settings.speech_only:
        speech = speech_mask(wave) if speech is None else speech
        kept = (fixed_window(speech, settings.window_seconds, settings.sample_rate, random_crop=crop)[0] > 0).astype(np.int64) * mask
        inputs["speech_mask"] = torch.from_numpy(kept if kept.any() else mask.copy())
    return inputs


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
