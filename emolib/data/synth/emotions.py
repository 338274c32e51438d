"""What each emotion sounds and looks like in the synthetic CREMA-D (``synth.corpus``, point 3 of its docstring).

Each modality sorts the six emotions into three pairs (VOICE_PAIRS, FACE_PAIRS) with a cue group each (VOICE_GROUPS,
FACE_GROUPS); within a pair only a weak, noisy cue (VOICE_WITHIN_PAIR, FACE_WITHIN_PAIR) tells the two apart, its value
the emotion's side (-1 or +1) plus Gaussian noise of WITHIN_PAIR_SPREAD. Every cue's strength in a clip is jittered by
CUE_SPREAD. ``apex_curve`` is the temporal mode's rise and fall of an expression over a clip's frames.
"""
from __future__ import annotations

from dataclasses import fields

import numpy as np

from .face import Expression
from .voice import VoiceCues

APEX_FRACTION = 0.15  # temporal mode: the share of a clip's frames at the expression's apex
RAMP_FRACTION = 0.1  # ... and in its onset, and in its offset
CUE_SPREAD = 0.2
WITHIN_PAIR_SPREAD = 1.7

VOICE_PAIRS = (("ANG", "HAP"), ("DIS", "NEU"), ("FEA", "SAD"))
FACE_PAIRS = (("ANG", "DIS"), ("HAP", "SAD"), ("NEU", "FEA"))
NEUTRAL_VOICE = VoiceCues()
VOICE_GROUPS = (
    VoiceCues(pitch=1.4, gain_db=7.0, rate=5.5, tilt=0.8, breath=0.03, jitter=0.008),
    VoiceCues(pitch=1.0, gain_db=0.0, rate=3.8, tilt=1.3, breath=0.1, jitter=0.005),
    VoiceCues(pitch=1.15, gain_db=-6.0, rate=2.7, tilt=1.9, breath=0.5, jitter=0.03),
)
VOICE_WITHIN_PAIR = VoiceCues(pitch=0.03, gain_db=0.0, rate=0.0, tilt=0.0, breath=0.0, jitter=0.0, glide=0.15)
NEUTRAL_FACE = Expression()
FACE_GROUPS = (
    Expression(brow_raise=-1.0, brow_tilt=1.2, eye_open=0.55, mouth_open=0.0, mouth_curve=-0.3, mouth_width=0.9),
    Expression(brow_raise=1.0, brow_tilt=-0.5, eye_open=0.95, mouth_open=0.85, mouth_curve=0.0, mouth_width=1.15),
    Expression(brow_raise=0.1, brow_tilt=0.0, eye_open=1.05, mouth_open=0.05, mouth_curve=0.0, mouth_width=1.0),
)
FACE_WITHIN_PAIR = Expression(brow_raise=0.0, brow_tilt=0.0, eye_open=0.1, mouth_open=0.0, mouth_curve=0.45, mouth_width=0.06)


def voice_cues(emotion: str, intensity: float, rng: np.random.Generator) -> VoiceCues:
    """Voice cues of ``emotion``: its voice pair's, plus the weak within-pair cue, scaled by a jittered intensity."""
    group, sign = _pair_position(emotion, VOICE_PAIRS)
    return _blend(NEUTRAL_VOICE, VOICE_GROUPS[group], VOICE_WITHIN_PAIR, sign, intensity, rng)


def face_expression(emotion: str, intensity: float, resting: Expression, rng: np.random.Generator) -> Expression:
    """Facial expression of ``emotion`` on a face whose resting expression is ``resting``."""
    group, sign = _pair_position(emotion, FACE_PAIRS)
    shown = _blend(NEUTRAL_FACE, FACE_GROUPS[group], FACE_WITHIN_PAIR, sign, intensity, rng)
    values = {name: getattr(shown, name) + getattr(resting, name) - getattr(NEUTRAL_FACE, name) for name in _fields(shown)}
    return Expression(**values)


def apex_curve(frames: int, rng: np.random.Generator) -> np.ndarray:
    """The temporal mode's expression strength per frame: 0 (resting face), a linear onset, the apex (1) over
    APEX_FRACTION of the frames, a linear offset, 0 again; the whole event at a random place in the clip."""
    apex = max(1, int(round(APEX_FRACTION * frames)))
    ramp = max(1, int(round(RAMP_FRACTION * frames)))
    event = np.concatenate([np.arange(1, ramp + 1) / (ramp + 1), np.ones(apex), np.arange(ramp, 0, -1) / (ramp + 1)])
    curve = np.zeros(max(frames, len(event)))
    start = int(rng.integers(0, len(curve) - len(event) + 1))
    curve[start : start + len(event)] = event
    return curve[:frames]


def _blend(neutral, group, within, sign, intensity, rng):
    position = sign + WITHIN_PAIR_SPREAD * rng.normal()
    values = {}
    for name in _fields(neutral):
        strength = intensity * rng.uniform(1 - CUE_SPREAD, 1 + CUE_SPREAD)
        base = getattr(neutral, name)
        values[name] = base + strength * (getattr(group, name) - base) + intensity * position * getattr(within, name)
    return type(neutral)(**values)


def _pair_position(emotion: str, pairs) -> tuple[int, int]:
    for group, pair in enumerate(pairs):
        if emotion in pair:
            return group, (-1, 1)[pair.index(emotion)]
    raise ValueError(f"unknown emotion {emotion!r}")


def _fields(instance) -> list[str]:
    return [field.name for field in fields(instance)]
