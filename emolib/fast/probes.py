"""The inputs a fast-path export is calibrated and checked on: ``Probes``, and the packaged default set.

The packaged files (``emolib/fast/probes/``): synthetic speech and drawn face crops made by
``emolib.data.synth.probes``, and 24 real recordings of two RAVDESS actors (``ravdess-*.flac``: actors 3 and 4,
12 each, all eight emotions, both intensities, 16 kHz; licence and source in the folder's README.md), so every voice
export is calibrated (GPTQ's second moments) and checked on real speech with its silences, not only on synthetic speech.
Six of them calibrated GPTQ before: 24 halve the largest embedding error on other people's speech (full-size random-init
wav2vec2-base, 138 recordings of RAVDESS actors 5-20, 1 - cosine: mean 1.5e-5 -> 1.2e-5, largest 3.9e-5 -> 1.9e-5),
for about 20 s more build time. This module only reads them. Callers may pass
their own Probes, e.g. crops and recordings from their data, to ``Predictor`` / ``FastPath``.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import ModelError

PROBE_FOLDER = Path(__file__).with_name("probes")
SPEECH_GLOB = "speech-*.flac"
REAL_PREFIX = "ravdess-"  # before each real recording's own RAVDESS name
REAL_SPEECH_GLOB = f"{REAL_PREFIX}*.flac"
CALIBRATION_FILE = "faces-calibration.jpg"
CHECK_FILE = "faces-check.jpg"


@dataclass(frozen=True)
class Probes:
    """Speech clips (16 kHz mono float32), face crops to calibrate int8 activations on, face crops to check exports on,
    and real recordings of people (16 kHz mono float32).

    The voice check uses each clip and each real recording alone (a zero-padded window) and the clips in a row (a full
    window).
    """

    speech: tuple
    calibration_faces: np.ndarray
    check_faces: np.ndarray
    real_speech: tuple = ()

    def speech_windows(self) -> list[np.ndarray]:
        """The voice check's recordings: each clip alone, each real recording alone, then the clips in a row."""
        return [*self.speech, *self.real_speech, np.concatenate(self.speech)]


@lru_cache(maxsize=1)
def default_probes() -> Probes:
    """The packaged probe set (read once per process)."""
    import soundfile

    from ..audio import to_model_rate

    found = {}
    for pattern in (SPEECH_GLOB, REAL_SPEECH_GLOB):
        found[pattern] = []
        for path in sorted(PROBE_FOLDER.glob(pattern)):
            samples, rate = soundfile.read(str(path), dtype="float32")
            found[pattern].append(to_model_rate(samples, rate, name=str(path)))
        if not found[pattern]:
            raise ModelError(f"{PROBE_FOLDER}: no probe recordings ({pattern}); the emolib installation is incomplete")
    return Probes(tuple(found[SPEECH_GLOB]), _read_strip(PROBE_FOLDER / CALIBRATION_FILE), _read_strip(PROBE_FOLDER / CHECK_FILE),
                  tuple(found[REAL_SPEECH_GLOB]))


def real_speech_names() -> list[str]:
    """The packaged real recordings' own RAVDESS names, in the order of ``Probes.real_speech``."""
    return [path.name.removeprefix(REAL_PREFIX) for path in sorted(PROBE_FOLDER.glob(REAL_SPEECH_GLOB))]


def _read_strip(path: Path) -> np.ndarray:
    """Square RGB crops stored side by side in one image -> (N, S, S, 3) uint8."""
    from ..video import read_image

    strip = read_image(path)
    side = strip.shape[0]
    return np.stack([strip[:, index * side : (index + 1) * side] for index in range(strip.shape[1] // side)])
