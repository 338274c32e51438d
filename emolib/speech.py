"""Speech detection: how much of a 16 kHz recording is speech, by Silero VAD (MIT), and the one no-speech rule.

Silence and background noise are not an emotion. ``speech_seconds`` runs Silero VAD's ONNX model
(shipped inside the PyPI package ``silero-vad``, found there without importing it) through ONNX
Runtime on 32 ms chunks and counts the chunks whose speech probability reaches ``THRESHOLD``.
``has_speech`` is the rule every caller uses (prediction, timeline, annotate, the live stream): a
window with less than ``min_seconds`` of speech has no voice input, exactly as a missing audio track.
"""
from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np

from .errors import EmolibError

SAMPLE_RATE = 16000
CHUNK = 512  # samples per VAD step at 16 kHz (32 ms)
CONTEXT = 64  # samples of the previous chunk the model sees with each one
STATE_SHAPE = (2, 1, 128)
THRESHOLD = 0.5  # speech probability of a chunk
MODEL_FILE = ("data", "silero_vad.onnx")
INSTALL = "pip install silero-vad"


def model_path() -> Path:
    """The Silero VAD ONNX file inside the installed ``silero-vad`` package; EmolibError saying how to install it."""
    spec = importlib.util.find_spec("silero_vad")
    path = Path(next(iter(spec.submodule_search_locations or []), "")).joinpath(*MODEL_FILE) if spec else None
    if path is None or not path.is_file():
        raise EmolibError(f"speech detection needs Silero VAD's model from the silero-vad package: {INSTALL}")
    return path


@lru_cache(maxsize=None)
def _session():
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(str(model_path()), options, providers=["CPUExecutionProvider"])


def speech_probabilities(wave: np.ndarray) -> np.ndarray:
    """Silero VAD's speech probability of each 32 ms chunk of a 16 kHz mono wave (a trailing part chunk is left out)."""
    session = _session()
    wave = np.asarray(wave, dtype=np.float32).reshape(-1)
    state = np.zeros(STATE_SHAPE, dtype=np.float32)
    context = np.zeros(CONTEXT, dtype=np.float32)
    rate = np.array(SAMPLE_RATE, dtype=np.int64)
    probabilities = []
    for start in range(0, len(wave) - CHUNK + 1, CHUNK):
        chunk = wave[start : start + CHUNK]
        output, state = session.run(None, {"input": np.concatenate([context, chunk])[None], "state": state, "sr": rate})
        probabilities.append(float(output.reshape(-1)[0]))
        context = chunk[-CONTEXT:]
    return np.asarray(probabilities, dtype=np.float32)


def speech_chunks(wave: np.ndarray) -> np.ndarray:
    """Whether each whole 32 ms chunk of a 16 kHz mono wave is speech (its probability reaches THRESHOLD)."""
    return speech_probabilities(wave) >= THRESHOLD


def speech_seconds(wave: np.ndarray | None) -> float:
    """Seconds of speech in a 16 kHz mono wave (0 for none)."""
    if wave is None or not np.asarray(wave).size:
        return 0.0
    return float(speech_chunks(wave).sum() * CHUNK / SAMPLE_RATE)


def speech_mask(wave: np.ndarray | None) -> np.ndarray:
    """A 0/1 float32 mask of a 16 kHz mono wave's samples: 1 where Silero VAD marks the 32 ms chunk as speech
    (a trailing part chunk takes the last whole chunk's decision)."""
    wave = np.asarray(wave if wave is not None else [], dtype=np.float32).reshape(-1)
    mask = np.zeros(len(wave), dtype=np.float32)
    if len(wave) < CHUNK:
        return mask
    chunks = np.repeat(speech_chunks(wave).astype(np.float32), CHUNK)
    mask[: len(chunks)] = chunks
    mask[len(chunks):] = chunks[-1]
    return mask


def has_speech(seconds: float, min_seconds: float) -> bool:
    """The no-speech rule: a window gives the voice model an input only with at least ``min_seconds`` of speech (0: always)."""
    return min_seconds <= 0 or seconds >= min_seconds
