"""``emolib bench --recipe best``: live prediction latency of full-size random-init models built as a training recipe
makes them, eager fp32 vs the fast path, in one run (the main report measures the seed recipe's models).

The best recipe's voice model (all layers weighted, attentive statistics, pooling over the frames Silero VAD marks as
speech) and its 16-frame face model with attention pooling, through the same ``Predictor`` that `emolib live` and
`emolib predict` use; speech detection is part of every voice prediction, eager and fast alike. The section goes
between markers in BENCHMARKS.md.
"""
from __future__ import annotations

from ..train.presets import PRESETS
from .report import build_lines, latency_lines, replace_section

START, END = "<!-- recipe:start -->", "<!-- recipe:end -->"


def markdown(recipe: str, live: dict, fast: str, command: str, machine: dict, builds: dict) -> str:
    options = PRESETS[recipe]
    voice = f"{options.layers} layers, {options.pooling} pooling" + (", over speech only (Silero VAD)" if options.speech_only else "")
    face = f"{options.frames} frames, {options.temporal} pooling over frames"
    lines = [START, f"## Live prediction latency, the {recipe} recipe's models (full-size, random-init)", "",
             f"`{command}`, one run on this machine ({machine['cpu']}, {machine['logical_cpus']} logical CPUs; {machine['flags']}; "
             f"torch {machine['torch']}, onnxruntime {machine['onnxruntime']}). `Predictor.predict(audio, 16000, frame)` for wav2vec2-base "
             f"({voice}) + ResNet-50 ({face}; a live prediction has one frame) + fusion MLP; {live['inputs']}; {live['eager']['n']} runs "
             f"each after {live['warmup']} warm-up runs, eager and fast interleaved. Fast path: {fast}.", ""]
    return "\n".join(lines + latency_lines(live) + [""] + build_lines(builds) + [END])


def update_section(path, section: str) -> str:
    return replace_section(path, section, START, END)
