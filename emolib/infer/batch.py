"""Many files at once from Python: ``Predictor.predict_files`` with lists gives a pandas DataFrame, one row per input.

Every input ends with a row: its prediction (``Prediction.to_row``: emotion, confidence, ``p_<label>`` columns, notes) or,
when it cannot be predicted from (an unreadable file, silence and no face), its ``error`` and no emotion. For archives too large
to hold in memory, with resumable output, use ``emolib annotate``.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from ..errors import EmolibError

INPUTS = ("audio", "image", "video")


def as_list(value) -> list | None:
    """``value`` as a list of paths: None stays None; a str or Path is one path; any other iterable is listed."""
    if value is None:
        return None
    if isinstance(value, (str, Path)):
        return [value]
    return list(value)


def is_batch(*values) -> bool:
    """Whether any of ``values`` is a collection of paths (not one str or Path, not None)."""
    return any(value is not None and not isinstance(value, (str, Path)) for value in values)


def predictions_table(predict_one, labels, audio=None, image=None, video=None, progress: bool = True):
    """The DataFrame of ``predict_one(audio=, image=, video=)`` over the inputs paired by position (lists of one length; a single
    path is used with every row): columns audio / image / video (those given), then the ``Prediction.to_row`` columns and ``error``.
    A ValueError when the lists differ in length."""

    given = {name: as_list(value) for name, value in zip(INPUTS, (audio, image, video)) if value is not None}
    lengths = {len(paths) for paths in given.values() if len(paths) != 1} or {1}
    if not given or len(lengths) > 1:
        raise ValueError("predict_files: give audio, image or video paths; lists must have one length "
                         f"({', '.join(f'{name} {len(paths)}' for name, paths in given.items()) or 'none given'})")
    count = lengths.pop()
    rows = []
    for index in tqdm(range(count), desc="predict", unit="file", disable=not progress or count < 2):
        inputs = {name: paths[0] if len(paths) == 1 else paths[index] for name, paths in given.items()}
        row = {name: str(path) for name, path in inputs.items()}
        try:
            row.update(predict_one(**inputs).to_row(), error="")
        except EmolibError as error:
            row.update(emotion=None, notes="", error=str(error))
        rows.append(row)
    columns = [*given, "emotion", "emotion_name", "confidence", "source", "modalities", "abstained", "face_found", "frames_with_face",
               "speech_seconds", *(f"p_{label}" for label in labels), "notes", "error"]
    return pd.DataFrame(rows, columns=columns)
