"""Audio preprocessing for the voice model: load, convert to 16 kHz mono float32, window, normalize.

Every waveform a model sees passes through ``to_model_rate`` (files go through ``load_audio``),
then ``fixed_window`` and ``normalize_wave``, in training and live inference alike.
"""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from .errors import AudioError, check_input_file

SAMPLE_RATE = 16000
WINDOW_SECONDS = 4.0
MIN_SECONDS = 0.25
SILENCE_RMS = 1e-3  # about -60 dBFS
NORM_EPSILON = 1e-7  # as in transformers' Wav2Vec2FeatureExtractor
INT_SCALE = {np.dtype(np.int8): 2.0**7, np.dtype(np.int16): 2.0**15, np.dtype(np.int32): 2.0**31}


def load_audio(path: str | Path) -> np.ndarray:
    """Read an audio file (wav, flac, ...; any rate, depth and channel count) as 16 kHz mono float32.

    Raises AudioError naming the file when it is missing, empty, truncated or not audio, holds
    no samples or NaN/inf samples, or lasts less than MIN_SECONDS. Silence is not an error:
    check ``is_silent`` where it matters.
    """
    import soundfile

    path = Path(path)
    check_audio_header(path)
    try:
        samples, sample_rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, ValueError, TypeError) as error:
        reason = getattr(error, "error_string", None) or str(error)
        raise AudioError(f"{path}: not a readable audio file ({_one_line(reason)})") from None
    if samples.shape[0] == 0:
        raise AudioError(f"{path}: no audio samples")
    seconds = samples.shape[0] / sample_rate
    if seconds < MIN_SECONDS:
        raise AudioError(f"{path}: clip is {seconds:.2f} s long, shorter than the minimum of {MIN_SECONDS:.2f} s")
    return to_model_rate(samples, sample_rate, name=str(path))


def check_audio_header(path) -> None:
    """AudioError naming ``path`` when it is missing, empty, not a file, or a WAV whose header promises more data than it holds."""
    path = Path(path)
    check_input_file(path, AudioError)
    _check_wav_complete(path)


def to_model_rate(samples, sample_rate: int, name: str = "audio array") -> np.ndarray:
    """Convert an array to 16 kHz mono float32: average channels, scale integers to [-1, 1), resample.

    ``samples`` is 1-D, or 2-D as (frames, channels) like soundfile and sounddevice give; a 2-D
    array with at most 8 rows and more columns is read as (channels, frames). ``name`` goes
    into error messages.
    """
    wave = _to_float(np.asarray(samples), name)
    wave = _to_mono(wave, name)
    if wave.size == 0:
        raise AudioError(f"{name}: no audio samples")
    if not np.isfinite(wave).all():
        raise AudioError(f"{name}: contains NaN or infinite samples")
    if sample_rate is None or not float(sample_rate).is_integer() or sample_rate <= 0:
        raise AudioError(f"{name}: invalid sample rate {sample_rate!r}")
    if int(sample_rate) != SAMPLE_RATE:
        wave = resample(wave, int(sample_rate), SAMPLE_RATE)
    return np.ascontiguousarray(wave, dtype=np.float32)


def resample(wave: np.ndarray, from_rate: int, to_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Resample a 1-D float waveform with torchaudio's band-limited sinc interpolation."""
    import torch
    import torchaudio.functional

    tensor = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))
    return torchaudio.functional.resample(tensor, from_rate, to_rate).numpy()


def is_silent(wave: np.ndarray, threshold: float = SILENCE_RMS) -> bool:
    """True when the waveform's RMS level is below ``threshold`` (digital silence or near it)."""
    wave = np.asarray(wave, dtype=np.float64)
    return wave.size == 0 or float(np.sqrt(np.mean(wave**2))) < threshold


def fixed_window(
    wave: np.ndarray,
    seconds: float = WINDOW_SECONDS,
    sample_rate: int = SAMPLE_RATE,
    random_crop: np.random.Generator | None = None,
) -> tuple[np.ndarray, int]:
    """Pad with zeros at the end, or crop, to exactly ``seconds * sample_rate`` samples.

    Long clips are centre-cropped, or cropped at a random offset drawn from ``random_crop``
    (training augmentation). Returns the window and its number of valid (non-padding) samples,
    from which callers build the attention mask.
    """
    wave = np.asarray(wave, dtype=np.float32)
    length = int(round(seconds * sample_rate))
    if length <= 0:
        raise ValueError(f"window of {seconds} s at {sample_rate} Hz has no samples")
    if len(wave) >= length:
        extra = len(wave) - length
        start = int(random_crop.integers(0, extra + 1)) if random_crop is not None else extra // 2
        return wave[start : start + length].copy(), length
    window = np.zeros(length, dtype=np.float32)
    window[: len(wave)] = wave
    return window, len(wave)


def normalize_wave(wave: np.ndarray, valid: int | None = None) -> np.ndarray:
    """Zero-mean, unit-variance normalization over the first ``valid`` samples; padding stays 0.

    Matches Wav2Vec2FeatureExtractor(do_normalize=True) with an attention mask; silence gives zeros.
    """
    wave = np.asarray(wave, dtype=np.float32)
    valid = len(wave) if valid is None else int(valid)
    if valid <= 0:
        return np.zeros_like(wave)
    part = wave[:valid]
    normed = (wave - part.mean()) / np.sqrt(part.var() + NORM_EPSILON)
    normed[valid:] = 0.0
    return normed.astype(np.float32)


def _to_float(samples: np.ndarray, name: str) -> np.ndarray:
    if samples.dtype == np.uint8:
        return (samples.astype(np.float32) - 128.0) / 128.0
    if samples.dtype in INT_SCALE:
        return (samples / INT_SCALE[samples.dtype]).astype(np.float32)
    if np.issubdtype(samples.dtype, np.floating):
        return samples.astype(np.float32, copy=False)
    raise AudioError(f"{name}: unsupported sample type {samples.dtype}")


def _to_mono(wave: np.ndarray, name: str) -> np.ndarray:
    if wave.ndim == 1:
        return wave
    if wave.ndim != 2:
        raise AudioError(f"{name}: expected a 1-D or (frames, channels) array, got shape {wave.shape}")
    if wave.shape[0] <= 8 < wave.shape[1]:
        wave = wave.T
    return wave.mean(axis=1) if wave.shape[1] > 1 else wave[:, 0]


def _check_wav_complete(path: Path) -> None:
    """Raise when a RIFF/WAVE file's data chunk claims more bytes than the file holds."""
    with open(path, "rb") as file:
        head = file.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return
        size = path.stat().st_size
        while True:
            chunk = file.read(8)
            if len(chunk) < 8:
                return
            chunk_id, chunk_size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if chunk_id == b"data":
                present = size - file.tell()
                if chunk_size not in (0, 0xFFFFFFFF) and present < chunk_size:
                    raise AudioError(f"{path}: truncated WAV (header promises {chunk_size} data bytes, file holds {present})")
                return
            file.seek(chunk_size + (chunk_size & 1), 1)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())
