"""What a models folder says beyond each checkpoint: whether its models share one label set, whether their probabilities are
calibrated, and its own settings (``starter.json``: a note and the late fusion of models without a fusion model)."""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import ModelError

FOLDER_FILE = "starter.json"  # a models folder's own note and late fusion (the starter models: no fusion model was trained)


def common_labels(models: dict, where=None) -> tuple[str, ...]:
    """The one label set of the given models (from their checkpoints); ModelError when two differ."""
    from ..models.checkpoint import checkpoint_labels

    sets = {kind: checkpoint_labels(model) for kind, model in models.items() if model is not None}
    first = next(iter(sets.values()), ())
    for kind, labels in sets.items():
        if labels != first:
            raise ModelError(f"{where or 'Predictor'}: the {kind} model's labels {list(labels)} differ from the "
                             f"{next(iter(sets))} model's {list(first)}; use models trained on one label set together")
    return first


def calibration_note(kind: str, config: dict | None) -> str | None:
    """What a prediction's notes say about a model whose probabilities are not calibrated (None: it is, or it was never saved)."""
    if config is None:
        return None
    calibration = config.get("calibration")
    if calibration is None:
        return f"the {kind} model predates calibration: its probabilities are uncalibrated (temperature 1)"
    if not calibration.get("fitted_on"):
        return f"the {kind} model is not calibrated ({calibration.get('why', 'no temperature was fitted')}): temperature 1"
    return None


def folder_settings(models_dir) -> dict:
    """A models folder's ``starter.json`` ({"note", "late_fusion": {"voice", "face"}}), or {}."""
    path = Path(str(models_dir)) / FOLDER_FILE
    if not path.is_file():
        return {}
    try:
        settings = json.loads(path.read_text())
        late = settings.get("late_fusion")
        if late is not None:
            settings["late_fusion"] = {"voice": float(late["voice"]), "face": float(late["face"])}
        return settings
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise ModelError(f"{path}: not a models folder's settings ({type(error).__name__}: {error})") from None
