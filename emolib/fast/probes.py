"""The inputs a fast-path export is calibrated and checked on: ``Probes``, and the packaged default set.

The packaged files (``emolib/fast/probes/``: synthetic speech and drawn face crops) are made by
``emolib.data.synth.probes``; this module only reads them. Callers may pass their own Probes,
e.g. crops and recordings from their data, to ``Predictor`` / ``FastPath``.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import ModelError

PROBE_FOLDER = Path(__file__).with_name("probes")
SPEECH_GLOB = "speech-*.flac"
CALIBRATION_FILE = "faces-calibration.jpg"
CHECK_FILE = "faces-check.jpg"


@dataclass(frozen=True)
class Probes:
    """Speech clips (16 kHz mono float32), face crops to calibrate int8 activations on, and face crops to check exports on.

    The voice check uses each clip alone (a zero-padded window) and all of them in a row (a full window).
    """

    speech: tuple
    calibration_faces: np.ndarray
    check_faces: np.ndarray

    def speech_windows(self) -> list[np.ndarray]:
        """The voice check's recordings: each clip alone, then all of them in a row."""
        return [*self.speech, np.concatenate(self.speech)]


@lru_cache(maxsize=1)
def default_probes() -> Probes:
    """The packaged probe set (read once per process)."""
    import soundfile

    from ..audio import to_model_rate

    speech = []
    for path in sorted(PROBE_FOLDER.glob(SPEECH_GLOB)):
        samples, rate = soundfile.read(str(path), dtype="float32")
        speech.append(to_model_rate(samples, rate, name=str(path)))
    if not speech:
        raise ModelError(f"{PROBE_FOLDER}: no probe recordings ({SPEECH_GLOB}); the emolib installation is incomplete")
    return Probes(tuple(speech), _read_strip(PROBE_FOLDER / CALIBRATION_FILE), _read_strip(PROBE_FOLDER / CHECK_FILE))


def _read_strip(path: Path) -> np.ndarray:
    """Square RGB crops stored side by side in one image -> (N, S, S, 3) uint8."""
    from ..video import read_image

    strip = read_image(path)
    side = strip.shape[0]
    return np.stack([strip[:, index * side : (index + 1) * side] for index in range(strip.shape[1] // side)])
