"""After training: the temperature of the model just trained (and of the late-fusion baseline, for the fusion model), fitted
on the validation split (``eval.calibration.fit_temperature``) and written into its checkpoint config.

Only the validation clips are predicted: a manifest's test split is never read here, so a temperature is the same whether
the manifest holds test clips or not.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..eval.calibration import fit_temperature
from ..eval.predictions import LATE, RAW, predict_split, prediction_labels
from ..files import atomic_write
from ..locks import folder_lock
from ..models.checkpoint import CONFIG_FILE


def calibrate(models_dir, kind: str, manifest, cache_dir=None, device: str = "auto", progress: bool = True) -> dict:
    """Fit and store the temperature of ``models_dir/kind`` (for fusion also the late baseline's); returns {name: fit}."""
    models_dir = Path(models_dir)
    kinds = ("voice", "face", "fusion") if kind == "fusion" else (kind,)
    table = predict_split(manifest[manifest["split"] == "val"], models_dir, "val", cache_dir, device, progress, kinds=kinds)
    fits = {name: fit_of(table, name) for name in ((kind, LATE) if kind == "fusion" else (kind,)) if f"{name}_pred" in table}
    folder = models_dir / kind
    with folder_lock(folder, "recording the calibration temperature"):
        config = json.loads((folder / CONFIG_FILE).read_text())
        if kind in fits:
            config["calibration"] = {**fits[kind], "fitted_on": "val"}
        if LATE in fits and config.get("late_fusion"):
            config["late_fusion"] = {**config["late_fusion"], "temperature": fits[LATE]["temperature"]}
        atomic_write(folder / CONFIG_FILE, json.dumps(config, indent=2))
    return fits


def fit_of(table, name: str) -> dict:
    """``fit_temperature`` of ``name``'s uncalibrated probabilities on the clips it predicted whose label it knows."""
    labels = prediction_labels(table, name)
    rows = table.dropna(subset=[f"{name}_pred"])
    rows = rows[rows["emotion"].astype(str).isin(labels)]
    return fit_temperature(rows[[f"{RAW}{name}_{label}" for label in labels]].to_numpy(float), rows["emotion"].astype(str).map(labels.index).to_numpy())
