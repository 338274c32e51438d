"""Speech-like voices for the synthetic CREMA-D clips (the design is in emolib.data.synth.corpus).

An utterance is a run of syllables: a harmonic tone whose pitch glides, shaped by a
vowel-like cascade of formant resonators, mixed with breath noise and faded in and
out; background noise is added over the whole clip.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import lfilter

SAMPLE_RATE = 16000
HARMONIC_CEILING_HZ = 5000.0
WAVETABLE_SIZE = 1024
SYLLABLE_RMS = 0.06
VOWEL_FORMANTS = (  # (F1, F2, F3) Hz: Peterson & Barney (1952) average male vowels
    (730, 1090, 2440), (270, 2290, 3010), (530, 1840, 2480), (660, 1720, 2410),
    (300, 870, 2240), (570, 840, 2410), (440, 1020, 2240),
)
FORMANT_BANDWIDTHS = (90, 110, 170)
ATTACK_S = 0.025
RELEASE_S = 0.05


@dataclass(frozen=True)
class VoiceTraits:
    """An actor's voice: base pitch, vocal-tract length (formant scale), loudness, brightness, breathiness, tempo."""

    f0: float
    tract: float
    gain_db: float
    tilt: float
    breath: float
    tempo: float


@dataclass(frozen=True)
class VoiceCues:
    """Emotional voice cues relative to the actor: pitch factor, loudness, syllables per second, etc."""

    pitch: float = 1.0
    gain_db: float = 0.0
    rate: float = 4.0
    tilt: float = 1.3
    breath: float = 0.1
    jitter: float = 0.005
    glide: float = 0.0


def random_voice_traits(rng: np.random.Generator, sex: str) -> VoiceTraits:
    """Draw an actor's voice; pitch and vocal tract depend on sex."""
    male = sex == "Male"
    return VoiceTraits(
        f0=(115 if male else 205) * np.exp(rng.normal(0, 0.12)),
        tract=(0.92 if male else 1.08) * np.exp(rng.normal(0, 0.04)),
        gain_db=rng.normal(0, 2.0),
        tilt=rng.normal(0, 0.12),
        breath=rng.uniform(0.0, 0.08),
        tempo=np.exp(rng.normal(0, 0.08)),
    )


def synthesize_speech(traits: VoiceTraits, cues: VoiceCues, vowels: list[int], duration: float, rng: np.random.Generator):
    """Return ``(wave, envelope)``: float32 mono at SAMPLE_RATE and its syllable envelope in [0, 1]."""
    length = int(round(duration * SAMPLE_RATE))
    wave = np.zeros(length, np.float64)
    envelope = np.zeros(length, np.float64)
    start, end = rng.uniform(0.1, 0.3), duration - rng.uniform(0.1, 0.3)
    rate = cues.rate * traits.tempo
    time, index = start, 0
    while time < end - 0.08:
        period = rng.uniform(0.75, 1.25) / rate
        voiced = min(period * rng.uniform(0.6, 0.85), end - time)
        progress = (time - start) / max(end - start, 1e-6)
        f0 = traits.f0 * cues.pitch * (1.0 - 0.12 * progress) * np.exp(rng.normal(0, 0.05))
        stress = rng.uniform(0.6, 1.0)
        tone, shape = _syllable(traits, cues, VOWEL_FORMANTS[vowels[index % len(vowels)]], f0, voiced, rng)
        at = int(time * SAMPLE_RATE)
        span = min(len(tone), length - at)
        wave[at : at + span] += stress * tone[:span]
        envelope[at : at + span] = np.maximum(envelope[at : at + span], stress * shape[:span])
        time, index = time + period, index + 1
    wave *= SYLLABLE_RMS * 10 ** ((cues.gain_db + traits.gain_db) / 20)
    wave += _background_noise(length, rng)
    return np.clip(wave, -1, 1).astype(np.float32), envelope.astype(np.float32)


def sentence_vowels(sentence: str, seed: int) -> list[int]:
    """The vowel sequence of a sentence: the same for every actor, like the words of a script."""
    rng = np.random.default_rng([seed, *sentence.encode()])
    return list(rng.integers(len(VOWEL_FORMANTS), size=16))


def _syllable(traits, cues, formants, f0, duration, rng):
    n = max(int(duration * SAMPLE_RATE), 32)
    t = np.arange(n) / SAMPLE_RATE
    glide = 1.0 + (cues.glide + rng.normal(0, 0.04)) * (t / duration - 0.3)
    wobble = 1.0 + cues.jitter * _slow_noise(n, 12.0, rng)
    frequency = f0 * glide * wobble
    cycles = np.cumsum(frequency) / SAMPLE_RATE
    harmonics = np.arange(1, int(HARMONIC_CEILING_HZ / frequency.max()) + 1)
    weights = harmonics ** -(cues.tilt + traits.tilt)
    period = weights @ np.sin(np.outer(harmonics, 2 * np.pi * np.arange(WAVETABLE_SIZE) / WAVETABLE_SIZE))
    tone = np.interp(cycles % 1.0 * WAVETABLE_SIZE, np.arange(WAVETABLE_SIZE + 1), np.append(period, period[0]))
    tone /= np.sqrt((weights**2).sum() / 2)
    breath = rng.normal(0, 1, n) * (cues.breath + traits.breath) * 2.0
    voiced = _formant_filter(tone + breath, np.array(formants) * traits.tract)
    shape = _fade(n)
    voiced = voiced / (np.sqrt(np.mean(voiced**2)) + 1e-9) * shape
    return voiced, shape


def _formant_filter(signal, formants):
    for frequency, bandwidth in zip(formants, FORMANT_BANDWIDTHS):
        radius = np.exp(-np.pi * bandwidth / SAMPLE_RATE)
        theta = 2 * np.pi * min(frequency, 0.45 * SAMPLE_RATE) / SAMPLE_RATE
        denominator = [1.0, -2 * radius * np.cos(theta), radius**2]
        signal = lfilter([sum(denominator)], denominator, signal)
    return signal


def _fade(n):
    position = np.arange(n) + 0.5
    ramps = np.minimum(1.0, np.minimum(position / (ATTACK_S * SAMPLE_RATE), (n - position) / (RELEASE_S * SAMPLE_RATE)))
    return np.sin(np.pi * position / n) ** 0.5 * ramps


def _slow_noise(n, cutoff_hz, rng):
    coarse = rng.normal(0, 1, int(n * cutoff_hz / SAMPLE_RATE) + 2)
    return np.interp(np.arange(n) * cutoff_hz / SAMPLE_RATE, np.arange(len(coarse)), coarse)


def _background_noise(length, rng):
    level = 10 ** rng.uniform(-3.3, -2.3)
    noise = lfilter([1.0], [1.0, -0.9], rng.normal(0, 1, length))
    return level * noise / (noise.std() + 1e-9)
