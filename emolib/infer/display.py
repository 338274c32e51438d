"""Showing a Prediction: text lines for the terminal, a matplotlib figure, PNG bytes for the widget."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..audio import SAMPLE_RATE

if TYPE_CHECKING:
    from .predictor import Prediction

MODEL_COLOURS = {"voice": "#4C72B0", "face": "#DD8452", "fusion": "#55A868", "average": "#55A868", "late": "#55A868"}
CREMAD_COLOURS = {"ANG": "#d62728", "DIS": "#8c564b", "FEA": "#9467bd", "HAP": "#ffbf00", "NEU": "#7f7f7f", "SAD": "#1f77b4"}
OTHER_COLOURS = ("#d62728", "#1f77b4", "#ffbf00", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
MAIN_FACE_COLOUR, OTHER_FACE_COLOUR = "#00ff66", "#ffaa00"


def label_colours(labels) -> dict[str, str]:
    """A colour per label: CREMA-D's codes keep theirs, any other label set takes a qualitative palette in order."""
    if set(labels) <= set(CREMAD_COLOURS):
        return {label: CREMAD_COLOURS[label] for label in labels}
    return {label: OTHER_COLOURS[index % len(OTHER_COLOURS)] for index, label in enumerate(labels)}


def format_prediction(prediction: Prediction) -> str:
    """Human-readable lines: the emotion, each model's probabilities, modalities, face, notes."""
    lines = [f"emotion: {prediction.display_label}, p={prediction.confidence:.2f}"]
    width = max(len(kind) for kind in ("voice", "face", "fusion", prediction.source))
    labels = prediction.labels
    column = max(5, *(len(label) for label in labels))
    lines.append(" " * (width + 2) + " ".join(f"{label:>{column}}" for label in labels))
    rows = [("voice", prediction.voice), ("face", prediction.face), ("fusion", prediction.fusion)]
    if prediction.source in ("average", "late"):
        rows.append((prediction.source, prediction.probabilities))
    for kind, probabilities in rows:
        if probabilities is not None:
            marker = "*" if kind == prediction.source else " "
            lines.append(f"{kind:<{width}}{marker} " + " ".join(f"{probabilities[label]:{column}.2f}" for label in labels))
    used = ", ".join(prediction.modalities)
    lines.append(f"used: {used} -> {prediction.source}" + (f" (present flags {prediction.present})" if prediction.present else ""))
    if prediction.face_found is None:
        lines.append("face found: no image")
    elif prediction.face_found:
        lines.append(f"face found: yes, box (x, y, w, h) {prediction.face_box}"
                     + (f" in {prediction.frames_with_face}/{prediction.frames} frames" if prediction.frames > 1 else ""))
    else:
        lines.append("face found: no")
    for face in prediction.faces[1:]:
        lines.append(f"another face: {face['label']} p={face['probabilities'][face['label']]:.2f} (face model only), box {tuple(face['box'])}")
    lines.extend(f"note: {note}" for note in prediction.notes)
    return "\n".join(lines)


def plot_prediction(prediction: Prediction, frame=None, audio=None, sample_rate: int = SAMPLE_RATE):
    """A figure: the frame with the face box, the waveform, and voice/face/final probabilities as bars."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    figure, (image_ax, wave_ax, bar_ax) = plt.subplots(1, 3, figsize=(12, 3.2), gridspec_kw={"width_ratios": [1, 1.3, 1.5]})
    if frame is not None:
        if prediction.image_scale:  # boxes are in the input's own pixels: stretch the smaller working copy to them
            sx, sy = prediction.image_scale
            image_ax.imshow(frame, extent=(0, frame.shape[1] * sx, frame.shape[0] * sy, 0))
        else:
            image_ax.imshow(frame)
        boxes = [(face["box"], face["label"], face["main"]) for face in prediction.faces]
        if not boxes and prediction.face_box is not None:
            boxes = [(prediction.face_box, prediction.emotion, True)]
        for (x, y, w, h), label, main in boxes:  # every face with its label: the main one (fused with the voice) in green
            colour = MAIN_FACE_COLOUR if main else OTHER_FACE_COLOUR
            image_ax.add_patch(Rectangle((x, y), w, h, fill=False, edgecolor=colour, linewidth=2))
            image_ax.text(x, y - 4, label, color="black", fontsize=8, backgroundcolor=colour)
        found = f"{len(boxes)} faces found" if len(boxes) > 1 else "face found"
        image_ax.set_title(found if prediction.face_found else "no face found", fontsize=9)
    else:
        image_ax.text(0.5, 0.5, "no image", ha="center", va="center")
    image_ax.axis("off")
    if audio is not None and np.asarray(audio).size:
        wave = np.asarray(audio, dtype=np.float32)
        wave = wave.mean(axis=1) if wave.ndim == 2 else wave
        step = max(1, len(wave) // 4000)
        times = np.arange(0, len(wave), step) / sample_rate
        wave_ax.plot(times, wave[::step], color="#4C72B0", linewidth=0.6)
        peak = max(0.05, float(np.abs(wave).max()) * 1.1)
        wave_ax.set(xlabel="seconds", ylim=(-peak, peak))
        rms = float(np.sqrt(np.mean(np.square(wave, dtype=np.float64))))
        wave_ax.set_title(f"audio: {len(wave) / sample_rate:.1f} s, RMS {rms:.3f}", fontsize=9)
    else:
        wave_ax.text(0.5, 0.5, "no audio", ha="center", va="center", transform=wave_ax.transAxes)
        wave_ax.set_yticks([])
    rows = [(kind, getattr(prediction, kind)) for kind in ("voice", "face", "fusion") if getattr(prediction, kind) is not None]
    if prediction.source in ("average", "late"):
        rows.append((prediction.source, prediction.probabilities))
    labels = prediction.labels
    positions = np.arange(len(labels))
    width = 0.8 / max(1, len(rows))
    for index, (kind, probabilities) in enumerate(rows):
        bar_ax.bar(positions - 0.4 + width * (index + 0.5), [probabilities[label] for label in labels], width,
                   label=kind + (" (final)" if kind == prediction.source else ""), color=MODEL_COLOURS[kind])
    bar_ax.set(xticks=positions, xticklabels=labels, ylim=(0, 1), ylabel="probability")
    bar_ax.legend(fontsize=7, loc="upper right")
    bar_ax.set_title(f"{prediction.display_label} {prediction.confidence:.0%} from {' + '.join(prediction.modalities)}", fontsize=10)
    figure.tight_layout()
    return figure


def figure_png(figure, dpi: int = 80) -> bytes:
    """A matplotlib figure as PNG bytes; closes the figure."""
    import io

    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    plt.close(figure)
    return buffer.getvalue()
