"""Probe inputs for the fast path, made from the synthetic generator and shipped as package data.

The fast-path export (``emolib.fast.export``) is calibrated and checked on inputs its caller
gives it; by default the files in ``emolib/fast/probes/``, which ``write_probe_files`` makes
(``python -m emolib.data.synth.probes``). A test remakes them and compares, so the shipped files
stay what this code makes. Inference code reads the files and never imports this generator.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ...faces import crop_face
from ...transforms import FaceSettings
from ...files import atomic_write
from .corpus import synthesize_clip
from .face import Expression, random_face_look, render_frames

PROBE_SEED = 1234
PROBE_STEMS = ("1001_DFA_ANG_HI", "1002_IEO_SAD_LO", "1003_TIE_HAP_MD")
CALIBRATION_FACES = 16
CHECK_FACES = 8
PROBE_FOLDER = Path(__file__).resolve().parents[2] / "fast" / "probes"
SPEECH_FILE = "speech-{index}.flac"
FACES_FILE = "faces-{name}.jpg"
JPEG_QUALITY = 90
RACES = ("Caucasian", "African American", "Asian", "Unknown")


def probe_speech(seed: int = PROBE_SEED) -> list[np.ndarray]:
    """Synthetic speech clips (16 kHz): the single clips pad the model's window, their concatenation fills it."""
    return [synthesize_clip(stem, seed=seed, video=False).audio for stem in PROBE_STEMS]


def probe_faces(count: int, seed: int) -> np.ndarray:
    """Face crops (count, 224, 224, 3) of drawn faces, some mirrored, darker or brighter, as webcams and datasets differ."""
    import cv2

    rng = np.random.default_rng(seed)
    crops = []
    for index in range(count):
        look = random_face_look(rng, ("Male", "Female")[index % 2], RACES[index % len(RACES)])
        expression = Expression(
            brow_raise=rng.uniform(-0.3, 0.3), brow_tilt=rng.uniform(-0.3, 0.3), eye_open=rng.uniform(0.7, 1.3),
            mouth_open=rng.uniform(0.0, 0.5), mouth_curve=rng.uniform(-0.4, 0.4), mouth_width=rng.uniform(0.85, 1.15),
        )
        frame = cv2.cvtColor(render_frames(look, expression, np.array([rng.random()]), rng)[0], cv2.COLOR_BGR2RGB)
        crop = crop_face(frame, align=FaceSettings().align).image  # as new face models crop: BlazeFace, aligned
        if index % 3 == 2:
            crop = crop[:, ::-1]
        crops.append(np.clip(crop.astype(np.float32) * rng.uniform(0.6, 1.3), 0, 255).astype(np.uint8))
    return np.stack(crops)


def probe_arrays(seed: int = PROBE_SEED) -> dict:
    """{"speech": [waves], "calibration": crops, "check": crops}: what ``write_probe_files`` stores."""
    return {"speech": probe_speech(seed), "calibration": probe_faces(CALIBRATION_FACES, seed + 1), "check": probe_faces(CHECK_FACES, seed + 2)}


def write_probe_files(folder=PROBE_FOLDER, seed: int = PROBE_SEED) -> Path:
    """Write the probe speech (16-bit FLAC) and face crops (one JPEG strip per set) into ``folder``."""
    import io

    import cv2
    import soundfile

    folder = Path(folder)
    arrays = probe_arrays(seed)
    for index, wave in enumerate(arrays["speech"]):
        buffer = io.BytesIO()
        soundfile.write(buffer, wave, 16000, format="FLAC", subtype="PCM_16")
        atomic_write(folder / SPEECH_FILE.format(index=index), buffer.getvalue())
    for name in ("calibration", "check"):
        strip = cv2.cvtColor(np.concatenate(list(arrays[name]), axis=1), cv2.COLOR_RGB2BGR)
        ok, encoded = cv2.imencode(".jpg", strip, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        atomic_write(folder / FACES_FILE.format(name=name), encoded.tobytes())
    return folder


if __name__ == "__main__":
    print(f"wrote {write_probe_files()}")
