"""Speech detection: how much of a 16 kHz recording is speech, by Silero VAD (MIT), and the one no-speech rule.

Silence and background noise are not an emotion. Silero VAD's ONNX model (shipped inside the PyPI package
``silero-vad``) runs through ONNX Runtime on 32 ms chunks; ``speech_segments`` turns the chunks' speech
probabilities into speech segments with Silero's own segment logic (``get_speech_timestamps_from_probs``: a
segment starts at ``SEGMENT_THRESHOLD``, ends below it minus 0.15 after 100 ms, lasts 250 ms at least, padded
30 ms), once over a whole file or stream, and a window's speech is its share of those segments
(``seconds_in``): the same whatever the window's grid. ``has_speech`` is the rule every caller uses
(prediction, timeline, annotate, the live stream): a window with less than ``min_seconds`` of speech has no
voice input, exactly as a missing audio track. A voice model trained on speech stores its default
(``default_rule``: ``DEFAULT_MIN_SPEECH`` s at ``SEGMENT_THRESHOLD``); the threshold and the default were chosen
on real speech against room noise (BENCHMARKS.md, "Speech detection on real speech and room noise").

``speech_mask`` (the speech-only pooling of the best recipe) keeps its per-chunk rule at ``THRESHOLD``, as the
models trained with it saw it.
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
THRESHOLD = 0.5  # speech probability of a chunk, for speech_mask
SEGMENT_THRESHOLD = 0.3  # where Silero's segment logic starts speech: at 0.5 shouted speech (15 of 1,200 RAVDESS clips) had none
DEFAULT_MIN_SPEECH = 0.25  # seconds of speech a window needs, by default, when a voice model trained on speech: one segment
CHECK_CLIPS = 200  # training clips a new voice model checks for speech
SPEECH_SHARE = 0.97  # ... and the share that must have it for the rule to be on by default: real speech 99.2 % (1,212 RAVDESS and
# CREMA-D clips), the synthetic demo's syllables 94.5 % (Silero hears something in most of them, but not as reliably as in speech)
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


def speech_segments(wave: np.ndarray | None, threshold: float = SEGMENT_THRESHOLD) -> np.ndarray:
    """(K, 2) start and end seconds of the speech in a 16 kHz mono wave: Silero VAD's probabilities over its 32 ms chunks (the
    last one zero-padded, as Silero does) through Silero's segment logic."""
    wave = np.asarray(wave if wave is not None else [], dtype=np.float32).reshape(-1)
    if not wave.size:
        return np.zeros((0, 2))
    padded = np.concatenate([wave, np.zeros((-len(wave)) % CHUNK, dtype=np.float32)])
    return segments_of(speech_probabilities(padded), len(wave), threshold)


def segments_of(probabilities, samples: int, threshold: float = SEGMENT_THRESHOLD, offset: float = 0.0) -> np.ndarray:
    """Silero's segment logic (``silero_vad.get_speech_timestamps_from_probs``) over chunk probabilities of ``samples`` samples, as
    (K, 2) seconds from ``offset``."""
    from silero_vad import get_speech_timestamps_from_probs

    found = get_speech_timestamps_from_probs([float(value) for value in probabilities], sampling_rate=SAMPLE_RATE, threshold=threshold,
                                             audio_length_samples=int(samples))
    return np.array([[offset + item["start"] / SAMPLE_RATE, offset + item["end"] / SAMPLE_RATE] for item in found]).reshape(-1, 2)


def seconds_in(segments: np.ndarray, start: float, end: float) -> float:
    """Seconds of ``segments`` inside [start, end)."""
    segments = np.asarray(segments, dtype=np.float64).reshape(-1, 2)
    return float(np.clip(np.minimum(segments[:, 1], end) - np.maximum(segments[:, 0], start), 0.0, None).sum())


class StreamingVAD:
    """Silero VAD over a live stream: each 32 ms chunk through the model once as it arrives (its state carried from the stream's
    start), and Silero's segment logic over the last ``keep`` seconds of them when a window asks."""

    def __init__(self, threshold: float = SEGMENT_THRESHOLD, keep: float = 8.0, start: float = 0.0):
        self.threshold, self.keep = threshold, int(keep * SAMPLE_RATE / CHUNK)
        self.state = np.zeros(STATE_SHAPE, dtype=np.float32)
        self.context = np.zeros(CONTEXT, dtype=np.float32)
        self.pending = np.zeros(0, dtype=np.float32)
        self.probabilities: list[float] = []
        self.first = start  # stream seconds where self.probabilities[0]'s chunk starts

    def push(self, samples: np.ndarray) -> None:
        session, rate = _session(), np.array(SAMPLE_RATE, dtype=np.int64)
        self.pending = np.concatenate([self.pending, np.asarray(samples, dtype=np.float32).reshape(-1)])
        while len(self.pending) >= CHUNK:
            chunk, self.pending = self.pending[:CHUNK], self.pending[CHUNK:]
            output, self.state = session.run(None, {"input": np.concatenate([self.context, chunk])[None], "state": self.state, "sr": rate})
            self.probabilities.append(float(output.reshape(-1)[0]))
            self.context = chunk[-CONTEXT:]
        if len(self.probabilities) > self.keep:
            drop = len(self.probabilities) - self.keep
            self.probabilities, self.first = self.probabilities[drop:], self.first + drop * CHUNK / SAMPLE_RATE

    def seconds_in(self, start: float, end: float) -> float:
        return seconds_in(segments_of(self.probabilities, len(self.probabilities) * CHUNK, self.threshold, self.first), start, end)


def default_rule(waves) -> tuple[dict, str]:
    """The no-speech rule a voice model stores from a sample of its training clips (16 kHz waves): ``{"min_seconds",
    "threshold", "clips", "with_speech"}``, with min_seconds ``DEFAULT_MIN_SPEECH`` when at least ``SPEECH_SHARE`` of them hold
    that much speech, else 0 (off); and one line saying which and why."""
    seconds = [speech_seconds(wave) for wave in waves]
    share = float(np.mean([value >= DEFAULT_MIN_SPEECH for value in seconds])) if seconds else 0.0
    on = bool(seconds) and share >= SPEECH_SHARE
    rule = {"min_seconds": DEFAULT_MIN_SPEECH if on else 0.0, "threshold": SEGMENT_THRESHOLD, "clips": len(seconds), "with_speech": share}
    if on:
        why = (f"speech detection on by default: {share:.1%} of {len(seconds)} training clips hold speech (Silero VAD), so a window "
               f"needs {DEFAULT_MIN_SPEECH:g} s of it for the voice model")
    else:
        why = (f"speech detection off by default: only {share:.1%} of {len(seconds)} training clips hold speech by Silero VAD "
               f"(under {SPEECH_SHARE:.0%}: not speech it knows, e.g. synthetic); --min-speech turns it on")
    return rule, why


def stored_rule(config: dict | None) -> dict:
    """A voice checkpoint config's no-speech rule (``default_rule``); a checkpoint made before it has the rule off."""
    rule = (config or {}).get("speech") or {}
    return {"min_seconds": float(rule.get("min_seconds", 0.0)), "threshold": float(rule.get("threshold", SEGMENT_THRESHOLD)),
            "stored": bool(rule)}


def speech_chunks(wave: np.ndarray) -> np.ndarray:
    """Whether each whole 32 ms chunk of a 16 kHz mono wave is speech (its probability reaches THRESHOLD)."""
    return speech_probabilities(wave) >= THRESHOLD


def speech_seconds(wave: np.ndarray | None, threshold: float = SEGMENT_THRESHOLD) -> float:
    """Seconds of speech in a 16 kHz mono wave (``speech_segments``; 0 for none)."""
    return seconds_in(speech_segments(wave, threshold), 0.0, np.inf)


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
