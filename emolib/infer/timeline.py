"""Emotions over time in a long video: sliding windows (4 s, hop 1 s) through the Predictor.

Each window gets the audio samples that play inside it and ``settings.frames`` video frames sampled
inside it (frame i at (i + 0.5) / frames of the part of the window where the video plays, the spacing
``video.read_frames`` uses for a whole clip), so a 4 s window is predicted like a 4 s clip. Times are
the file's own (``media.timed_media``): a stream that starts late is placed where it plays, and a
window past the end of the video (or of the sound) has no face (or voice) input, and says so. ``timeline.csv`` has one row per
window and face (``face_id`` 0: the window's main face, fused with the voice; 1, 2, ...: the other
faces, face model only, ranked by frames present and size within the window; empty: no face); ``timeline.png`` plots the final probabilities as a stacked area and each model's
top emotion as markers.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..audio import SAMPLE_RATE, WINDOW_SECONDS
from ..errors import VideoError, check_input_file
from ..files import atomic_write
from ..labels import display_name
from ..media import timed_media
from ..video import read_frames_at
from .display import label_colours
from .people import SharedFrames, detect_all
from .prediction import PredictionError
from .predictor import Predictor

PROBABILITY_PREFIX = "prob_"
TAIL_SECONDS = 0.2  # a last window is added at a file's end when the hop grid leaves more than this uncovered (less is the
# padding of an AAC or MP3 track: 20.032 s of sound for 20 s of speech)


def window_starts(duration: float, window: float = WINDOW_SECONDS, hop: float = 1.0) -> list[float]:
    """Start times of the windows: every ``hop`` seconds while the window fits, then a last one ending at the file's end when the
    grid leaves a tail uncovered (a sentence may end there; its rows say ``tail``); one window for short media."""
    if window <= 0 or hop <= 0:
        raise ValueError(f"window and hop must be positive, got {window} and {hop}")
    if duration <= window:
        return [0.0]
    count = int(np.floor((duration - window) / hop + 1e-6)) + 1
    starts = [round(index * hop, 6) for index in range(count)]
    if starts[-1] + window < duration - TAIL_SECONDS:
        starts.append(round(duration - window, 6))
    return starts



@dataclass
class TimelineInputs:
    """A media file decoded for its windows: start times, each window's audio samples (16 kHz) and frames, the file's notes, each
    window's own notes (a stream that does not play in it), and the file's seconds."""

    starts: list
    ends: list
    clips: list
    images: list
    notes: list
    seconds: float
    window_notes: list = field(default_factory=list)
    speech: list | None = None  # each window's seconds of speech, from Silero's segments over the whole file (None: not measured)
    tail: bool = False  # the last window ends at the file's end, off the hop grid (window_starts)
    frame_ids: list | None = None  # each window's frame numbers in the file (its images'): overlapping windows share frames


def timeline_inputs(video, audio=None, window: float = WINDOW_SECONDS, hop: float = 1.0, frames: int = 0,
                    speech_threshold: float | None = None) -> TimelineInputs:
    """Decode ``video`` (and ``audio``, which overrides its track) into windows of ``window`` s every ``hop`` s on the file's own
    clock (``media.timed_media``: a stream that starts late is placed where it plays), each with the audio and ``frames`` frames
    that play inside it (0: no frames). With ``speech_threshold``, Silero VAD runs once over the whole sound and each window gets
    its share of the speech segments (``speech.seconds_in``). No emotion model is needed here."""
    video = Path(video)
    check_input_file(video, VideoError)
    media = timed_media(video, audio)
    starts = window_starts(media.duration, window, hop)
    ends = [min(start + window, media.duration) for start in starts]
    plans = [media.frame_indices(start, end, frames) for start, end in zip(starts, ends)]
    decoded = read_frames_at(video, [index for plan in plans for index in plan]) if any(plans) else {}
    clips = [media.audio_between(start, end) for start, end in zip(starts, ends)]
    frame_ids = [[index for index in plan if index in decoded] for plan in plans]
    images = [[decoded[index] for index in ids] or None for ids in frame_ids]
    window_notes = [media.window_notes(start, end) for start, end in zip(starts, ends)]
    speech = None
    if speech_threshold is not None and media.wave is not None:
        from ..speech import seconds_in, speech_segments

        segments = speech_segments(media.wave, speech_threshold) + media.audio_start
        speech = [seconds_in(segments, start, end) for start, end in zip(starts, ends)]
    tail = len(starts) > 1 and abs(starts[-1] - starts[-2] - hop) > 1e-6
    if tail:
        window_notes[-1] = window_notes[-1] + [f"last window: ends at the file's end ({ends[-1]:g} s), overlapping the one before"]
    return TimelineInputs(starts, ends, clips, images, media.notes, media.duration, window_notes, speech, tail, frame_ids)


def timeline_rows(predictor: Predictor, inputs: TimelineInputs, progress: bool = True, speaker=None, share_frames: bool = True):
    """One row per window of ``inputs``: start, end, label, source, modalities, each model's probabilities, notes. ``speaker``: the
    speaker statistics to standardise an eGeMAPS voice by (default: the file's own running estimate). With ``share_frames`` (and
    ``inputs.frame_ids``), a frame that several windows hold is detected and its face crops embedded once (``people.SharedFrames``;
    the same rows as without, which predicts every window on its own)."""
    import pandas as pd
    from tqdm.auto import tqdm

    rows = []
    speaker = speaker if speaker is not None else new_speaker(predictor)  # a file is one session: the running statistics of its speech
    shared = SharedFrames() if share_frames and inputs.frame_ids is not None else None
    if shared is not None and predictor.face is not None:
        detect_all(shared, inputs.images, inputs.frame_ids, predictor.face_settings)
    for index, (start, end, clip, images) in enumerate(tqdm(list(zip(inputs.starts, inputs.ends, inputs.clips, inputs.images)), desc="timeline",
                                                            unit="window", disable=not progress)):
        row = {"start": start, "end": round(end, 6), "tail": inputs.tail and index == len(inputs.starts) - 1}
        notes = inputs.notes + (inputs.window_notes[index] if index < len(inputs.window_notes) else [])
        try:
            prediction = predictor.predict(clip if clip is not None and clip.size else None, SAMPLE_RATE, images,
                                           audio_name=f"audio {start:g}-{end:g} s", image_name=f"frames {start:g}-{end:g} s",
                                           speech_seconds=inputs.speech[index] if inputs.speech is not None else None, speaker=speaker,
                                           frame_ids=inputs.frame_ids[index] if shared is not None else None, shared=shared)
        except PredictionError as error:
            rows.append({**row, "label": "", "source": "", "modalities": "", "face_found": False, "notes": "; ".join(notes + [str(error)])})
            continue
        row.update(label=prediction.emotion, source=prediction.source, modalities="+".join(prediction.modalities),
                   face_found=bool(prediction.face_found), audio_rms=prediction.audio_rms, speech_seconds=prediction.speech_seconds)
        for kind in ("voice", "face", "fusion"):
            probabilities = getattr(prediction, kind)
            row[f"{kind}_pred"] = max(probabilities, key=probabilities.get) if probabilities else ""
        for kind in ("voice", "face", "fusion"):
            probabilities = getattr(prediction, kind) or {}
            row.update({f"{kind}_{label}": probabilities.get(label, np.nan) for label in predictor.labels})
        row.update({f"{PROBABILITY_PREFIX}{label}": prediction.probabilities[label] for label in predictor.labels})
        row["notes"] = "; ".join(notes + prediction.notes)
        row["face_id"] = 0 if prediction.faces else None
        rows.append(row)
        rows += [{**other_face_row(start, end, face, predictor.labels), "tail": row["tail"]} for face in prediction.faces[1:]]
    columns = ["start", "end", "tail", "face_id", "label", "source", "modalities", "face_found", "audio_rms", "speech_seconds", "voice_pred", "face_pred",
               "fusion_pred"]
    columns += [f"{kind}_{label}" for kind in ("prob", "voice", "face", "fusion") for label in predictor.labels] + ["notes"]
    table = pd.DataFrame(rows).reindex(columns=columns)
    table["face_id"] = table["face_id"].astype("Int64")
    return table


def new_speaker(predictor):
    """A running ``egemaps.SpeakerStats`` for a session of ``predictor`` when its voice model standardises per speaker, else None."""
    if getattr(predictor.voice, "speaker_norm", False) and predictor.speaker_norm:
        from ..egemaps import SpeakerStats

        return SpeakerStats()
    return None


def other_face_row(start: float, end: float, face: dict, labels) -> dict:
    """The row of a face other than the window's main one: the face model's own prediction (the voice is the main face's)."""
    probabilities = face["probabilities"]
    row = {"start": start, "end": round(end, 6), "face_id": face["id"], "label": face["label"], "source": "face", "modalities": "face",
           "face_found": True, "voice_pred": "", "face_pred": face["label"], "fusion_pred": "",
           "notes": f"another face (id {face['id']}, box {face['box']}): face model only"}
    row.update({f"face_{label}": probabilities[label] for label in labels})
    row.update({f"{PROBABILITY_PREFIX}{label}": probabilities[label] for label in labels})
    return row


def main_rows(table):
    """One row per window: the main face's (or the face-less window's), as before several faces were reported."""
    return table[table["face_id"].fillna(0) == 0] if "face_id" in table else table


def predict_timeline(predictor: Predictor, video, audio=None, window: float | None = None, hop: float = 1.0, progress: bool = True):
    """A DataFrame with one row per window: start, end, label, source, and each model's probabilities.

    ``audio`` (a file) overrides the video's audio track. Windows where neither modality is
    usable get an empty label and the reason in ``notes``.
    """
    window = window or (predictor.audio_settings.window_seconds if predictor.audio_settings else WINDOW_SECONDS)
    frames = predictor.face_settings.frames if predictor.face_settings else 0
    return timeline_rows(predictor, timeline_inputs(video, audio, window, hop, frames, speech_threshold_of(predictor)), progress)


def speech_threshold_of(predictor) -> float | None:
    """Silero's segment threshold when ``predictor`` applies the no-speech rule to a voice (else None: nothing to measure)."""
    return predictor.speech_threshold if predictor.voice is not None and predictor.min_speech > 0 else None


def plot_timeline(table, title: str = ""):
    """Stacked area of the final probabilities per window centre, and the voice/face/final top emotion (the main face's rows)."""
    import matplotlib.pyplot as plt

    table = main_rows(table)

    centres = ((table["start"] + table["end"]) / 2).to_numpy(dtype=float)
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(10, 5), sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    labels = [column[len(PROBABILITY_PREFIX):] for column in table.columns if column.startswith(PROBABILITY_PREFIX)]
    colours = label_colours(labels)
    probabilities = np.nan_to_num(table[[f"{PROBABILITY_PREFIX}{label}" for label in labels]].to_numpy(dtype=float)).T
    if len(centres) == 1:
        centres_plot, probabilities = np.array([table["start"].iloc[0], table["end"].iloc[0]]), np.repeat(probabilities, 2, axis=1)
    else:
        centres_plot = centres
    names = [label if display_name(label) == label else f"{label} ({display_name(label)})" for label in labels]
    top.stackplot(centres_plot, probabilities, labels=names, colors=[colours[label] for label in labels], alpha=0.85)
    top.set(ylim=(0, 1), ylabel="probability", title=title or "emotions over time (final probabilities per window)")
    top.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    for offset, (column, marker, label) in zip((-0.2, 0.0, 0.2), (("voice_pred", "o", "voice"), ("face_pred", "s", "face"), ("label", "*", "final"))):
        values = table[column].fillna("").astype(str)
        keep = values.isin(labels).to_numpy()
        if keep.any():
            bottom.scatter(centres[keep], [labels.index(v) + offset for v in values[keep]], marker=marker, s=40 if marker != "*" else 90,
                           c=[colours[v] for v in values[keep]], edgecolors="black", linewidths=0.5, label=label)
    bottom.set(yticks=range(len(labels)), yticklabels=labels, ylim=(-0.6, len(labels) - 0.4), xlabel="time (s, window centre)", ylabel="top emotion")
    bottom.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    bottom.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    return figure


def write_timeline(predictor: Predictor, video, out_dir, audio=None, window: float | None = None, hop: float = 1.0, progress: bool = True):
    """Write ``out_dir/timeline.csv`` and ``out_dir/timeline.png``; returns the table. PredictionError, and nothing written,
    when no window has a usable input."""
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    table = predict_timeline(predictor, video, audio, window, hop, progress)  # before the folder exists: a failure leaves nothing behind
    if not table["label"].fillna("").astype(str).ne("").any():
        reason = next((note for note in table["notes"].fillna("").astype(str) if note), "neither voice nor face")
        raise PredictionError(f"{video}: no usable window in {len(table)} ({reason})")
    atomic_write(out_dir / "timeline.csv", table.to_csv(index=False, float_format="%.5f"))
    figure = plot_timeline(table, f"{Path(video).name}: emotions over time")
    figure.savefig(out_dir / "timeline.png", dpi=100, bbox_inches="tight")
    plt.close(figure)
    return table
