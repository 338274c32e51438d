"""What a prediction returns: ``Prediction`` (probabilities, the models that ran, notes) and ``PredictionError``."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from ..errors import EmolibError
from ..labels import display_name


class PredictionError(EmolibError, ValueError):
    """Neither modality is usable (no audio or silence, and no face), so there is nothing to predict from."""


@dataclass
class Prediction:
    """The result of one prediction.

    ``probabilities`` are the final ones over the models' label set, in its order (``source``:
    "fusion", "late" (a models folder's late fusion), "average", "voice" or "face");
    ``voice``, ``face`` and ``fusion`` hold each model's probabilities when it ran (None otherwise);
    ``emotion`` is "uncertain" (``abstained``) when the top calibrated probability is under the predictor's ``abstain``;
    ``modalities`` are the inputs that were used; ``face_box`` (x, y, w, h) is in the pixels of
    frame ``face_frame`` of the input (its own pixels: ``image_scale`` (x, y), when set, is how many of them one pixel of
    the frames the models saw covers); ``faces`` lists every face found, the main one first
    (``infer.people``: id, box, found_in_frames, probabilities, label, main, source); ``notes`` explain every fallback.
    """

    emotion: str
    probabilities: dict
    source: str
    modalities: list
    voice: dict | None = None
    face: dict | None = None
    fusion: dict | None = None
    present: list | None = None
    face_found: bool | None = None
    face_box: tuple | None = None
    face_frame: int | None = None
    faces: list = field(default_factory=list)
    frames: int = 0
    frames_with_face: int = 0
    audio_seconds: float | None = None
    audio_rms: float | None = None
    speech_seconds: float | None = None
    image_scale: list | None = None
    speaker_norm: str | None = None
    abstained: bool = False
    notes: list = field(default_factory=list)

    @property
    def emotion_name(self) -> str:
        return display_name(self.emotion)

    @property
    def display_label(self) -> str:
        """The label, spelt out when it is a code: "ANG (anger)", "happy"."""
        return self.emotion if self.emotion_name == self.emotion else f"{self.emotion} ({self.emotion_name})"

    @property
    def labels(self) -> list[str]:
        """The models' label set, in order."""
        return list(self.probabilities)

    @property
    def confidence(self) -> float:
        """The top probability (also when the prediction abstained: ``emotion`` is then "uncertain")."""
        return float(max(self.probabilities.values()))

    def in_input_pixels(self, scale) -> "Prediction":
        """This prediction with its boxes times ``scale`` (x, y): from a working copy's pixels to the input's own."""
        sx, sy = (float(value) for value in scale)
        if (sx, sy) == (1.0, 1.0):
            return self
        grow = lambda box: [int(round(box[0] * sx)), int(round(box[1] * sy)), int(round(box[2] * sx)), int(round(box[3] * sy))]  # noqa: E731
        self.face_box = tuple(grow(self.face_box)) if self.face_box is not None else None
        self.faces = [{**face, "box": grow(face["box"])} for face in self.faces]
        self.image_scale = [sx, sy]
        return self

    def to_dict(self) -> dict:
        """A JSON-serialisable dict (plain floats, ints, lists; a non-finite number becomes None)."""
        result = asdict(self)
        result["emotion_name"] = self.emotion_name
        result["face_box"] = list(self.face_box) if self.face_box is not None else None
        return _finite(result)

    def to_row(self) -> dict:
        """One flat row (a DataFrame's): emotion, its name, confidence, source, modalities ("voice+face"), abstained, the face
        and speech measures, one ``p_<label>`` column per label (the final probabilities) and the notes joined by "; "."""
        row = {"emotion": self.emotion, "emotion_name": self.emotion_name, "confidence": self.confidence, "source": self.source,
               "modalities": "+".join(self.modalities), "abstained": self.abstained, "face_found": self.face_found,
               "frames_with_face": self.frames_with_face, "speech_seconds": self.speech_seconds}
        row.update({f"p_{label}": float(value) for label, value in self.probabilities.items()})
        return {**row, "notes": "; ".join(self.notes)}

    def to_json(self) -> str:
        """Strict JSON (never NaN or Infinity) of ``to_dict``."""
        import json

        return json.dumps(self.to_dict(), allow_nan=False)

    def summary(self) -> str:
        """One line: emotion, confidence, and what it came from."""
        used = " + ".join(self.modalities)
        how = {"fusion": f"fusion model on {used}", "average": "mean of voice and face models",
               "late": "late fusion of the voice and face models"}.get(self.source, f"{self.source} model only")
        return f"{self.display_label} {self.confidence:.0%} - {how}"


def probability_dict(probabilities, labels) -> dict:
    """{label: probability} over ``labels``, in their order."""
    return {label: float(value) for label, value in zip(labels, np.asarray(probabilities, dtype=np.float64))}


def _finite(value):
    """``value`` with every NaN or infinite float (in dicts and lists) replaced by None."""
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value
